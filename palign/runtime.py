"""The unit of work every executor runs: align one branch in this process's mirror.

Each process keeps one open repository and one patch-key cache per mirror, so target
commits are diffed once per process and run. The local pool calls `align_stack`; the
Celery tasks of the distributed mode call the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pygit2

from palign.engine import ort
from palign.engine.align import AlignContext, align_branch
from palign.engine.changes import ChangeIndex
from palign.engine.objects import Identity
from palign.engine.selection import PatchKeyCache
from palign.model import AlignRequest, BranchResult, Sha, Status, Strategy, unaligned
from palign.summary import Summaries

# Worker memory stays bounded: libgit2's object cache defaults to 256 MiB per process.
_OBJECT_CACHE_BYTES = 32 * 1024 * 1024

_contexts: dict[tuple[str, Identity], AlignContext] = {}
_change_indexes: dict[str, ChangeIndex] = {}
_patch_caches: dict[str, PatchKeyCache] = {}
_SHARED_COMMITS_LIMIT = 200_000


def tune_libgit2() -> None:
    """Bounded memory, and trees kept: libgit2 caches no tree above 4 KiB by default, so
    wide directories were re-inflated on every path lookup."""
    pygit2.settings.cache_max_size(_OBJECT_CACHE_BYTES)
    pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 4 * 1024 * 1024)


def adopt_changes(git_dir: str, changes: ChangeIndex) -> None:
    """Use `changes` (diffed already, for the same objects) for `git_dir` in this process:
    workers forked afterwards inherit it."""
    _change_indexes.setdefault(git_dir, ChangeIndex()).by_commit.update(changes.by_commit)


def context_for(git_dir: str, identity: Identity, *, shared: str | None = None) -> AlignContext:
    """The align context of `git_dir` in this process. With `shared` (a mirror path), what
    the context learns about commits (their changes, patch keys) is kept under that key and
    reused by later contexts over the same mirror: commits never change, and a long-lived
    worker process then diffs a target's history once, not once per run."""
    key = (git_dir, identity)
    ctx = _contexts.get(key)
    if ctx is None:
        tune_libgit2()
        changes = _change_indexes.setdefault(shared or git_dir, ChangeIndex())
        if shared is not None:
            cache = _patch_caches.setdefault(shared, PatchKeyCache(changes=changes))
            if len(changes.by_commit) > _SHARED_COMMITS_LIMIT:  # bounded memory
                changes.by_commit.clear()
                for memo in (cache.keys, cache.lines, cache.sizes):
                    memo.clear()
        else:
            cache = PatchKeyCache(changes=changes)
        ctx = AlignContext(repo=pygit2.Repository(git_dir), identity=identity, cache=cache)
        _contexts[key] = ctx
    return ctx


def forget(git_dir: str) -> None:
    """Drop what this process keeps for `git_dir` (a scratch store being removed); what
    is kept for its mirror stays."""
    for key in [k for k in _contexts if k[0] == git_dir]:
        _summaries.pop(id(_contexts[key].repo), None)
        del _contexts[key]
    _change_indexes.pop(git_dir, None)


def request_to_json(request: AlignRequest) -> dict[str, Any]:
    return {
        "refname": request.refname,
        "old_sha": request.old_sha,
        "target": request.target,
        "target_sha": request.target_sha,
        "strategy": request.strategy.value,
        "cost": request.cost,
        "ahead": request.ahead,
        "behind": request.behind,
        "parent": request.parent,
        "parent_old": request.parent_old,
        "onto": request.onto,
        "forecast": request.forecast,
    }


def request_from_json(data: dict[str, Any]) -> AlignRequest:
    return AlignRequest(
        refname=data["refname"],
        old_sha=Sha(data["old_sha"]),
        target=data["target"],
        target_sha=Sha(data["target_sha"]),
        strategy=Strategy(data["strategy"]),
        cost=int(data.get("cost", 0)),
        ahead=int(data.get("ahead", -1)),
        behind=int(data.get("behind", -1)),
        parent=data.get("parent"),
        parent_old=Sha(data["parent_old"]) if data.get("parent_old") else None,
        onto=Sha(data["onto"]) if data.get("onto") else None,
        forecast=bool(data.get("forecast", False)),
    )


def blocked_result(request: AlignRequest, blocker: BranchResult) -> BranchResult:
    message = f"stacked on {blocker.branch_name}, which did not align ({blocker.status.value})"
    return unaligned(request.refname, request.target, request.old_sha, Status.BLOCKED, "blocked_by_parent", message)


StopCheck = Callable[[], "Status | None"]


def stopped_result(refname: str, target: str, old_sha: Sha, status: Status) -> BranchResult:
    """A branch a cancel or the circuit breaker kept from being aligned: left as it was."""
    cancelled = status is Status.CANCELLED
    reason = "the run was cancelled" if cancelled else "the run's circuit breaker stopped it"
    detected = "cancelled" if cancelled else "circuit_breaker"
    message = f"{reason} before this branch was aligned"
    return unaligned(refname, target, old_sha, status, detected, message)


Gate = Callable[[BranchResult], BranchResult]  # checks an aligned result (validation)


if TYPE_CHECKING:
    from palign.validation.runner import CheckCache

_summaries: dict[int, Summaries] = {}


def summaries_for(ctx: AlignContext) -> Summaries:
    found = _summaries.get(id(ctx.repo))
    if found is None or found.repo is not ctx.repo:
        found = _summaries[id(ctx.repo)] = Summaries(ctx.repo, ctx.cache)
    return found


def align_levels(
    ctx: AlignContext,
    levels: Sequence[Sequence[AlignRequest]],
    done: dict[str, BranchResult],
    stop: StopCheck | None = None,
    gate: Gate | None = None,
) -> list[BranchResult]:
    """Align a stack's levels in order. `done` holds the results of lower levels (by ref
    name) and receives these: a branch stacked on another is replayed onto that one's
    aligned tip, and is blocked when that one did not align. `stop` is asked before each
    branch whether the run has been stopped."""
    new: list[BranchResult] = []
    for level in levels:
        for request in level:
            parent = done.get(request.parent) if request.parent else None
            halted = stop() if stop is not None else None
            if halted is not None:
                result = stopped_result(request.refname, request.target, request.old_sha, halted)
            elif parent is not None and not parent.status.successful:
                result = blocked_result(request, parent)
            else:
                if parent is not None and parent.new_sha is not None:
                    request = replace(request, parent_old=parent.old_sha, onto=parent.new_sha)
                result = align_branch(ctx, request)
                if not request.forecast:
                    result.change_summary = summaries_for(ctx).of(request, result)
                if gate is not None and result.status in (Status.ALIGNED, Status.MERGED) and result.new_sha:
                    result = gate(result)  # a branch stacked on one that fails its checks is blocked
                    if result.change_summary is not None and result.status is Status.FAILED_VALIDATION:
                        result.change_summary["summary"] += "; then failed its checks"
            done[request.refname] = result
            new.append(result)
    return new


def align_stack(
    mirror_path: str,
    identity: Sequence[Any],
    levels: list[list[dict[str, Any]]],
    checks: Sequence[dict[str, Any]] = (),
    baseline: bool = False,
) -> list[dict[str, Any]]:
    """One unit of work of the local pool: a stack, level by level (see `align_levels`),
    each aligned result checked by `checks` (JSON of `palign.validation.Check`; with
    `baseline`, a failure is checked on the original commit too).
    `identity` is (name, email, pinned committer time or None)."""
    ctx = context_for(mirror_path, Identity(*identity))
    requests = [[request_from_json(data) for data in level] for level in levels]
    gate = validation_gate(mirror_path, ctx.repo, checks, baseline) if checks else None
    return [result.to_json() for result in align_levels(ctx, requests, {}, gate=gate)]


def validation_gate(
    git_dir: str,
    repo: pygit2.Repository,
    checks: Sequence[dict[str, Any]],
    baseline: bool = False,
    cache: CheckCache | None = None,
) -> Gate:
    """Run the operator's checks on each aligned result; a failure turns the result into
    `failed_validation` (with the check's details), which is neither staged nor applied.
    With `baseline`, the checks also run on the branch's original commit after a failure,
    to tell a branch the alignment broke from one that was broken already."""
    from palign.validation.cache import LocalCheckCache
    from palign.validation.checks import Check
    from palign.validation.runner import validate

    parsed = [Check.from_json(c) for c in checks]
    results_cache = cache or LocalCheckCache()

    def gate(result: BranchResult) -> BranchResult:
        assert result.new_sha is not None
        tree = str(repo[pygit2.Oid(hex=result.new_sha)].peel(pygit2.Tree).id)
        outcome = validate(git_dir, result.new_sha, tree, parsed, results_cache)
        result.validation = outcome.to_json()
        failed = outcome.failed
        if failed is not None:
            result.status = Status.FAILED_VALIDATION
            result.errors_detected.append("failed_validation")
            how = "timed out" if failed.timed_out else f"exited {failed.exit_code}"
            result.error_message = f"check {failed.name!r} {how} on the aligned result"
            if baseline:
                old_tree = str(repo[pygit2.Oid(hex=result.old_sha)].peel(pygit2.Tree).id)
                before = validate(git_dir, result.old_sha, old_tree, parsed, results_cache)
                cause = "alignment" if before.passed else "already_broken"
                result.validation = {**result.validation, "baseline": before.to_json(), "cause": cause}
                result.error_message += (
                    "; it passes on the original commit: broken by the alignment"
                    if before.passed
                    else "; it fails on the original commit too: broken before the alignment"
                )
        return result

    return gate


def merge_pairs(git_dir: str, pairs: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Does `git merge` of each pair (name, sha, name, sha) conflict? One task's worth of
    `palign conflicts`, merged in memory by git's own merge."""
    repo = pygit2.Repository(git_dir)
    out = []
    for left_name, left, right_name, right in pairs:
        outcome = ort.merge_commits(repo, ours=pygit2.Oid(hex=left), theirs=pygit2.Oid(hex=right))
        out.append(
            {
                "left": left_name,
                "right": right_name,
                "conflict": outcome.tree is None,
                "paths": list(outcome.conflicted_paths),
            }
        )
    return out
