"""Which branch is stacked on which, on real repositories of each shape, through
`palign plan --json`: real stacks (linear, tree, updated by merging the lower branch) and
branches that merely share a base where another was merged (backports on a maintenance
branch, a pull request that merged main or the maintenance branch in, a parent that
already landed)."""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

from palign import prepare
from palign.engine.facts import gather_facts
from palign.settings import Settings
from tests.conftest import run_palign
from tests.gitrepo import GitRepo


def _commit_file(repo: GitRepo, path: str) -> str:
    repo.write(path, f"{path}\n")
    return repo.commit(path)


def _repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo.init(tmp_path / "repo")
    _commit_file(repo, "README")
    return repo


def _parents(repo: GitRepo, *args: str) -> dict[str, str | None]:
    """Each planned branch's parent (the branch it is stacked on, None if none)."""
    result = run_palign("plan", str(repo.path), "--json", "--no-forecast", *(args or ("--onto", "main")))
    assert result.code == 0, result.stderr
    return {b["branch_name"]: b["parent"] for b in json.loads(result.stdout)["branches"]}


def _main_moves(repo: GitRepo) -> None:
    repo.checkout("main")
    _commit_file(repo, "main-moves.txt")


def test_linear_stack(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    for name, below in (("a", "main"), ("b", "a"), ("c", "b")):
        repo.new_branch(name, below)
        _commit_file(repo, f"{name}.txt")
    _main_moves(repo)
    assert _parents(repo) == {"a": None, "b": "a", "c": "b"}


def test_tree_stack(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    repo.new_branch("a")
    _commit_file(repo, "a.txt")
    for child in ("b", "c"):
        repo.new_branch(child, "a")
        _commit_file(repo, f"{child}.txt")
    _main_moves(repo)
    assert _parents(repo) == {"a": None, "b": "a", "c": "a"}


def test_stack_updated_by_merging_the_lower_branch(tmp_path: Path) -> None:
    """b was built on a; a gained commits (review fixes) and b merged a in: a's new tip is
    in b only through b's own merge, and b is still stacked on a (c on b above it)."""
    repo = _repo(tmp_path)
    repo.new_branch("a")
    _commit_file(repo, "a.txt")
    repo.new_branch("b")
    _commit_file(repo, "b.txt")
    repo.checkout("a")
    _commit_file(repo, "a-review-fix.txt")
    repo.checkout("b")
    repo.merge("a", "merge a into b")
    repo.new_branch("c")
    _commit_file(repo, "c.txt")
    _main_moves(repo)
    assert _parents(repo) == {"a": None, "b": "a", "c": "b"}


def _maintenance_with_backports(tmp_path: Path) -> GitRepo:
    """main and its maintenance branch 1.x; backport p1 merged into 1.x (its branch kept, as
    bots and forks leave them), then p2 branched from 1.x, and p3 built on p2."""
    repo = _repo(tmp_path)
    repo.new_branch("1.x")
    _commit_file(repo, "release-1.0.txt")
    repo.new_branch("p1")
    _commit_file(repo, "backport-1.txt")
    repo.checkout("1.x")
    repo.merge("p1", "Merge pull request #1 from p1")
    repo.new_branch("p2")
    _commit_file(repo, "backport-2.txt")
    repo.new_branch("p3")
    _commit_file(repo, "on-top-of-p2.txt")
    _main_moves(repo)
    return repo


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--onto", "main"), id="1.x-left-out"),
        pytest.param(("--onto", "main", "--onto", "1.x"), id="1.x-a-target"),
        pytest.param(("--onto", "main", "--branch", "p*"), id="1.x-not-selected"),
    ],
)
def test_backports_on_a_maintenance_branch_are_not_stacked_on_each_other(tmp_path: Path, args: tuple[str, ...]) -> None:
    """p2 holds p1's tip only because 1.x merged p1 before p2 was cut: p2 must not wait for
    (or be blocked by) p1. p3, really built on p2, still is stacked on it."""
    repo = _maintenance_with_backports(tmp_path)
    assert _parents(repo, *args) == {"p1": None, "p2": None, "p3": "p2"}


def test_a_branch_that_merged_main_in_is_not_stacked_on_what_main_merged(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    repo.new_branch("y")
    _commit_file(repo, "y.txt")
    repo.new_branch("x", "main")
    _commit_file(repo, "x.txt")
    repo.checkout("main")
    repo.merge("y", "Merge pull request #2 from y")
    repo.checkout("x")
    repo.merge("main", "merge main into x")
    _commit_file(repo, "x-more.txt")
    _main_moves(repo)
    assert _parents(repo) == {"x": None, "y": None}


def test_a_branch_that_merged_the_maintenance_branch_in_is_not_stacked_on_its_backports(tmp_path: Path) -> None:
    """x, a fix for 1.x, merged 1.x in after 1.x had merged backport p1: x holds p1's tip
    through 1.x only."""
    repo = _repo(tmp_path)
    repo.new_branch("1.x")
    _commit_file(repo, "release-1.0.txt")
    repo.new_branch("x")
    _commit_file(repo, "x.txt")
    repo.new_branch("p1", "1.x")
    _commit_file(repo, "backport-1.txt")
    repo.checkout("1.x")
    repo.merge("p1", "Merge pull request #1 from p1")
    repo.checkout("x")
    repo.merge("1.x", "merge 1.x into x")
    _main_moves(repo)
    assert _parents(repo) == {"p1": None, "x": None}


def test_a_branch_built_on_one_that_landed_since_is_not_stacked_on_it(tmp_path: Path) -> None:
    """b was built on a, then a was merged into main: a has nothing left to align, b is
    not stacked on it (and by default a, a base b forks from, is left out)."""
    repo = _repo(tmp_path)
    repo.new_branch("a")
    _commit_file(repo, "a.txt")
    repo.new_branch("b")
    _commit_file(repo, "b.txt")
    repo.checkout("main")
    repo.merge("a", "Merge pull request #3 from a")
    _commit_file(repo, "main-moves.txt")
    assert _parents(repo) == {"b": None}
    assert _parents(repo, "--onto", "main", "--branch", "*") == {"a": None, "b": None}


def test_facts_name_the_long_lived_branch_holding_a_tip_also_when_gathered_in_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _maintenance_with_backports(tmp_path)
    tips = {f"refs/heads/{n}": repo.rev(n) for n in ("p1", "p2", "p3")}
    found = gather_facts(
        pygit2.Repository(str(repo.path)),
        tips,
        {"main": repo.rev("main")},
        long_lived={"refs/heads/1.x": repo.rev("1.x")},
    )
    assert {f.name: f.held_by for f in found} == {"p1": {"refs/heads/1.x"}, "p2": set(), "p3": set()}

    options = prepare.RunOptions(repo=str(repo.path), targets=["main"], workers=2)
    alone = prepare.prepare(options, Settings.load()).plan
    monkeypatch.setattr(prepare, "_PARALLEL_FACTS_FROM", 1)  # as for a large run: shares over 2 processes
    shared = prepare.prepare(options, Settings.load()).plan
    assert shared == alone
    assert {b.branch_name: b.parent for b in shared.branches} == {"p1": None, "p2": None, "p3": "p2"}
