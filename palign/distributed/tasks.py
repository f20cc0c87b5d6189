"""palign's Celery tasks. Every expected failure (a conflict, a blocked or busy branch, an
infrastructure error after its retries) becomes a branch result, so the run's chords
always complete; only bugs raise.

- `palign.align`: one level of a unit (a batch of independent branches, or a level of a
  stack); in a stack's chain each level receives the results of the levels below.
- `palign.validate`: the run's checks on what `palign.align` left pending.
- `palign.chunk_done` / `palign.chunk_failed`: the callback and errback of each chunk's
  chord; the call that closes the last chunk finishes the run (report, then apply).

A task delivered twice (Redis hands out again the tasks of a worker that stopped renewing
them: dead, frozen, or cut off from Redis) works on its unit only under the unit's lease
(`RunStore.unit_lease`): a second delivery waits while the first one lives, then finds
its results, or takes over from a dead one. A delivery that finds, before it writes, that
another took its lease over drops out (`Ignore`) without writing; what it already wrote
is what the other writes too (a run pins its commit times), and results are recorded once.

Messages carry a sealed `Job` (see `palign.records`, `palign.signing`): what to do, never
how to run it. A message whose seal does not verify is refused before anything runs and
logged; a repository outside the worker's allow-list, or a check the worker is not
configured with, ends the task's branches as `error`. The tasks are registered on an app
by `register`, called by `palign.distributed.app.make_app`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Celery, Task
from celery.exceptions import Ignore, Reject

from palign.distributed import worker, workspace
from palign.distributed.finish import finish_run, unfinished
from palign.distributed.store import Leases, RunStore
from palign.errors import BrokerUnavailable, InfrastructureError, InputError, MalformedRecord
from palign.executor.unit import align_levels
from palign.model import AlignRequest, BranchResult, Status, unaligned
from palign.records import Job
from palign.signing import ForgedRecord
from palign.transport import parse_location
from palign.validation.checks import Check
from palign.validation.gate import Checking, gate_for
from palign.validation.runner import Isolation

log = logging.getLogger("palign.worker")

ALIGN = "palign.align"
VALIDATE = "palign.validate"
CHUNK_DONE = "palign.chunk_done"
CHUNK_FAILED = "palign.chunk_failed"

# Errors of the world around a task (REPO unreachable, a git command failing, Redis gone):
# retried with backoff, then the task's branches end as `error`.
RETRYABLE = (InfrastructureError, InputError, OSError)


def register(app: Celery) -> None:
    app.task(name=ALIGN, bind=True, base=AlignTask)(align)
    app.task(name=VALIDATE, bind=True, base=ValidateTask)(validate)
    app.task(name=CHUNK_DONE, bind=True, max_retries=10)(chunk_done)
    app.task(name=CHUNK_FAILED, bind=True, max_retries=10)(chunk_failed)


class AlignTask(Task):  # type: ignore[misc]
    """Retries with exponential backoff; readable names in Flower and the logs."""

    max_retries = 3
    # A task whose pool process died (OOM-killed, say) is sent again at once, not after
    # Celery's default 180 s: its lease tells a second delivery when it is free.
    default_retry_delay = 1
    label = ALIGN

    def signature_from_request(self, *args: Any, **kwargs: Any) -> Any:
        """A retry (asked, or after its pool process died) goes one priority step ahead of
        the tasks not yet started: it is work under way, and queued behind a whole run
        it would hold the run's end back."""
        signature = super().signature_from_request(*args, **kwargs)
        priority = signature.options.get("priority")
        if isinstance(priority, int):
            signature.options["priority"] = max(0, priority - 1)
        return signature

    def shadow_name(self, args: Any, kwargs: Any, options: Any) -> str:
        sealed = args[-1] if args else kwargs.get("job", {})
        job = sealed.get("payload", {}) if isinstance(sealed, dict) else {}
        names = [r["refname"].removeprefix("refs/heads/") for r in job.get("requests", [])]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        return f"{self.label}[{job.get('run_id', '?')}] {shown}"

    def retry_or_fail(
        self, error: Exception, run_id: str, failing: list[AlignRequest] | list[BranchResult]
    ) -> list[BranchResult]:
        """Raise Celery's retry while retries are left; then the error results."""
        if self.request.retries < self.max_retries:
            log.warning("run %s: %s; retrying", run_id, error)
            raise self.retry(exc=error, countdown=min(60, 2 ** (self.request.retries + 1))) from None
        return [_failed(r, f"infrastructure error after retries: {error}", "infrastructure") for r in failing]


class ValidateTask(AlignTask):
    label = VALIDATE


def _failed(branch: AlignRequest | BranchResult, message: str, detected: str) -> BranchResult:
    """An `error` result for a branch (as requested, or as aligned but not checked)."""
    return unaligned(branch.refname, branch.target, branch.old_sha, Status.ERROR, detected, message)


def _opened(task: Task, kind: str, sealed: Any) -> Any:
    """The payload of a sealed argument; a message that does not verify is refused (not
    retried, not recorded): nothing it says is believed, not even which run it names."""
    try:
        return worker.store().signer.open(kind, sealed)
    except ForgedRecord as error:
        _refuse(task, error)


def _refuse(task: Task, error: Exception) -> NoReturn:
    log.error("refused task %s (%s): %s", task.request.id, task.name, error)
    raise Reject(str(error), requeue=False) from None


def _received(task: Task, sealed_job: Any, sealed_results: Any) -> tuple[Job, list[dict[str, Any]]]:
    """A task's job, and the results it received (the levels below, sealed by the task
    that aligned them, or by the producer), checked to belong to the same run. A job that
    asks for what no message may (git settings beyond those that shape commits, a URL
    with a login, a check command) is refused like a forged one."""
    try:
        work = Job.from_json(_opened(task, "job", sealed_job))
    except MalformedRecord as error:
        _refuse(task, error)
    payload = _opened(task, "results", sealed_results)
    if not isinstance(payload, list) or len(payload) != 2 or payload[0] != work.run_id:
        _refuse(task, MalformedRecord("the results it received belong to another run"))
    return work, list(payload[1])


class Superseded(Exception):
    """Another delivery of this task holds its unit's lease: this one must not write."""


@contextmanager
def _unit_held(runs: RunStore, work: Job) -> Iterator[Leases[int]]:
    """This delivery's lease on its unit, held (and renewed) while it works: waits while
    another delivery of the task holds it (until that one ends, or dies and its lease
    expires)."""
    lease = runs.unit_lease(work.run_id, work.unit, worker.process_name())
    try:
        if lease.acquire(max(1, worker.settings().broker.task_time_limit - 60)):
            raise Superseded(f"another delivery has held unit {work.unit} for longer than a task may run")
        yield lease
    finally:
        lease.release()


def _confirm(lease: Leases[int]) -> None:
    """Before a write: the lease is still this delivery's."""
    if not lease.confirm():
        raise Superseded("another delivery took this task's unit over")


def _drop_out(task: Task, run_id: str, error: Superseded) -> NoReturn:
    """Leave the unit to the delivery that holds it: no result, no next link (it sends them)."""
    log.warning("run %s: task %s drops out: %s", run_id, task.request.id, error)
    raise Ignore() from None


def _hand_back(task: Task, run_id: str, error: BrokerUnavailable) -> NoReturn:
    """Redis stayed out of reach through the store's retries: nothing can be recorded, so
    the task goes back to its queue as it came (once Redis is back; until then its time
    in the unacked index ages and a sweep hands it out), with no failure recorded for it."""
    log.warning("run %s: task %s goes back to its queue: %s", run_id, task.request.id, error)
    raise Reject(str(error), requeue=True) from None


def _sealed_results(run_id: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return worker.store().signer.seal("results", [run_id, results])


def _refused_repository(work: Job, requests: list[AlignRequest] | list[BranchResult]) -> list[BranchResult]:
    """Error results when this worker does not serve the job's repository."""
    if parse_location(work.spec.repo).allowed_by(worker.settings().allowed_repos):
        return []
    message = "this worker does not serve this repository (PALIGN_ALLOWED_REPOS)"
    return [_failed(r, message, "repository_not_allowed") for r in requests]


def align(self: AlignTask, lower: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Align the job's requests (one level) onto their targets, or onto the aligned tips of
    the branches below them in `lower`; returns `lower` plus this level's results."""
    work, received = _received(self, job, lower)
    run_id, names = work.run_id, work.refnames
    runs = worker.store()
    below = {r.refname: r for r in (BranchResult.from_json(d) for d in received)}
    todo = list(work.requests)
    try:
        runs.mark_running(run_id)
        results = runs.results(run_id, names)  # a repeated task finds them
        if any(r.refname not in results for r in work.requests):
            with _unit_held(runs, work) as lease:
                results = runs.results(run_id, names)  # ... or finds them once the other delivery ended
                todo = [r for r in work.requests if r.refname not in results]
                refused = _refused_repository(work, todo) if todo else []
                if refused:
                    _record(runs, run_id, refused)
                    results = runs.results(run_id, names)
                elif todo:
                    results.update(_align(runs, work, todo, below, lease))
    except Superseded as error:
        _drop_out(self, run_id, error)
    except BrokerUnavailable as error:
        _hand_back(self, run_id, error)
    except SoftTimeLimitExceeded:
        failed = [_failed(r, "the task ran past its time limit", "time_limit") for r in todo]
        results = _record_and_read(runs, run_id, failed, names)
    except RETRYABLE as error:
        results = _record_and_read(runs, run_id, self.retry_or_fail(error, run_id, todo), names)
    return _sealed_results(run_id, received + [results[name].to_json() for name in names])


def _record_and_read(
    runs: RunStore, run_id: str, failed: list[BranchResult], refnames: list[str]
) -> dict[str, BranchResult]:
    """Record these failures (results stored first by another delivery win) and read back
    every result of the level."""
    _record(runs, run_id, failed)
    return runs.results(run_id, refnames)


def _align(
    runs: RunStore, job: Job, todo: list[AlignRequest], below: dict[str, BranchResult], lease: Leases[int]
) -> dict[str, BranchResult]:
    run_id = job.run_id
    settings = worker.settings()
    checked = bool(job.spec.checks)
    # Locked by what the repository is, not how its URL was written: two runs that reach it
    # by two URLs must not align one branch at once.
    repository = parse_location(job.spec.repo).identity
    with runs.branch_locks(repository, [r.refname for r in todo], run_id, worker.process_name()) as locks:
        busy = set(locks.acquire(settings.broker.lock_wait))
        done = runs.results(run_id, [r.refname for r in todo])  # finished while we waited
        holders = {ref: locks.owner_of(ref) for ref in busy if ref not in done}
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
            space = workspace.workspace_for(job.spec, settings)
            workspace.ensure_objects(space, work, below.values())
            ready = lap()
            stop = _throttled(lambda: runs.stop_reason(run_id))
            new = align_levels(space.context, [work], dict(below), stop=stop)
            aligned = lap()
            _confirm(lease)
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
        _confirm(lease)
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
    counters = runs.record_results(run_id, results)
    if counters.recorded and counters.done >= runs.total(run_id):
        finish_run(runs, run_id, worker.settings(), worker.process_name())


def _checks_of(work: Job) -> tuple[Check, ...] | str:
    """The worker's own checks the job names, or why it cannot run them."""
    configured = worker.configured_checks()
    checks = []
    for ref in work.spec.checks:
        check = configured.get(ref.name)
        if check is None:
            return f"check {ref.name!r} is not configured on this worker (its palign.toml [validate])"
        if check.ref() != ref:
            return f"check {ref.name!r} on this worker differs from the one the run asked for"
        checks.append(check)
    return tuple(checks)


def validate(self: ValidateTask, aligned: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Run the run's checks on the results `palign.align` left under refs/palign/pending/:
    passing ones are staged, failing ones become `failed_validation`; then record the
    level. Returns what it received, this level's results checked."""
    work, received_json = _received(self, job, aligned)
    run_id, names = work.run_id, work.refnames
    runs = worker.store()
    received = {r["refname"]: BranchResult.from_json(r) for r in received_json}
    level = [received[name] for name in names]
    try:
        stored = runs.results(run_id, names)  # a repeated task finds them
        if any(r.refname not in stored for r in level):
            with _unit_held(runs, work) as lease:
                _validate(runs, work, level, lease)
        results = runs.results(run_id, names)
    except Superseded as error:
        _drop_out(self, run_id, error)
    except BrokerUnavailable as error:
        _hand_back(self, run_id, error)
    except SoftTimeLimitExceeded:
        failed = [_failed(r, "the checks ran past the task's time limit", "time_limit") for r in level]
        results = _record_and_read(runs, run_id, failed, names)
    except RETRYABLE as error:
        results = _record_and_read(runs, run_id, self.retry_or_fail(error, run_id, level), names)
    lower = [r for r in received_json if r["refname"] not in set(names)]
    return _sealed_results(run_id, lower + [results[name].to_json() for name in names])


def _validate(runs: RunStore, work: Job, level: list[BranchResult], lease: Leases[int]) -> None:
    """Check and record the level's branches that have no result yet."""
    run_id = work.run_id
    stored = runs.results(run_id, [r.refname for r in level])  # ... or once the other delivery ended
    todo = [r for r in level if r.refname not in stored]
    if not todo:
        return
    checks = _checks_of(work)
    if isinstance(checks, str):
        refused = [_failed(r, checks, "check_not_configured") for r in todo]
    else:
        refused = _refused_repository(work, todo)
    if refused or isinstance(checks, str):
        _record(runs, run_id, refused)
        return
    settings = worker.settings()
    space = workspace.workspace_for(work.spec, settings)
    gated = [r for r in todo if r.status.publishable and r.new_sha]
    workspace.ensure_pending(space, gated)
    checking = Checking(checks, Isolation.of(settings), work.spec.baseline)
    gate = gate_for(str(space.scratch.path), space.context.repo, checking, runs.check_cache())
    checked = [gate(r) if r in gated else r for r in todo]
    _confirm(lease)
    workspace.promote(space, checked)
    _confirm(lease)
    _record(runs, run_id, checked)


def chunk_done(self: Task, chunk: dict[str, Any]) -> str:
    return _close_chunk(self, chunk)


def chunk_failed(self: Task, chunk: dict[str, Any]) -> str:
    """A task of the chunk failed for good (its worker died too often): the branches it did
    not finish end as `error` in the report."""
    return _close_chunk(self, chunk, failed=True)


def _close_chunk(task: Task, sealed: dict[str, Any], *, failed: bool = False) -> str:
    payload = _opened(task, "chunk", sealed)
    if not isinstance(payload, list) or len(payload) != 2:
        raise Reject("not a chunk", requeue=False)
    run_id, chunk = str(payload[0]), int(payload[1])
    if failed:
        log.warning("run %s: chunk %d ended with a failed task", run_id, chunk)
    try:
        runs = worker.store()
        if runs.chunk_finished(run_id, chunk):  # true for every call once all chunks ended
            if unfinished(runs, run_id).at_work:
                # A delivery of a task that failed here is still at work elsewhere: its
                # results finish the run when they are recorded.
                return "chunks done; a task is still at work"
            finish_run(runs, run_id, worker.settings(), worker.process_name())
            return "finished"
    except RETRYABLE as error:
        raise task.retry(exc=error, countdown=5) from None
    return "chunk done"
