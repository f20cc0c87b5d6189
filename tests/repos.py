"""Repositories the tests build: a fleet of pull requests and stacks for distributed
runs, and a repository whose alignment breaks a check."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.gitrepo import GitRepo

IMPORT_USE = f"{sys.executable} -c 'import use'"


def renaming_repo(path: Path) -> GitRepo:
    """`feature` calls lib.helper(), which main renames: the rebase is clean, the result
    broken. `docs` touches nothing of the code: it stays good."""
    repo = GitRepo.init(path)
    repo.write("lib.py", "def helper():\n    return 1\n")
    repo.write("use.py", "import lib\n")
    repo.write("README", "readme\n")
    repo.commit("base")
    repo.new_branch("feature", "main")
    repo.write("use.py", "import lib\n\nVALUE = lib.helper()\n")
    repo.commit("use helper")
    repo.new_branch("docs", "main")
    repo.write("README", "readme\nmore\n")
    repo.commit("docs")
    repo.checkout("main")
    repo.write("lib.py", "def assist():\n    return 1\n")
    repo.commit("rename helper to assist")
    return repo


def fleet_repo(path: Path, *, independent: int = 12, stacks: int = 3, depth: int = 3) -> GitRepo:
    """Independent branches (every third conflicts with main) and stacks of `depth`
    branches (the first stack's bottom conflicts, so the branches above it are blocked)."""
    repo = GitRepo.init(path)
    for i in range(independent):
        repo.write(f"src/m{i}.txt", "".join(f"line {n}\n" for n in range(20)))
    repo.write("shared.txt", "one\ntwo\nthree\n")
    repo.commit("base")
    for i in range(independent):
        repo.new_branch(f"pr/{i}", "main")
        lines = [f"line {n}\n" for n in range(20)]
        lines[2] = f"pr {i} edits line 2\n"
        repo.write(f"src/m{i}.txt", "".join(lines))
        repo.commit(f"pr {i}")
        repo.write(f"src/new{i}.txt", f"new {i}\n")
        repo.commit(f"pr {i}: a file")
    for s in range(stacks):
        below = "main"
        for level in range(depth):
            name = f"stack{s}/l{level}"
            repo.new_branch(name, below)
            if s == 0 and level == 0:
                repo.write("shared.txt", "one\nstack edits two\nthree\n")
            else:
                repo.write(f"stack{s}/l{level}.txt", f"level {level}\n")
            repo.commit(f"{name}")
            below = name
    repo.checkout("main")
    for i in range(0, independent, 3):
        lines = [f"line {n}\n" for n in range(20)]
        lines[2] = f"main edits line 2 of {i}\n"
        repo.write(f"src/m{i}.txt", "".join(lines))
    repo.write("shared.txt", "one\nmain edits two\nthree\n")
    repo.commit("main moves")
    return repo
