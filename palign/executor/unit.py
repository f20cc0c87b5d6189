"""The unit of work every executor runs: align the levels of a stack in this process.

Each process keeps one align context per (object store, identity), and one record of
what commits changed and their patch keys per mirror, so target commits are diffed once
per process and mirror. The local pool calls `align_stack`; the Celery tasks of the
distributed mode call `align_levels` with a context of their workspace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from palign.engine.align import AlignContext, align_branch
from palign.engine.changes import ChangeIndex
from palign.engine.repository import open_repository
from palign.engine.selection import PatchKeyCache
from palign.engine.summary import Summaries
from palign.model import AlignRequest, BranchResult, Identity, Status, blocked_result, stopped_result
from palign.validation.gate import Checking, Gate, gate_for
from palign.validation.runner import CheckCache

_contexts: dict[tuple[str, Identity], AlignContext] = {}
_change_indexes: dict[str, ChangeIndex] = {}
_patch_caches: dict[str, PatchKeyCache] = {}
_summaries: dict[int, Summaries] = {}
# What a process remembers of commits (their changes and patch keys) is dropped past this
# many: a target's history is then diffed again (one batch), and this memo stays bounded
# however many branches go through a process, within one run or across runs.
_REMEMBERED_COMMITS_LIMIT = 20_000

StopCheck = Callable[[], "Status | None"]  # asked before each branch: has the run been stopped?


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
        changes = _change_indexes.setdefault(shared or git_dir, ChangeIndex())
        if shared is not None:
            cache = _patch_caches.setdefault(shared, PatchKeyCache(changes=changes))
        else:
            cache = PatchKeyCache(changes=changes)
        ctx = AlignContext(repo=open_repository(git_dir), identity=identity, cache=cache)
        _contexts[key] = ctx
    return ctx


def _keep_bounded(cache: PatchKeyCache) -> None:
    """Checked before each unit: one run of many branches must not grow a process either."""
    if len(cache.changes.by_commit) > _REMEMBERED_COMMITS_LIMIT:
        cache.changes.by_commit.clear()
        for memo in (cache.keys, cache.sizes, cache.blob_sizes, cache.sides):
            memo.clear()


def forget(git_dir: str) -> None:
    """Drop what this process keeps for `git_dir` (a scratch store being removed); what
    is kept for its mirror stays."""
    for key in [k for k in _contexts if k[0] == git_dir]:
        _summaries.pop(id(_contexts[key].repo), None)
        del _contexts[key]
    _change_indexes.pop(git_dir, None)


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
    _keep_bounded(ctx.cache)
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
                if gate is not None and result.status.publishable and result.new_sha:
                    result = _gated(gate, result)  # a branch stacked on one that fails its checks is blocked
                    if result.change_summary is not None and result.status is Status.FAILED_VALIDATION:
                        result.change_summary["summary"] += "; then failed its checks"
            done[request.refname] = result
            new.append(result)
    return new


def _gated(gate: Gate, result: BranchResult) -> BranchResult:
    """The gate's verdict; a gate that breaks (a hostile tree, a full disk) makes the
    branch an `error`, never the run."""
    try:
        return gate(result)
    except Exception as error:  # noqa: BLE001 - one branch's checks must not stop the run
        result.status = Status.ERROR
        result.errors_detected.append("checks_failed_to_run")
        result.error_message = f"its checks could not run: {type(error).__name__}: {error}"
        return result


def align_stack(
    mirror_path: str,
    identity: Identity,
    levels: list[list[dict[str, Any]]],
    checking: Checking | None = None,
    check_cache: CheckCache | None = None,
) -> list[dict[str, Any]]:
    """One unit of work of the local pool: a stack, level by level (see `align_levels`),
    each aligned result checked by `checking` when the run has checks. Requests and
    results cross the process boundary as JSON."""
    ctx = context_for(mirror_path, identity)
    requests = [[AlignRequest.from_json(data) for data in level] for level in levels]
    gate = gate_for(mirror_path, ctx.repo, checking, check_cache) if checking and check_cache else None
    return [result.to_json() for result in align_levels(ctx, requests, {}, gate=gate)]
