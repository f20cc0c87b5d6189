"""palign's Celery tasks. Every expected failure (a conflict, a blocked or busy branch, an
infrastructure error after its retries) becomes a branch result, so the run's chords
always complete; only bugs raise.

- `palign.align`: one level of a unit (a batch of independent branches, or a level of a
  stack); in a stack's chain each level receives the results of the levels below.
- `palign.chunk_done` / `palign.chunk_failed`: the callback and errback of each chunk's
  chord; the call that closes the last chunk finishes the run (report, then apply).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task
from celery.signals import heartbeat_sent, worker_process_init, worker_process_shutdown, worker_ready
from redis.exceptions import RedisError

from palign.distributed import app as app_module
from palign.distributed import workspace
from palign.distributed.app import app
from palign.distributed.store import RedisCheckCache, RunStore
from palign.engine.objects import Identity
from palign.errors import InfrastructureError, InputError
from palign.model import AlignRequest, BranchResult, Status, unaligned
from palign.runtime import align_levels, request_from_json, validation_gate

log = logging.getLogger("palign.worker")

# Errors of the world around a task (REPO unreachable, a git command failing, Redis gone):
# retried with backoff, then the task's branches end as `error`.
RETRYABLE = (InfrastructureError, InputError, RedisError, OSError)

_store: RunStore | None = None


def store() -> RunStore:
    global _store
    if _store is None:
        _store = RunStore(app_module.current.broker_url)
    return _store


@worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    # A forked pool process must not share the parent's Redis connections.
    global _store
    _store = None
    # What the worker imported before forking stays out of this process's garbage collections.
    gc.freeze()


_processes = 0
_node = ""


@worker_ready.connect
def _announce(sender: Any = None, **_: Any) -> None:
    """Tell producers how many processes this worker runs: they size tasks by it."""
    global _processes, _node
    controller = getattr(sender, "controller", None)
    _processes = int(getattr(controller, "max_concurrency", None) or getattr(controller, "concurrency", 1) or 1)
    _node = str(getattr(sender, "hostname", "") or f"{os.getpid()}@{socket.gethostname()}")
    _heartbeat()


@heartbeat_sent.connect
def _heartbeat(**_: Any) -> None:
    if _processes:
        try:
            store().register_worker(_node, _processes)
        except RedisError:
            log.warning("cannot register this worker in Redis; producers will assume fewer processes")


@worker_process_shutdown.connect
def _leave(**_: Any) -> None:
    workspace.close()


def _failed(branch: AlignRequest | BranchResult, message: str, detected: str) -> BranchResult:
    """An `error` result for a branch (as requested, or as aligned but not checked)."""
    return unaligned(branch.refname, branch.target, branch.old_sha, Status.ERROR, detected, message)


class AlignTask(Task):  # type: ignore[misc]
    """Retries with exponential backoff; readable names in Flower and the logs."""

    max_retries = 3

    def shadow_name(self, args: Any, kwargs: Any, options: Any) -> str:
        job = args[-1] if args else kwargs.get("job", {})
        names = [r["refname"].removeprefix("refs/heads/") for r in job.get("requests", [])]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        return f"palign.align[{job.get('run_id', '?')}] {shown}"


@app.task(name="palign.align", bind=True, base=AlignTask)
def align(self: AlignTask, lower: list[dict[str, Any]], job: dict[str, Any]) -> list[dict[str, Any]]:
    """Align `job["requests"]` (one level) onto their targets, or onto the aligned tips of
    the branches below them in `lower`; returns `lower` plus this level's results."""
    run_id = job["run_id"]
    runs = store()
    requests = [request_from_json(data) for data in job["requests"]]
    below = {r.refname: r for r in (BranchResult.from_json(d) for d in lower)}
    todo = requests
    try:
        runs.mark_running(run_id)
        results = runs.results(run_id, [r.refname for r in requests])  # a repeated task finds them
        todo = [r for r in requests if r.refname not in results]
        if todo:
            results.update(_align(runs, job, todo, below))
    except SoftTimeLimitExceeded:
        failed = [_failed(r, "the task ran past its time limit", "time_limit") for r in todo]
        results = _record_and_read(runs, run_id, failed, [r.refname for r in requests])
    except RETRYABLE as error:
        if self.request.retries < self.max_retries:
            log.warning("run %s: %s; retrying", run_id, error)
            raise self.retry(exc=error, countdown=min(60, 2 ** (self.request.retries + 1))) from None
        failed = [_failed(r, f"infrastructure error after retries: {error}", "infrastructure") for r in todo]
        results = _record_and_read(runs, run_id, failed, [r.refname for r in requests])
    return lower + [results[r.refname].to_json() for r in requests]


def _record_and_read(
    runs: RunStore, run_id: str, failed: list[BranchResult], refnames: list[str]
) -> dict[str, BranchResult]:
    """Record these failures (results stored first by another delivery win) and read back
    every result of the level."""
    _record(runs, run_id, failed)
    return runs.results(run_id, refnames)


def _align(
    runs: RunStore, job: dict[str, Any], todo: list[AlignRequest], below: dict[str, BranchResult]
) -> dict[str, BranchResult]:
    run_id = job["run_id"]
    checked = bool(job.get("checks"))
    with runs.branch_locks(job["repo"], [r.refname for r in todo], owner=run_id) as locks:
        busy = set(locks.acquire(app_module.current.lock_wait))
        done = runs.results(run_id, [r.refname for r in todo])  # finished while we waited
        holders = {ref: locks.holder(ref) for ref in busy if ref not in done}
        if any(holder == run_id for holder in holders.values()):
            raise InfrastructureError("a repeated delivery of this task is still aligning its branches")
        refused = [
            _failed(r, f"run {holders[r.refname]} is aligning this branch; not aligned twice at once", "branch_busy")
            for r in todo
            if r.refname in holders
        ]
        work = [r for r in todo if r.refname not in done and r.refname not in holders]
        new: list[BranchResult] = []
        clock = [time.perf_counter()]

        def lap() -> float:
            clock.append(time.perf_counter())
            return clock[-1] - clock[-2]

        if work:
            identity = Identity(*job["identity"])
            space = workspace.workspace_for(run_id, job["repo"], identity, job["settings"])
            workspace.ensure_objects(space, work, below.values())
            ready = lap()
            stop = _throttled(lambda: runs.stop_reason(run_id))
            new = align_levels(space.context, [work], dict(below), stop=stop)
            aligned = lap()
            # With checks, results wait under refs/palign/pending/ for `palign.validate`.
            workspace.publish(space, work, new, below.values(), pending=checked)
            published = lap()
            log.info(
                "run %s: %d branches: objects %.3f s, align %.3f s, publish %.3f s",
                run_id,
                len(work),
                ready,
                aligned,
                published,
            )
        if checked:  # `palign.validate` records them once checked
            return {**done, **{r.refname: r for r in new + refused}}
        _record(runs, run_id, new + refused)
    return runs.results(run_id, [r.refname for r in todo])


def _throttled(check: Callable[[], Status | None], every: float = 0.25) -> Callable[[], Status | None]:
    """Ask Redis whether the run was stopped at most every `every` seconds: a cancel is
    seen within a quarter second, without a round trip per branch."""
    last = [0.0]
    seen: list[Status | None] = [None]

    def ask() -> Status | None:
        now = time.monotonic()
        if seen[0] is None and now - last[0] >= every:
            last[0] = now
            seen[0] = check()
        return seen[0]

    return ask


def _record(runs: RunStore, run_id: str, results: list[BranchResult]) -> None:
    """Store results; the task that stores a run's last one finishes the run. (The chord's
    callback would too: this covers a task Redis lost, sent again by `resubmit_missing`.)"""
    from palign.distributed.producer import finish_run

    counters = runs.record_results(run_id, results)
    if counters.recorded and counters.done >= int(runs.record_fields(run_id, "total")[0] or 0):
        finish_run(runs, run_id)


class ValidateTask(AlignTask):
    def shadow_name(self, args: Any, kwargs: Any, options: Any) -> str:
        return super().shadow_name(args, kwargs, options).replace("palign.align[", "palign.validate[", 1)


@app.task(name="palign.validate", bind=True, base=ValidateTask)
def validate(self: ValidateTask, aligned: list[dict[str, Any]], job: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the run's checks on the results `palign.align` left under refs/palign/pending/:
    passing ones are staged, failing ones become `failed_validation`; then record the
    level. Returns what it received, this level's results checked."""
    run_id = job["run_id"]
    runs = store()
    names = [r["refname"] for r in job["requests"]]
    received = {r["refname"]: BranchResult.from_json(r) for r in aligned}
    level = [received[name] for name in names]
    try:
        stored = runs.results(run_id, names)  # a repeated task finds them
        todo = [r for r in level if r.refname not in stored]
        if todo:
            identity = Identity(*job["identity"])
            space = workspace.workspace_for(run_id, job["repo"], identity, job["settings"])
            gated = [r for r in todo if r.status in (Status.ALIGNED, Status.MERGED) and r.new_sha]
            workspace.ensure_pending(space, gated)
            gate = validation_gate(
                str(space.scratch.path),
                space.context.repo,
                job["checks"],
                bool(job.get("baseline")),
                RedisCheckCache(runs.redis),
            )
            checked = [gate(r) if r in gated else r for r in todo]
            workspace.promote(space, checked)
            _record(runs, run_id, checked)
        results = runs.results(run_id, names)
    except SoftTimeLimitExceeded:
        failed = [_failed(r, "the checks ran past the task's time limit", "time_limit") for r in level]
        results = _record_and_read(runs, run_id, failed, names)
    except RETRYABLE as error:
        if self.request.retries < self.max_retries:
            log.warning("run %s: %s; retrying", run_id, error)
            raise self.retry(exc=error, countdown=min(60, 2 ** (self.request.retries + 1))) from None
        failed = [_failed(r, f"infrastructure error after retries: {error}", "infrastructure") for r in level]
        results = _record_and_read(runs, run_id, failed, names)
    lower = [r for r in aligned if r["refname"] not in set(names)]
    return lower + [results[name].to_json() for name in names]


@app.task(name="palign.chunk_done", bind=True, max_retries=10)
def chunk_done(self: Task, run_id: str, chunk: int) -> str:
    return _close_chunk(self, run_id, chunk)


@app.task(name="palign.chunk_failed", bind=True, max_retries=10)
def chunk_failed(self: Task, run_id: str, chunk: int) -> str:
    """A task of the chunk failed for good (its worker died too often): the branches it did
    not finish end as `error` in the report."""
    log.warning("run %s: chunk %d ended with a failed task", run_id, chunk)
    return _close_chunk(self, run_id, chunk)


def _close_chunk(task: Task, run_id: str, chunk: int) -> str:
    from palign.distributed.producer import finish_run

    try:
        if store().chunk_finished(run_id, chunk):  # true for every call once all chunks ended
            finish_run(store(), run_id)
            return "finished"
    except RETRYABLE as error:
        raise task.retry(exc=error, countdown=5) from None
    return "chunk done"
