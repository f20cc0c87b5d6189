"""The end of a distributed run: its report (every planned branch in exactly one final
state) and, when the run asked for it, its apply. Runs once, in the worker that records
the run's last result or closes its last chunk, whichever comes first."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from palign import refs
from palign.distributed.store import RunStore
from palign.model import BranchResult, Status, stopped_result, unaligned
from palign.records import QueuedBranch, RunRecord, RunState
from palign.report import RunReport, to_record
from palign.settings import Settings
from palign.transport import mirror_of


def finish_run(store: RunStore, run_id: str, settings: Settings) -> None:
    """Write the run's report and, when asked, apply it; exactly one caller does (a
    finisher that fails gives its claim back)."""
    if not store.claim_finish(run_id):
        return
    try:
        record = store.record(run_id)
        report = report_of(store, record)
        if record.apply and not report.cancelled and report.successful:
            try:
                mirror = mirror_of(record.repo, settings)
                mirror.sync()
                report.note_applied(refs.apply(mirror, run_id))
            except Exception as error:  # noqa: BLE001  (the report says why nothing moved)
                store.note_apply_error(run_id, str(error))
        report.total_time_seconds = time.time() - record.created_at
        state = RunState.CANCELLED if report.cancelled else RunState.FINISHED
        store.finish(run_id, to_record(report), state)
    except BaseException:
        store.release_finish(run_id)
        raise


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
