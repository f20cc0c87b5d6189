"""Stacked branches (B built on A) align like `git rebase --update-refs`: each branch's own
commits go onto the aligned tip of the branch below, and a branch stacked on one that
does not align is blocked."""

from __future__ import annotations

from pathlib import Path

import pygit2

from palign.engine import ort
from palign.executor.unit import align_stack
from palign.model import AlignRequest, Identity, Sha, Status, Strategy
from tests.gitrepo import GitRepo


def _request(repo: GitRepo, name: str, parent: str | None, strategy: Strategy = Strategy.REBASE) -> AlignRequest:
    return AlignRequest(
        refname=f"refs/heads/{name}",
        old_sha=Sha(repo.rev(name)),
        target="refs/heads/main",
        target_sha=Sha(repo.rev("main")),
        strategy=strategy,
        parent=f"refs/heads/{parent}" if parent else None,
    )


def _run(repo: GitRepo, levels: list[list[AlignRequest]]) -> dict[str, dict]:  # type: ignore[type-arg]
    try:
        results = align_stack(
            str(repo.path), Identity("Tester", "tester@example.com"), [[r.to_json() for r in level] for level in levels]
        )
    finally:
        ort.close_all()
    return {r["branch_name"]: r for r in results}


def _stack_repo(tmp_path: Path, depth: int) -> GitRepo:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("base.txt", "base\n")
    repo.commit("base")
    previous = "main"
    for level in range(depth):
        repo.new_branch(f"s{level}", previous)
        repo.write(f"level{level}.txt", f"level {level}\n")
        repo.commit(f"level {level}: one")
        repo.write(f"level{level}.txt", f"level {level}\nmore\n")
        repo.commit(f"level {level}: two")
        previous = f"s{level}"
    repo.checkout("main")
    repo.write("main.txt", "main moved\n")
    repo.commit("main moves")
    return repo


def test_six_level_stack_matches_git_update_refs(tmp_path: Path) -> None:
    repo = _stack_repo(tmp_path, 6)
    names = [f"s{level}" for level in range(6)]
    levels = [[_request(repo, name, names[i - 1] if i else None)] for i, name in enumerate(names)]
    results = _run(repo, levels)
    # git's own answer: rebase the top of the stack with --update-refs.
    clone = GitRepo.init(tmp_path / "oracle")
    clone.git("fetch", "-q", "--update-head-ok", str(repo.path), "+refs/heads/*:refs/heads/*")
    clone.git("checkout", "-q", "-f", names[-1])
    clone.git("rebase", "-q", "--update-refs", "main")
    pg = pygit2.Repository(str(repo.path))
    previous_new = repo.rev("main")
    for name in names:
        result = results[name]
        assert result["status"] == "aligned"
        assert result["commits_replayed"] == 2, "each level replays only its own commits"
        new = result["new_sha"]
        assert str(pg[new].peel(pygit2.Tree).id) == clone.tree(name)
        assert pg.descendant_of(new, previous_new), f"{name}' must sit on the aligned branch below"
        previous_new = new


def test_tree_stack_children_align_onto_the_aligned_parent(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("base.txt", "base\n")
    repo.commit("base")
    repo.new_branch("a")
    repo.write("a.txt", "a\n")
    repo.commit("a")
    for child in ("b", "c"):
        repo.new_branch(child, "a")
        repo.write(f"{child}.txt", f"{child}\n")
        repo.commit(child)
    repo.checkout("main")
    repo.write("main.txt", "main\n")
    repo.commit("main moves")
    results = _run(repo, [[_request(repo, "a", None)], [_request(repo, "b", "a"), _request(repo, "c", "a")]])
    pg = pygit2.Repository(str(repo.path))
    parent_new = results["a"]["new_sha"]
    for child in ("b", "c"):
        assert results[child]["status"] == "aligned"
        assert results[child]["commits_replayed"] == 1
        assert pg[results[child]["new_sha"]].parents[0].id == pygit2.Oid(hex=parent_new)


def test_children_of_a_conflicting_parent_are_blocked(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("shared.txt", "original\n")
    repo.commit("base")
    repo.new_branch("a")
    repo.write("shared.txt", "from a\n")
    repo.commit("a changes the shared line")
    repo.new_branch("b", "a")
    repo.write("b.txt", "b\n")
    repo.commit("b")
    repo.new_branch("c", "b")
    repo.write("c.txt", "c\n")
    repo.commit("c")
    repo.checkout("main")
    repo.write("shared.txt", "from main\n")
    repo.commit("main changes the shared line")
    results = _run(repo, [[_request(repo, "a", None)], [_request(repo, "b", "a")], [_request(repo, "c", "b")]])
    assert results["a"]["status"] == "conflict"
    for name, blocker in (("b", "a"), ("c", "b")):
        assert results[name]["status"] == Status.BLOCKED.value
        assert results[name]["new_sha"] is None
        assert blocker in results[name]["error_message"]


def test_request_round_trips_through_json() -> None:
    request = AlignRequest(
        refname="refs/heads/b",
        old_sha=Sha("1" * 40),
        target="refs/heads/main",
        target_sha=Sha("2" * 40),
        strategy=Strategy.AUTO,
        cost=3,
        ahead=2,
        behind=1,
        parent="refs/heads/a",
        parent_old=Sha("3" * 40),
        onto=Sha("4" * 40),
    )
    assert AlignRequest.from_json(request.to_json()) == request
