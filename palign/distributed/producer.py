"""The producer side of a distributed run: turn a plan into a Celery canvas, enqueue it,
follow the run until its report is written, and send again work Redis lost.

The canvas: a stack is a chain of `palign.align` tasks, one per level; independent
branches are packed into tasks of about `TASK_BRANCHES` each; the tasks go into chords
of at most `CHUNK_TASKS` (a run is one chord unless it is very large), and the callback
of the chord that ends last finishes the run. Signatures are built one chunk at a time,
so a run of any size is enqueued in bounded memory.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from palign.distributed.finish import Unfinished, finish_run, unfinished
from palign.distributed.store import RunStore
from palign.distributed.tasks import ALIGN, CHUNK_DONE, CHUNK_FAILED, VALIDATE
from palign.errors import RunTimeout
from palign.model import AlignRequest, BranchResult, Progress, Status, WorkUnit
from palign.records import Job, PlanInfo, QueuedBranch, RunRecord, RunSpec
from palign.report import RunReport, from_record
from palign.settings import Settings
from palign.signing import Signer

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


def pack_jobs(units: Sequence[WorkUnit], per_task: int = TASK_BRANCHES) -> list[WorkUnit]:
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


def _chunks(app: Celery, signer: Signer, spec: RunSpec, jobs: Sequence[WorkUnit], priority: int) -> Iterator[Signature]:
    run_id = spec.run_id
    for number, start in enumerate(range(0, len(jobs), CHUNK_TASKS)):
        header = []
        for unit in range(start, min(start + CHUNK_TASKS, len(jobs))):
            links = level_links(app, signer, spec, unit, jobs[unit], 0, [], priority, "")
            header.append(links[0] if len(links) == 1 else chain(*links))
        chunk = (signer.seal("chunk", [run_id, number]),)
        body = app.signature(CHUNK_DONE, args=chunk, immutable=True)
        body = body.set(task_id=f"{run_id}.chunk{number}", priority=priority)
        body = body.on_error(app.signature(CHUNK_FAILED, args=chunk, immutable=True).set(priority=priority))
        yield chord(group(header), body)


def level_links(
    app: Celery,
    signer: Signer,
    spec: RunSpec,
    unit: int,
    levels: Sequence[Sequence[AlignRequest]],
    first: int,
    lower: list[dict[str, Any]],
    priority: int,
    suffix: str,
) -> list[Signature]:
    """The chain links of a unit from level `first` on: `palign.align` per level, each
    followed by `palign.validate` (on the validate queue) when the run has checks. Every
    job is sealed, and so are the results of the levels below the first."""
    run_id = spec.run_id
    links: list[Signature] = []
    for level in range(first, len(levels)):
        job = signer.seal("job", Job(spec, unit, level, tuple(levels[level])).to_json())
        args: tuple[Any, ...] = (signer.seal("results", [run_id, lower]), job) if not links else (job,)
        links.append(app.signature(ALIGN, args=args).set(task_id=f"{run_id}.{unit}.{level}{suffix}", priority=priority))
        if spec.checks:
            validate = app.signature(VALIDATE, args=(job,))
            links.append(validate.set(task_id=f"{run_id}.{unit}.{level}.v{suffix}", priority=priority))
    return links


def enqueue(
    app: Celery,
    store: RunStore,
    record: RunRecord,
    *,
    requests: Sequence[AlignRequest],
    planned: dict[str, PlanInfo],
    units: Sequence[WorkUnit],
    ttl: int,
    refused: Sequence[BranchResult] = (),
) -> int:
    """Record the run, then send its canvas chunk by chunk; returns the number of tasks.
    `refused` branches are recorded with their results at once (no task for them)."""
    loose = sum(len(unit[0]) for unit in units if len(unit) == 1)
    processes = sum(n for n, key_id in store.live_workers().values() if key_id == store.signer.key_id)
    jobs = pack_jobs(units, branches_per_task(loose, processes))
    total = len(requests) + len(refused)
    record = record.sized(total=total, tasks=len(jobs), chunks=-(-len(jobs) // CHUNK_TASKS))
    branches = [
        QueuedBranch(r.refname, r.branch, r.target, r.old_sha, index, planned.get(r.branch))
        for index, r in enumerate(requests)
    ]
    branches += [
        QueuedBranch(r.refname, r.branch_name, r.target, r.old_sha, index)
        for index, r in enumerate(refused, len(requests))
    ]
    store.create(record, branches, ttl, jobs=jobs)
    if refused:
        store.record_results(record.run_id, list(refused))
    for canvas in _chunks(app, store.signer, record.spec, jobs, record.priority):
        canvas.apply_async()
    return sum(len(job) for job in jobs)


def resubmit_missing(
    app: Celery, store: RunStore, run_id: str, *, skip_at_work: bool = False, left: Unfinished | None = None
) -> int:
    """Send again the work of every branch that has no result yet: Redis can lose a task
    (a worker killed between taking it and noting it as taken, kombu #7950). A task that
    was only late finds its branches done when it runs, or waits for the delivery at work
    on them. With `skip_at_work`, units a live delivery works on are left to it. `left`:
    what the caller has just read of the run's unfinished work (else it is read here).
    Returns the branches resent."""
    record = store.record(run_id)
    if record.state.final:
        return 0
    left = left or unfinished(store, run_id)
    resent = 0
    attempt = int(time.time())
    for number, levels in sorted(left.units.items()):
        if skip_at_work and number in left.at_work:
            continue
        first = left.first_missing[number]
        lower = [left.results[r.refname].to_json() for level in levels[:first] for r in level]
        links = level_links(
            app, store.signer, record.spec, number, levels, first, lower, record.priority, f".again{attempt}"
        )
        (links[0] if len(links) == 1 else chain(*links)).apply_async()
        resent += sum(len(level) for level in levels[first:])
    if resent:
        store.event(run_id, {"type": "resubmitted", "branches": resent})
    return resent


def wait(
    app: Celery,
    store: RunStore,
    run_id: str,
    *,
    on_progress: Progress | None = None,
    timeout: float | None = None,
    stall_after: float | None = None,
    settings: Settings | None = None,
) -> RunReport:
    """Follow the run's events until its report is written; `on_progress` sees each
    branch's final status.
    After `stall_after` seconds without progress while no task works on the run, work
    Redis lost is sent again (a dead worker's tasks come back by themselves, sooner)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    after = "0"
    last_progress = time.monotonic()
    while True:
        for event_id, event in store.events(run_id, after, block_ms=500):
            after = event_id
            last_progress = time.monotonic()
            if event.get("type") == "branch" and on_progress is not None:
                on_progress(str(event["branch"]), Status(event["status"]))
        if stall_after is not None and time.monotonic() - last_progress > stall_after:
            _unstall(app, store, run_id, stall_after, settings)
            last_progress = time.monotonic()
        if store.state(run_id).final:
            found = store.report(run_id)
            if found is not None:
                return from_record(found)
        if deadline is not None and time.monotonic() > deadline:
            raise RunTimeout(f"run {run_id} did not finish within {timeout:.0f} s (it goes on: palign status {run_id})")


def _unstall(app: Celery, store: RunStore, run_id: str, stalled_for: float, settings: Settings | None) -> None:
    """No progress for a while: a task at work (a long check) is progress enough; with
    none at work and a worker to take it, send again what has no result. A run with
    every result recorded but no report (its finisher died) is finished here."""
    if store.state(run_id).final:
        return
    left = unfinished(store, run_id)
    if left.at_work:
        return
    if not left.units and settings is not None:
        log.warning("run %s: every branch has its result but the run was not finished; finishing it", run_id)
        finish_run(store, run_id, settings, f"producer {socket.gethostname()}:{os.getpid()}")
        return
    if not store.live_workers():
        log.warning("run %s: no live worker has served it for %.0f s; its tasks wait in Redis", run_id, stalled_for)
        return
    resent = resubmit_missing(app, store, run_id, skip_at_work=True, left=left)
    if resent:
        log.warning("run %s: no progress for %.0f s; sent %d branches again", run_id, stalled_for, resent)
