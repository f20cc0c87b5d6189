"""The end of a distributed run: its report (every planned branch in exactly one final
state) and, when the run asked for it, its apply. Runs once, in the worker that records
the run's last result or closes its last chunk, whichever comes first."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from palign import refs
from palign.distributed.store import RunStore
from palign.model import AlignRequest, BranchResult, Status, stopped_result, unaligned
from palign.records import QueuedBranch, RunRecord, RunState
from palign.report import RunReport, to_record
from palign.settings import Settings
from palign.transport import mirror_of


def finish_run(store: RunStore, run_id: str, settings: Settings, holder: str) -> None:
    """Write the run's report and, when asked, apply it; one caller at a time does, and
    only once (a finisher that fails or dies leaves it to the next caller)."""
    with store.finish_lease(run_id, holder) as lease:
        if lease.acquire(0) or store.state(run_id).final:
            return  # another caller is finishing it, or has
        _finish(store, run_id, settings)


def _finish(store: RunStore, run_id: str, settings: Settings) -> None:
    record = store.record(run_id)
    report = report_of(store, record)
    if record.apply and not report.cancelled and report.successful:
        try:
            mirror = mirror_of(record.repo, settings)
            mirror.sync()
            # Only what the report says is aligned: a staged ref no result names stays.
            aligned = {r.branch_name: r.new_sha for r in report.successful if r.new_sha}
            report.note_applied(refs.apply(mirror, run_id, aligned))
        except Exception as error:  # noqa: BLE001  (the report says why nothing moved)
            store.note_apply_error(run_id, str(error))
    report.total_time_seconds = time.time() - record.created_at
    state = RunState.CANCELLED if report.cancelled else RunState.FINISHED
    store.finish(run_id, to_record(report), state)


def report_of(store: RunStore, record: RunRecord) -> RunReport:
    """The report of a run from its record and results; a branch without a result is
    `cancelled`, `skipped` (the circuit breaker), or lost (`error`)."""
    branches = store.branches(record.run_id)
    results = store.results(record.run_id)
    stopped = (
        Status.CANCELLED if record.cancel_requested else Status.SKIPPED if record.circuit_breaker_triggered else None
    )
    ordered = sorted(branches.values(), key=lambda b: b.order)
    return RunReport(
        run_id=record.run_id,
        repository=record.repository,
        strategy=record.strategy.value,
        targets=dict(record.targets),
        results=[results.get(b.refname) or _unfinished(b, stopped) for b in ordered],
        started_at=datetime.fromtimestamp(record.created_at, tz=timezone.utc),
        total_time_seconds=0.0,
        circuit_breaker_triggered=record.circuit_breaker_triggered,
        cancelled=record.cancel_requested,
        executor="celery",
        planned={b.branch_name: b.plan for b in ordered if b.plan is not None},
    )


def _unfinished(branch: QueuedBranch, stopped: Status | None) -> BranchResult:
    if stopped is not None:
        return stopped_result(branch.refname, branch.target, branch.old_sha, stopped)
    message = "its task was lost: a worker died more often than the task may be retried"
    return unaligned(branch.refname, branch.target, branch.old_sha, Status.ERROR, "task_lost", message)


@dataclass(frozen=True)
class Unfinished:
    """The units of a run with branches still without a result, and those of them that a
    live task delivery is working on now (their lease is held)."""

    units: dict[int, list[list[AlignRequest]]]
    first_missing: dict[int, int]  # unit -> its first level with a branch without result
    at_work: set[int]
    results: dict[str, BranchResult]  # of the whole run, as read


def unfinished(store: RunStore, run_id: str) -> Unfinished:
    results = store.results(run_id)
    units: dict[int, list[list[AlignRequest]]] = {}
    first_missing: dict[int, int] = {}
    for number, levels in store.jobs(run_id).items():
        first = next((k for k, level in enumerate(levels) if any(r.refname not in results for r in level)), None)
        if first is not None:
            units[number], first_missing[number] = levels, first
    return Unfinished(units, first_missing, store.leased_units(run_id, sorted(units)), results)
