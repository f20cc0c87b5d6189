"""`palign conflicts` blames a pair only for what its two branches do together, end to
end through the CLI on real repositories.

The branches fork from different commits of `main`, as on a real repository: merged with
each other at their own merge base, a branch carries `main`'s changes the other one
conflicts with, which is no conflict of the pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import run_palign
from tests.gitrepo import GitRepo

LINES = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n"


def _line(second: str) -> str:
    """LINES with its second line replaced."""
    return LINES.replace("two", second)


def _base(tmp_path: Path) -> GitRepo:
    repo = GitRepo.init(tmp_path / "repo")
    for name in ("x.txt", "y.txt", "z.txt"):
        repo.write(name, LINES)
    repo.commit("base")
    return repo


def _conflicts(repo: GitRepo, *extra: str) -> dict[str, Any]:
    result = run_palign("conflicts", str(repo.path), "--onto", "main", "--json", "--workers", "2", *extra)
    assert result.code == 0, result.stdout + result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_branches_that_each_conflict_with_the_target_alone_are_no_pair(tmp_path: Path) -> None:
    repo = _base(tmp_path)
    repo.write("x.txt", _line("main x"))
    repo.commit("main changes x")
    fork_b = repo.rev("HEAD")
    repo.write("y.txt", _line("main y"))
    repo.commit("main changes y")
    repo.new_branch("a", "main~2")
    repo.write("x.txt", _line("a x"))  # conflicts with main's x
    repo.write("z.txt", LINES.replace("six", "a z"))  # z: another hunk than b's
    repo.commit("a edits")
    repo.new_branch("b", fork_b)
    repo.write("y.txt", _line("b y"))  # conflicts with main's y
    repo.write("z.txt", LINES.replace("one", "b z"))
    repo.commit("b edits")
    repo.new_branch("c", "main")
    repo.write("x.txt", LINES.replace("seven", "c x"))  # shares x with a, conflicts with nobody
    repo.commit("c edits")

    found = _conflicts(repo)
    assert found["pairs_checked"] == 2  # a-b share z.txt, a-c share x.txt
    assert found["conflicts"] == [] and found["groups"] == []
    assert found["conflicts_with_target"] == [
        {"branch": "a", "paths": ["x.txt"]},
        {"branch": "b", "paths": ["y.txt"]},
    ]
    shown = run_palign("conflicts", str(repo.path), "--onto", "main")
    assert shown.stdout == (
        "3 branches onto main: 2 pairs share files, 0 conflict together\n"
        "2 branches conflict with main by themselves (not blamed on pairs):\n"
        "  a: x.txt\n"
        "  b: y.txt\n"
    ), shown.stdout + shown.stderr


def test_two_branches_changing_the_same_line_are_a_pair(tmp_path: Path) -> None:
    repo = _base(tmp_path)
    repo.write("x.txt", LINES.replace("seven", "main x"))  # main moves on, in another hunk
    repo.commit("main changes x")
    repo.new_branch("a", "main~1")
    repo.write("y.txt", _line("a y"))
    repo.commit("a edits")
    repo.new_branch("b", "main")
    repo.write("y.txt", _line("b y"))
    repo.commit("b edits")

    found = _conflicts(repo)
    assert found["conflicts_with_target"] == []
    assert [(p["left"], p["right"], p["paths"]) for p in found["conflicts"]] == [("a", "b", ["y.txt"])]
    assert found["groups"] == [["a", "b"]]


def test_a_pair_is_named_for_its_own_conflict_not_for_one_with_the_target(tmp_path: Path) -> None:
    repo = _base(tmp_path)
    repo.write("x.txt", _line("main x"))
    repo.commit("main changes x")
    repo.new_branch("a", "main~1")
    repo.write("x.txt", _line("a x"))  # conflicts with main
    repo.write("y.txt", _line("a y"))  # conflicts with b
    repo.commit("a edits")
    repo.new_branch("b", "main")
    repo.write("y.txt", _line("b y"))
    repo.commit("b edits")

    found = _conflicts(repo)
    assert [(p["left"], p["right"], p["paths"]) for p in found["conflicts"]] == [("a", "b", ["y.txt"])]
    assert found["conflicts_with_target"] == [{"branch": "a", "paths": ["x.txt"]}]
    shown = run_palign("conflicts", str(repo.path), "--onto", "main")
    assert shown.stdout == (
        "2 branches onto main: 1 pair shares files, 1 conflicts together\n"
        "1 branch conflicts with main by itself (not blamed on pairs):\n"
        "  a: x.txt\n"
        "group 1: a, b\n"
        "  a x b: y.txt\n"
    ), shown.stdout + shown.stderr


def test_a_branch_conflicting_with_the_target_where_its_partner_also_changed(tmp_path: Path) -> None:
    """Both change x.txt, where a conflicts with main: what x.txt will hold depends on how
    a's conflict is resolved, so the pair is not blamed for it (nor for anything else)."""
    repo = _base(tmp_path)
    repo.write("x.txt", _line("main x"))
    repo.commit("main changes x")
    repo.new_branch("a", "main~1")
    repo.write("x.txt", _line("a x"))
    repo.commit("a edits")
    repo.new_branch("b", "main")
    repo.write("x.txt", _line("b x"))
    repo.commit("b edits")

    found = _conflicts(repo)
    assert found["conflicts"] == [] and found["groups"] == []
    assert found["conflicts_with_target"] == [{"branch": "a", "paths": ["x.txt"]}]


def test_a_file_where_the_target_has_a_directory_is_named_by_its_path(tmp_path: Path) -> None:
    """git moves the file aside as `d~<commit>`; palign names the path the branch wrote."""
    repo = _base(tmp_path)
    repo.write("d/inside.txt", "main\n")
    repo.commit("main adds a directory d")
    repo.new_branch("a", "main~1")
    repo.write("d", "a file\n")
    repo.commit("a adds a file d")

    found = _conflicts(repo)
    assert found["conflicts_with_target"] == [{"branch": "a", "paths": ["d"]}]
