"""The one service layer the CLI (and later the API) call: plan, run, submit, apply,
rollback, and the distributed runs' status, report, cancel and resume.

A local run: prepare (every input check, the mirror, the plan), align in memory on the
local pool, write the backups and the staged results to REPO in one push, apply them if
asked, report. Nothing is written to REPO or to the report folder before every input
check has passed. A distributed run prepares the same way, writes the backups, and hands
the plan to `palign.distributed.client`, loaded only by the commands that need Celery.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from palign import refs
from palign.conflicts import ConflictMap, find_conflicts
from palign.engine.scratch import ScratchStore
from palign.executor.local import run_local
from palign.executor.unit import adopt_changes
from palign.folders import remove_orphans
from palign.model import ApplyOutcome, BranchResult, Progress, PruneOutcome, RollbackOutcome, Status, Steps
from palign.prepare import DEFAULT_PRIORITY, Prepared, RunOptions, prepare, run_identity
from palign.records import RunRecord, RunSpec, RunState
from palign.report import RunReport, now
from palign.settings import Settings
from palign.transport import Mirror, commit_settings, mirror_of, prune_mirrors
from palign.validation.cache import LocalCheckCache
from palign.validation.gate import Checking
from palign.validation.runner import Isolation

if TYPE_CHECKING:
    from palign.distributed.client import DistributedRuns, WorkerOptions

__all__ = [
    "DEFAULT_PRIORITY",
    "ConflictMap",
    "Prepared",
    "RunOptions",
    "apply",
    "cancel",
    "conflicts",
    "plan",
    "report",
    "resume",
    "rollback",
    "run",
    "run_distributed",
    "start_flower",
    "start_worker",
    "status",
    "submit",
]

log = logging.getLogger("palign")


@contextmanager
def _phase(name: str, run_id: str = "-") -> Iterator[None]:
    started = time.perf_counter()
    yield
    log.info("run %s: %s took %.3f s", run_id, name, time.perf_counter() - started)


def new_run_id(at: datetime) -> str:
    # The suffix starts with the millisecond (3 hex digits): runs of the same second still
    # sort in the order they started, which `prune --keep` relies on.
    return f"{at.strftime('%Y%m%d-%H%M%S')}-{at.microsecond // 1000:03x}{secrets.token_hex(2)[:3]}"


def plan(options: RunOptions, settings: Settings, *, forecast: bool = True, on_step: Steps | None = None) -> Prepared:
    """The plan of a run, with each branch's forecast from an in-memory dry run of the real
    alignment (nothing is written to REPO; the dry run's objects live in a scratch store).
    `on_step` hears each long step start and advance: the mirror, the facts, the forecast."""
    prepared = prepare(options, settings, diff_ahead=forecast, on_step=on_step).as_forecast()
    if forecast and prepared.requests:
        git_config = commit_settings(prepared.mirror.location)
        label = f"plan-{secrets.token_hex(3)}"
        counted = _counted(on_step, "forecasting", len(prepared.requests))
        with ScratchStore(prepared.mirror.path, label, root=settings.scratch_dir, git_config=git_config) as scratch:
            results = _align_all(options, settings, prepared, scratch.path, git_config, counted)
        by_name = {r.branch_name: r for r in results}
        prepared.plan = replace(
            prepared.plan,
            branches=[replace(b, forecast=by_name[b.branch_name].status.value) for b in prepared.plan.branches],
        )
    return prepared


def _counted(on_step: Steps | None, step: str, total: int) -> Progress | None:
    """Branch results as the advance of `step` (out of `total` branches)."""
    if on_step is None:
        return None
    done = 0
    on_step(step, done, total)

    def advance(_branch: str, _status: Status) -> None:
        nonlocal done
        done += 1
        on_step(step, done, total)

    return advance


def _align_all(
    options: RunOptions,
    settings: Settings,
    prepared: Prepared,
    store: Path,
    git_config: dict[str, str],
    on_progress: Progress | None,
) -> list[BranchResult]:
    changes = prepared.changes_ready()
    if changes is not None:
        adopt_changes(str(store), changes)  # forked workers inherit it
    checking = Checking(prepared.checks, Isolation.of(settings), options.baseline) if prepared.checks else None
    return run_local(
        str(store),
        run_identity(git_config, settings),
        prepared.units,
        workers=options.workers,
        on_result=(lambda r: on_progress(r.branch_name, r.status)) if on_progress else None,
        checking=checking,
        check_cache=LocalCheckCache(settings.cache_dir / "checks"),
    )


def run(
    options: RunOptions,
    settings: Settings,
    *,
    on_progress: Progress | None = None,
    on_planned: Callable[[int], None] | None = None,
    on_step: Steps | None = None,
) -> RunReport:
    """A run on this machine's process pool, to its report (and its apply when asked)."""
    started_at = now()
    clock = time.perf_counter()
    run_id = new_run_id(started_at)
    with _phase("checking input, syncing the mirror and planning", run_id):
        prepared = prepare(options, settings, diff_ahead=True, on_step=on_step)
    mirror, requests = prepared.mirror, list(prepared.requests.values())
    if on_planned is not None:
        on_planned(len(requests))
    git_config = commit_settings(mirror.location)
    with ScratchStore(mirror.path, run_id, root=settings.scratch_dir, git_config=git_config) as scratch:
        with _phase("aligning", run_id):
            results = _align_all(options, settings, prepared, scratch.path, git_config, on_progress)
        with _phase("pushing backups and staged results", run_id):
            refs.back_up_and_stage(mirror, run_id, requests, results, objects_from=scratch.path)
    report = RunReport(
        run_id=run_id,
        repository=mirror.location.display,
        strategy=options.strategy.value,
        targets=dict(prepared.targets),
        results=results + prepared.refused,
        started_at=started_at,
        total_time_seconds=0.0,
        planned=prepared.plan_info(),
    )
    if options.apply:
        report.note_applied(refs.apply(mirror, run_id))
    report.total_time_seconds = time.perf_counter() - clock
    return report


# --- distributed runs (Celery workers over Redis) ----------------------------------------


def _distributed(settings: Settings) -> DistributedRuns:
    from palign.distributed.client import DistributedRuns  # Celery loads only for these commands

    return DistributedRuns(settings)


def submit(
    options: RunOptions,
    settings: Settings,
    *,
    on_planned: Callable[[int], None] | None = None,
    on_step: Steps | None = None,
) -> tuple[str, DistributedRuns]:
    """Plan a run and enqueue it on the Celery workers; returns its id (and the client).
    The broker is checked first and every input before anything is written; backups of
    every selected branch are in REPO before any task is sent."""
    runs = _distributed(settings)
    runs.check()
    started_at = now()
    run_id = new_run_id(started_at)
    with _phase("checking input, syncing the mirror and planning", run_id):
        prepared = prepare(options, settings, on_step=on_step)
    requests = list(prepared.requests.values())
    if on_planned is not None:
        on_planned(len(requests))
    location = prepared.mirror.location
    git_config = commit_settings(location)
    with _phase("pushing backups", run_id):
        refs.back_up_and_stage(prepared.mirror, run_id, requests)
    spec = RunSpec(
        run_id=run_id,
        repo=location.url,
        identity=run_identity(git_config, settings),
        git_config=git_config,
        checks=tuple(check.ref() for check in prepared.checks),
        baseline=options.baseline,
    )
    record = RunRecord(
        run_id=run_id,
        repo=location.url,
        repository=location.display,
        strategy=options.strategy,
        targets=dict(prepared.targets),
        apply=options.apply,
        priority=options.queue_priority,
        created_at=time.time(),
        spec=spec,
        breaker=options.breaker,
    )
    with _phase("enqueueing", run_id):
        runs.submit(
            record, requests=requests, planned=prepared.plan_info(), units=prepared.units, refused=prepared.refused
        )
    return run_id, runs


def run_distributed(
    options: RunOptions,
    settings: Settings,
    *,
    on_progress: Progress | None = None,
    on_planned: Callable[[int], None] | None = None,
    on_step: Steps | None = None,
) -> RunReport:
    run_id, runs = submit(options, settings, on_planned=on_planned, on_step=on_step)
    with _phase("waiting for the workers", run_id):
        return runs.wait(run_id, on_progress=on_progress, timeout=options.timeout)


def resume(run_id: str, settings: Settings) -> int:
    """Send again the work of a run's branches that have no result (a task Redis lost);
    returns how many branches were resent."""
    return _distributed(settings).resume(run_id)


def status(run_id: str, settings: Settings) -> RunRecord:
    return _distributed(settings).status(run_id)


def report(run_id: str, settings: Settings) -> RunReport:
    return _distributed(settings).report(run_id)


def cancel(run_id: str, settings: Settings) -> RunState:
    """Ask a run to stop: branches not started are dropped, running ones stop before their
    next branch; the report says cancelled. Returns the run's state when asked."""
    return _distributed(settings).cancel(run_id)


def start_worker(settings: Settings, options: WorkerOptions) -> None:
    _distributed(settings).start_worker(options)


def start_flower(settings: Settings, *, address: str, port: int, basic_auth: str | None) -> None:
    _distributed(settings).start_flower(address=address, port=port, basic_auth=basic_auth)


# --- publishing, and what conflicts ------------------------------------------------------


def _synced_mirror(repo: str, run_id: str, settings: Settings) -> Mirror:
    refs.check_run_id(run_id)
    mirror = mirror_of(repo, settings)
    mirror.sync()
    return mirror


def apply(repo: str, run_id: str, settings: Settings) -> ApplyOutcome:
    """Move every branch `run_id` staged, in one atomic transaction with leases."""
    return refs.apply(_synced_mirror(repo, run_id, settings), run_id)


def rollback(repo: str, run_id: str, settings: Settings) -> RollbackOutcome:
    """Put every branch `run_id` applied back to its backup (each with a lease)."""
    return refs.rollback(_synced_mirror(repo, run_id, settings), run_id)


def prune(
    repo: str, settings: Settings, *, older_than: timedelta, keep: int, applied_too: bool, dry_run: bool
) -> PruneOutcome:
    """Remove old runs' refs from REPO (see `refs.prune_runs`), and from this machine's
    cache what has not been used for as long: mirrors, scratch folders, check results."""
    mirror = mirror_of(repo, settings)
    mirror.sync()
    outcome = refs.prune_runs(
        mirror, started_before=now() - older_than, keep=keep, applied_too=applied_too, dry_run=dry_run
    )
    seconds = older_than.total_seconds()
    outcome.mirrors_removed = prune_mirrors(settings.cache_dir, seconds, spare=mirror.path, dry_run=dry_run)
    outcome.scratch_removed = remove_orphans(settings.scratch_dir, older_than=seconds, spare_live=True, dry_run=dry_run)
    outcome.checks_removed = LocalCheckCache(settings.cache_dir / "checks").prune(seconds, dry_run=dry_run)
    return outcome


def conflicts(options: RunOptions, settings: Settings) -> ConflictMap:
    """Which branches of one target conflict with each other (see `palign.conflicts`)."""
    return find_conflicts(options, settings)
