"""Targets on the shape of a real project with a maintenance branch (pallets/click's
`main` and `stable`): a branch goes to the target against which its own change is
smallest, as a pull request page would show it; the order of `--onto` breaks real ties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_palign
from tests.gitrepo import GitRepo


def _commit(repo: GitRepo, path: str) -> str:
    repo.write(path, f"{path}\n")
    return repo.commit(path)


def maintained_project(path: Path) -> GitRepo:
    """main, with `stable` cut from it and two backports on top; main moves on further.
    Pull requests: one forked from main before the cut, one after, one from stable."""
    r = GitRepo.init(path)
    for n in range(3):
        _commit(r, f"core{n}.txt")
    r.new_branch("pr/old-fork")
    _commit(r, "old-fork.txt")
    r.checkout("main")
    for n in range(2):
        _commit(r, f"before-cut{n}.txt")
    r.new_branch("stable")
    _commit(r, "backport0.txt")
    _commit(r, "backport1.txt")
    r.new_branch("pr/backport")
    _commit(r, "backport2.txt")
    r.checkout("main")
    for n in range(30):  # main moves on much further than stable
        _commit(r, f"after-cut{n}.txt")
    r.new_branch("pr/recent")
    _commit(r, "recent.txt")
    r.checkout("main")
    _commit(r, "latest.txt")
    return r


def planned(repo: GitRepo, *onto: str) -> dict[str, tuple[str, float, str | None]]:
    args = [a for target in onto for a in ("--onto", target)]
    result = run_palign("plan", str(repo.path), *args, "--branch", "pr/*", "--json")
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    return {b["branch_name"]: (b["assigned_target"], b["confidence"], b["parent"]) for b in plan["branches"]}


@pytest.mark.parametrize("onto", [("main", "stable"), ("stable", "main")])
def test_each_branch_goes_where_its_own_change_is_smallest(tmp_path: Path, onto: tuple[str, str]) -> None:
    repo = maintained_project(tmp_path / "repo")
    plan = planned(repo, *onto)
    short = {name: (target.removeprefix("refs/heads/"), conf, parent) for name, (target, conf, parent) in plan.items()}
    assert short["pr/recent"][0] == "main" and short["pr/recent"][1] > 0.8
    assert short["pr/backport"][0] == "stable" and short["pr/backport"][1] > 0.8
    # Forked before stable was cut: one commit of its own against either. A real tie,
    # said so (0.5), and settled by the order of --onto; how much further main moved
    # on (it misses 33 of main's commits, 4 of stable's) does not decide it.
    assert short["pr/old-fork"][:2] == (onto[0], 0.5)
    assert all(parent is None for _, _, parent in short.values())  # no stacks here
