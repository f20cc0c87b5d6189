"""Align one branch onto its target, in memory: the one function both executors run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pygit2

from palign.engine import ort
from palign.engine.objects import Identity, replay_commit, write_commit
from palign.engine.selection import PatchKeyCache, is_empty, select_commits
from palign.engine.treeops import apply_changes, changed_entries, empty_tree, trivially_mergeable
from palign.model import AlignRequest, BranchResult, Conflict, Sha, Status, Strategy


@dataclass
class AlignContext:
    """What one worker process keeps between branches."""

    repo: pygit2.Repository
    identity: Identity
    cache: PatchKeyCache = field(default_factory=PatchKeyCache)


@dataclass
class _Outcome:
    status: Status
    new: pygit2.Oid | None
    replayed: int = 0
    skipped: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    slow_merges: int = 0
    strategy: Strategy | None = None


def _merge_one_side(
    ctx: AlignContext, *, base: pygit2.Tree | None, ours: pygit2.Tree, theirs: pygit2.Tree
) -> tuple[pygit2.Oid | None, tuple[str, ...], bool]:
    """Three-way merge where `theirs` is usually the small side. Returns (tree, conflicted
    paths, used the slow path)."""
    repo = ctx.repo
    changes = changed_entries(repo, base, theirs)
    base_tree = base if base is not None else repo[empty_tree(repo)]
    if trivially_mergeable(base_tree, ours, theirs, changes):  # type: ignore[arg-type]
        return apply_changes(repo, ours, changes) or empty_tree(repo), (), False
    outcome = ort.merge_trees(repo, base=base_tree.id, ours=ours.id, theirs=theirs.id)
    return outcome.tree, outcome.conflicted_paths, True


def _rebase(ctx: AlignContext, branch: pygit2.Commit, target: pygit2.Commit) -> _Outcome:
    repo = ctx.repo
    selection = select_commits(repo, branch=branch.id, target=target.id, cache=ctx.cache)
    committer = ctx.identity.signature_line()
    head = target
    head_tree = target.tree
    replayed, skipped, slow = 0, selection.skipped, 0
    for commit in selection.commits:
        parent_tree = commit.parents[0].tree if commit.parents else None
        if is_empty(commit):
            new_tree = head_tree.id
        else:
            tree_id, conflicted, used_slow = _merge_one_side(ctx, base=parent_tree, ours=head_tree, theirs=commit.tree)
            slow += used_slow
            if tree_id is None:
                conflicts = [Conflict(path=p, commit=Sha(str(commit.id))) for p in conflicted]
                return _Outcome(Status.CONFLICT, None, replayed, skipped, conflicts, slow, Strategy.REBASE)
            if tree_id == head_tree.id:
                skipped += 1  # became empty: git drops it
                continue
            new_tree = tree_id
        new_id = replay_commit(repo, commit.id, tree=new_tree, parent=head.id, committer=committer)
        head = repo[new_id]  # type: ignore[assignment]
        head_tree = head.tree
        replayed += 1
    if replayed == 0:
        return _Outcome(Status.MERGED, target.id, 0, skipped, slow_merges=slow, strategy=Strategy.REBASE)
    return _Outcome(Status.ALIGNED, head.id, replayed, skipped, slow_merges=slow, strategy=Strategy.REBASE)


def _merge_message(target_name: str, branch_name: str) -> bytes:
    label = target_name[len("refs/heads/") :] if target_name.startswith("refs/heads/") else target_name
    kind = "branch" if not label.startswith("refs/") else "commit"
    return f"Merge {kind} '{label}' into {branch_name}\n".encode()


def _merge(ctx: AlignContext, request: AlignRequest, branch: pygit2.Commit, target: pygit2.Commit) -> _Outcome:
    repo = ctx.repo
    walker = repo.walk(branch.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    walker.hide(target.id)
    own = list(walker)
    linear = all(len(c.parents) <= 1 for c in own)
    slow = 0
    if linear and own and own[0].parents:
        # A linear branch has exactly one merge base: the parent of its first own commit.
        base = own[0].parents[0]
        tree_id, conflicted, used_slow = _merge_one_side(ctx, base=base.tree, ours=target.tree, theirs=branch.tree)
        slow += used_slow
    else:
        outcome = ort.merge_commits(repo, ours=branch.id, theirs=target.id)
        tree_id, conflicted = outcome.tree, outcome.conflicted_paths
        slow += 1
    if tree_id is None:
        conflicts = [Conflict(path=p, commit=Sha(str(branch.id))) for p in conflicted]
        return _Outcome(Status.CONFLICT, None, conflicts=conflicts, slow_merges=slow, strategy=Strategy.MERGE)
    identity = ctx.identity.signature_line()
    new_id = write_commit(
        repo,
        tree=tree_id,
        parents=[branch.id, target.id],
        author=identity,
        committer=identity,
        message=_merge_message(request.target, request.branch),
    )
    return _Outcome(Status.ALIGNED, new_id, replayed=1, slow_merges=slow, strategy=Strategy.MERGE)


def align_branch(ctx: AlignContext, request: AlignRequest) -> BranchResult:
    """Align one branch; every failure becomes a result, never an exception."""
    started = time.perf_counter()
    result = BranchResult(
        branch_name=request.branch,
        refname=request.refname,
        target=request.target,
        status=Status.ERROR,
        old_sha=request.old_sha,
        new_sha=None,
    )
    try:
        repo = ctx.repo
        branch: pygit2.Commit = repo[request.old_sha]  # type: ignore[assignment]
        target: pygit2.Commit = repo[request.target_sha]  # type: ignore[assignment]
        outcome = _align(ctx, request, branch, target)
        result.status = outcome.status
        result.new_sha = Sha(str(outcome.new)) if outcome.new is not None else None
        result.commits_replayed = outcome.replayed
        result.commits_skipped = outcome.skipped
        result.conflicts = outcome.conflicts
        result.slow_merges = outcome.slow_merges
        result.strategy_used = outcome.strategy
        if outcome.status == Status.CONFLICT:
            result.errors_detected = ["merge_conflict"]
    except Exception as error:  # noqa: BLE001 - a broken branch must not stop the run
        result.status = Status.ERROR
        result.error_message = f"{type(error).__name__}: {error}"
        result.errors_detected = ["alignment_error"]
    result.integration_time_seconds = round(time.perf_counter() - started, 6)
    return result


def _align(ctx: AlignContext, request: AlignRequest, branch: pygit2.Commit, target: pygit2.Commit) -> _Outcome:
    repo = ctx.repo
    if branch.id == target.id or repo.descendant_of(branch.id, target.id):
        return _Outcome(Status.UP_TO_DATE, branch.id)
    if repo.descendant_of(target.id, branch.id):
        return _Outcome(Status.MERGED, target.id)  # git fast-forwards: nothing of its own left
    if request.strategy == Strategy.MERGE:
        return _merge(ctx, request, branch, target)
    rebased = _rebase(ctx, branch, target)
    if request.strategy == Strategy.AUTO and rebased.status == Status.CONFLICT:
        merged = _merge(ctx, request, branch, target)
        if merged.status != Status.CONFLICT:
            return merged
        rebased.slow_merges += merged.slow_merges
    return rebased
