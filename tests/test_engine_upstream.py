"""A worker process looks the target's side of a rebase up in one walk of the target
(`engine.upstream.TargetSide`), shared by the branches it aligns: a branch forked later
must not count target commits it already has as upstream, one forked earlier must count
those it lacks. git's own rebase is the oracle, branch after branch in one context."""

from __future__ import annotations

from pathlib import Path

import pygit2

from palign.engine.align import AlignContext
from palign.model import Strategy
from tests.gitrepo import GitRepo
from tests.oracle import TEST_IDENTITY, close_engine_processes, expected, git_rebase_result, mismatches, run_engine

LINES = [f"line {i}" for i in range(1, 11)]


def _with(index: int, value: str) -> list[str]:
    out = list(LINES)
    out[index] = value
    return out


def _history(path: Path) -> GitRepo:
    """main: base, FIX (line 2 -> TWO), more, later. `early` forks at base and makes the
    same fix (already upstream for it); `late` forks after FIX, reverts it and makes it
    again (its second commit's patch is FIX's, but FIX is in its history, not upstream)."""
    r = GitRepo.init(path)
    r.write_lines("f.txt", LINES)
    r.write("other.txt", "o\n")
    r.commit("base")
    r.new_branch("early")
    r.write_lines("f.txt", _with(1, "TWO"))
    r.commit("early: the fix")
    r.write("early.txt", "e\n")
    r.commit("early: own work")
    r.checkout("main")
    r.write_lines("f.txt", _with(1, "TWO"))
    r.commit("main: the fix")
    r.write("more.txt", "m\n")
    r.commit("main: more")
    r.new_branch("late")
    r.write_lines("f.txt", LINES)
    r.commit("late: revert the fix")
    r.write_lines("f.txt", _with(1, "TWO"))
    r.commit("late: the fix again")
    r.checkout("main")
    r.write("later.txt", "l\n")
    r.commit("main: later")
    return r


def test_branches_forked_apart_share_the_target_side_and_still_match_git(tmp_path: Path) -> None:
    repo = _history(tmp_path / "repo")
    try:
        for order in (["early", "late"], ["late", "early"]):  # the side grows older, or starts old
            ctx = AlignContext(pygit2.Repository(str(repo.path)), TEST_IDENTITY)
            for branch in order:
                git_says = git_rebase_result(repo.path, branch, "main")
                want = expected(Strategy.REBASE, git_says, git_says)
                got = run_engine(repo.path, branch, "main", Strategy.REBASE, ctx, with_counts=True)
                assert mismatches(ctx.repo, got, want) == [], (order, branch)
            early = run_engine(repo.path, "early", "main", Strategy.REBASE, ctx, with_counts=True)
            late = run_engine(repo.path, "late", "main", Strategy.REBASE, ctx, with_counts=True)
            assert (early.commits_skipped, early.commits_replayed) == (1, 1)  # the fix is upstream for early
            assert (late.commits_skipped, late.commits_replayed) == (0, 2)  # ... and in late's own history
    finally:
        close_engine_processes()
