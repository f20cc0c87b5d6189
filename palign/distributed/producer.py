"""The producer side of a distributed run: plan (as a local run does), write the backups,
turn the plan into a Celery canvas and enqueue it, then wait for the report.

The canvas: a stack is a chain of `palign.align` tasks, one per level; independent
branches are packed into tasks of about `TASK_BRANCHES` each; the tasks go into chords
of at most `CHUNK_TASKS` (a run is one chord unless it is very large), and the callback
of the chord that ends last finishes the run. Signatures are built one chunk at a time,
so a run of any size is enqueued in bounded memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from celery import chain, chord, group
from celery.canvas import Signature

from palign.distributed.store import RunState, RunStore
from palign.errors import InputError, UnknownRun
from palign.executor.local import Unit
from palign.model import AlignRequest, BranchResult, Sha, Status, unaligned
from palign.report import RunReport, from_record, to_record
from palign.runtime import request_to_json, stopped_result

log = logging.getLogger("palign")

TASK_BRANCHES = 16  # when no worker has registered yet
CHUNK_TASKS = 400
TASKS_PER_PROCESS = 4  # enough for balance; few enough that per-task costs stay small


def branches_per_task(loose_branches: int, processes: int) -> int:
    """Independent branches per task: about TASKS_PER_PROCESS tasks per live worker
    process, within 4..64 branches."""
    if processes < 1:
        return TASK_BRANCHES
    return max(4, min(64, -(-loose_branches // (processes * TASKS_PER_PROCESS))))


@dataclass(frozen=True)
class CircuitBreaker:
    """Stop a run once at least `failures` branches failed and they are at least
    `percent` % of the branches finished so far."""

    failures: int
    percent: int

    @classmethod
    def parse(cls, text: str) -> CircuitBreaker:
        count, sep, percent = text.partition(",")
        try:
            breaker = cls(int(count), int(percent.strip().rstrip("%")) if sep else 0)
        except ValueError:
            raise InputError(f"--circuit-breaker takes COUNT,PERCENT, e.g. 5,50% (got {text!r})") from None
        if breaker.failures < 1 or not 0 <= breaker.percent <= 100:
            raise InputError(f"--circuit-breaker needs COUNT >= 1 and 0 <= PERCENT <= 100 (got {text!r})")
        return breaker


def pack_jobs(units: Sequence[Unit], per_task: int = TASK_BRANCHES) -> list[Unit]:
    """Stacks stay whole (a chain each); independent branches are dealt, largest first and
    snaking, into tasks of about `per_task`, so the tasks carry similar work."""
    stacks = [unit for unit in units if len(unit) > 1]
    loose = sorted(
        (request for unit in units if len(unit) == 1 for request in unit[0]), key=lambda r: (-r.cost, r.refname)
    )
    count = -(-len(loose) // per_task) if loose else 0
    tasks: list[list[AlignRequest]] = [[] for _ in range(count)]
    for index, request in enumerate(loose):
        lap, seat = divmod(index, count)
        tasks[seat if lap % 2 == 0 else count - 1 - seat].append(request)
    return stacks + [[batch] for batch in tasks]


def _chunks(run_id: str, jobs: Sequence[Unit], base: dict[str, Any], priority: int) -> Iterator[tuple[int, Signature]]:
    from palign.distributed.tasks import chunk_done, chunk_failed

    for number, start in enumerate(range(0, len(jobs), CHUNK_TASKS)):
        header = []
        for unit in range(start, min(start + CHUNK_TASKS, len(jobs))):
            levels = [[request_to_json(r) for r in level] for level in jobs[unit]]
            links = level_links(run_id, base, unit, levels, 0, [], priority, "")
            header.append(links[0] if len(links) == 1 else chain(*links))
        body = chunk_done.si(run_id, number).set(task_id=f"{run_id}.chunk{number}", priority=priority)
        body = body.on_error(chunk_failed.si(run_id, number).set(priority=priority))
        yield number, chord(group(header), body)


def level_links(
    run_id: str,
    base: dict[str, Any],
    unit: int,
    levels: list[list[dict[str, Any]]],
    first: int,
    lower: list[dict[str, Any]],
    priority: int,
    suffix: str,
) -> list[Signature]:
    """The chain links of a unit from level `first` on: `palign.align` per level, each
    followed by `palign.validate` (on the validate queue) when the run has checks."""
    from palign.distributed.tasks import align, validate

    links: list[Signature] = []
    for level in range(first, len(levels)):
        job = {**base, "unit": unit, "level": level, "requests": levels[level]}
        args: tuple[Any, ...] = (lower, job) if not links else (job,)
        links.append(align.s(*args).set(task_id=f"{run_id}.{unit}.{level}{suffix}", priority=priority))
        if base.get("checks"):
            links.append(validate.s(job).set(task_id=f"{run_id}.{unit}.{level}.v{suffix}", priority=priority))
    return links


def enqueue(
    store: RunStore,
    run_id: str,
    *,
    record: dict[str, Any],
    requests: Sequence[AlignRequest],
    planned: dict[str, dict[str, Any]],
    units: Sequence[Unit],
    job_base: dict[str, Any],
    priority: int,
    ttl: int,
) -> int:
    """Record the run, then send its canvas chunk by chunk; returns the number of tasks."""
    loose = sum(len(unit[0]) for unit in units if len(unit) == 1)
    jobs = pack_jobs(units, branches_per_task(loose, store.worker_processes()))
    chunks = -(-len(jobs) // CHUNK_TASKS)
    branches = {
        r.refname: {
            "branch_name": r.branch,
            "target": r.target,
            "old_sha": r.old_sha,
            "order": index,
            "planned": planned.get(r.branch, {}),
        }
        for index, r in enumerate(requests)
    }
    base = {**job_base, "run_id": run_id}
    store.create(
        run_id,
        {**record, "chunks": chunks, "total": len(requests), "tasks": len(jobs), "job_base": base},
        branches,
        ttl,
        jobs=[[[request_to_json(r) for r in level] for level in job] for job in jobs],
    )
    for _number, canvas in _chunks(run_id, jobs, base, priority):
        canvas.apply_async()
    return sum(len(job) for job in jobs)


def resubmit_missing(store: RunStore, run_id: str) -> int:
    """Send again the work of every branch that has no result yet: Redis can lose a task
    (a worker killed between taking it and noting it as taken, kombu #7950). A task that
    was only late finds its branches done when it runs. Returns the branches resent."""

    record = store.record(run_id)
    if RunState(record["state"]).final:
        return 0
    results = store.results(run_id)
    base, priority = record["job_base"], int(record.get("priority", 5))
    resent = 0
    attempt = int(time.time())
    for number, levels in sorted(store.jobs(run_id).items()):
        first = next((k for k, level in enumerate(levels) if any(r["refname"] not in results for r in level)), None)
        if first is None:
            continue
        lower = [results[r["refname"]].to_json() for level in levels[:first] for r in level]
        links = level_links(run_id, base, number, levels, first, lower, priority, f".again{attempt}")
        (links[0] if len(links) == 1 else chain(*links)).apply_async()
        resent += sum(len(level) for level in levels[first:])
    if resent:
        store.event(run_id, {"type": "resubmitted", "branches": resent})
    return resent


def finish_run(store: RunStore, run_id: str) -> None:
    """Write the run's report (every planned branch in exactly one final state) and, when
    the run asked for it, apply it. Runs once, in the callback that closes the last chunk."""
    from palign import service

    if not store.claim_finish(run_id):
        return
    try:
        record = store.record(run_id)
        report = _report(store, run_id, record)
        if record.get("apply") and not report.cancelled and report.successful:
            try:
                outcome = service.apply(record["repo"], run_id)
                service.note_applied(report, outcome)
            except Exception as error:  # noqa: BLE001  (the report says why nothing moved)
                store.set_fields(run_id, apply_error=str(error))
        report.total_time_seconds = time.time() - float(record["created_at"])
        state = RunState.CANCELLED if report.cancelled else RunState.FINISHED
        store.finish(run_id, to_record(report), state)
    except BaseException:
        store.release_finish(run_id)
        raise


def _report(store: RunStore, run_id: str, record: dict[str, Any]) -> RunReport:
    branches = store.branches(run_id)
    results = store.results(run_id)
    cancelled = bool(record.get("cancel_requested"))
    tripped = bool(record.get("circuit_breaker_triggered"))
    final: list[BranchResult] = []
    for ref, planned in sorted(branches.items(), key=lambda item: int(item[1]["order"])):
        result = results.get(ref)
        if result is None:
            result = _unfinished(ref, planned, Status.CANCELLED if cancelled else Status.SKIPPED if tripped else None)
        final.append(result)
    return RunReport(
        run_id=run_id,
        repository=record["repository"],
        strategy=record["strategy"],
        targets=dict(record["targets"]),
        results=final,
        started_at=datetime.fromtimestamp(float(record["created_at"]), tz=timezone.utc),
        total_time_seconds=0.0,
        circuit_breaker_triggered=tripped,
        cancelled=cancelled,
        executor="celery",
        planned={b["branch_name"]: b["planned"] for b in branches.values()},
    )


def _unfinished(refname: str, planned: dict[str, Any], stopped: Status | None) -> BranchResult:
    old_sha = Sha(planned["old_sha"])
    if stopped is not None:
        return stopped_result(refname, planned["target"], old_sha, stopped)
    message = "its task was lost: a worker died more often than the task may be retried"
    return unaligned(refname, planned["target"], old_sha, Status.ERROR, "task_lost", message)


def wait(
    store: RunStore,
    run_id: str,
    *,
    on_result: Callable[[BranchResult], None] | None = None,
    timeout: float | None = None,
    stall_after: float | None = None,
) -> RunReport:
    """Follow the run's events until its report is written; `on_result` sees each branch.
    After `stall_after` seconds without progress, work Redis lost is sent again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    after = "0"
    last_progress = time.monotonic()
    while True:
        for event_id, event in store.events(run_id, after, block_ms=500):
            after = event_id
            last_progress = time.monotonic()
            if event.get("type") == "branch" and on_result is not None:
                on_result(_progress_result(event))
        if stall_after is not None and time.monotonic() - last_progress > stall_after:
            resent = resubmit_missing(store, run_id)
            if resent:
                log.warning("run %s: no progress for %.0f s; sent %d branches again", run_id, stall_after, resent)
            last_progress = time.monotonic()
        if store.state(run_id).final:
            found = store.report(run_id)
            if found is not None:
                return from_record(found)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(
                f"run {run_id} did not finish within {timeout:.0f} s (it goes on: palign status {run_id})"
            )


def _progress_result(event: dict[str, Any]) -> BranchResult:
    """Enough of a result for a progress display: the branch and its status."""
    return BranchResult(
        branch_name=event["branch"],
        refname="",
        target="",
        status=Status(event["status"]),
        old_sha=Sha(""),
        new_sha=None,
    )


def load_report(store: RunStore, run_id: str) -> RunReport:
    found = store.report(run_id)
    if found is None:
        state = store.state(run_id)
        raise UnknownRun(f"run {run_id} has no report yet (it is {state.value}): palign status {run_id}")
    return from_record(found)
