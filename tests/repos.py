"""Repositories the tests build: a fleet of pull requests and stacks for distributed
runs, and a repository whose alignment breaks a check."""

from __future__ import annotations

import sys
from pathlib import Path

from palign.demo import HistoryBuilder
from tests.gitrepo import GitRepo, run_git

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


def large_fleet_repo(path: Path, *, independent: int = 1000, stacks: int = 20, depth: int = 3) -> GitRepo:
    """fleet_repo's shape at scale, written by one `git fast-import`: independent branches
    (every third conflicts with main) and stacks of `depth` (the first stack's bottom
    conflicts, so the branches above it are blocked)."""
    history = HistoryBuilder()
    lines = [f"line {n}\n" for n in range(20)]

    def edited(text: str) -> str:
        return "".join(lines[:2]) + text + "".join(lines[3:])

    files: dict[str, str | None] = {f"src/m{i}.txt": "".join(lines) for i in range(independent)}
    files["shared.txt"] = "one\ntwo\nthree\n"
    base = history.commit(None, files, "base")
    for i in range(independent):
        edit = history.commit(base, {f"src/m{i}.txt": edited(f"pr {i} edits line 2\n")}, f"pr {i}")
        history.branch(f"pr/{i}", history.commit(edit, {f"src/new{i}.txt": f"new {i}\n"}, f"pr {i}: a file"))
    for s in range(stacks):
        below = base
        for level in range(depth):
            change = {"shared.txt": "one\nstack edits two\nthree\n"} if s == level == 0 else {}
            below = history.commit(
                below, change or {f"stack{s}/l{level}.txt": f"level {level}\n"}, f"stack{s}/l{level}"
            )
            history.branch(f"stack{s}/l{level}", below)
    moves: dict[str, str | None] = {
        f"src/m{i}.txt": edited(f"main edits line 2 of {i}\n") for i in range(0, independent, 3)
    }
    moves["shared.txt"] = "one\nmain edits two\nthree\n"
    history.branch("main", history.commit(base, moves, "main moves"))
    history.write(path)
    run_git(path, "checkout", "-q", "main")
    return GitRepo(path)
