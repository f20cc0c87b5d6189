"""The commands that plan, align and publish: run, plan, conflicts, apply, rollback, demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import click

from palign import service
from palign.cli import output
from palign.cli.options import (
    BRANCH,
    CONFIG,
    CONTEXT,
    ONTO,
    ONTO_OR_PLAN,
    STRATEGY,
    WORKERS,
    Age,
    broker_settings,
    local_settings,
)
from palign.demo import run_demo
from palign.errors import ExitCode
from palign.model import Strategy
from palign.planner.planfile import write_plan
from palign.report import check_writable, write


@click.command(context_settings=CONTEXT)
@click.argument("repo")
@ONTO_OR_PLAN
@BRANCH
@STRATEGY
@WORKERS
@click.option("--apply", "apply_", is_flag=True, help="Move the aligned branches in REPO (atomic, with leases).")
@CONFIG
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Execute this plan file (`palign plan --json`, or another tool's categorized branches).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("palign-report"),
    show_default=True,
    help="Where report.json and report.md go.",
)
@click.option(
    "--validate",
    "validate",
    multiple=True,
    metavar="CMD",
    help="A check to run (through the shell) in a clean checkout of every aligned result; repeatable, "
    "in order. A branch whose check fails is `failed_validation`: not staged, never applied. "
    "Replaces palign.toml's [validate].",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="When a check fails on an aligned result, run it on the original commit too: the report tells "
    "'broken by the alignment' from 'already broken'.",
)
@click.option(
    "--broker",
    metavar="URL",
    default=None,
    help="Run on Celery workers (`palign worker`) through this Redis broker instead of the local pool. "
    "A URL with a password is visible to every user in process listings: prefer --distributed.",
)
@click.option(
    "--distributed",
    is_flag=True,
    help="Run on Celery workers through the broker of $PALIGN_BROKER_URL_FILE or $PALIGN_BROKER_URL.",
)
@click.option(
    "--no-wait", is_flag=True, help="With --broker or --distributed: print the run id and return; see `palign status`."
)
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    default=None,
    help=f"With --broker or --distributed: 0 runs before 1 ... 9 (default: {service.DEFAULT_PRIORITY}).",
)
@click.option(
    "--circuit-breaker",
    metavar="COUNT,PERCENT",
    default=None,
    help="With --broker or --distributed: stop the run once COUNT branches failed (conflict or error) and they "
    "are at least PERCENT % of those finished, e.g. 5,50%; the rest are skipped.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="With --broker or --distributed: stop waiting after this long (the run goes on).",
)
def run(
    repo: str,
    targets: Sequence[str],
    branch_globs: Sequence[str],
    strategy: str,
    workers: int,
    apply_: bool,
    config: Path | None,
    plan_file: Path | None,
    report_dir: Path,
    validate: Sequence[str],
    baseline: bool,
    broker: str | None,
    distributed: bool,
    no_wait: bool,
    priority: int | None,
    circuit_breaker: str | None,
    timeout: float | None,
) -> None:
    """Align branches of REPO (a path or a file/ssh/http(s)/git URL) onto TARGET.

    With several --onto, each branch goes onto the target against which its own change is
    smallest (rules in palign.toml win). With --plan and no --onto, the targets are those
    the plan file assigns its branches to. A branch built on another selected branch is
    aligned onto that branch's result, after it (a stack); if that one does not align, it
    is blocked.

    Backups of every selected branch go to refs/palign/backup/RUN_ID/ before anything
    else, results to refs/palign/staged/RUN_ID/. Exit status: 0 every branch aligned,
    up to date or merged; 1 some did not; 2 bad input; 3 infrastructure failure.

    With --broker (or --distributed) the plan runs on Celery workers (`palign worker` on
    any machine that reaches REPO and the broker): each stack a chain, the rest in
    parallel tasks; the report is the same as a local run's.
    """
    options = service.RunOptions(
        repo=repo,
        targets=targets,
        branch_globs=branch_globs,
        strategy=Strategy(strategy),
        workers=workers,
        apply=apply_,
        config=config,
        plan_file=plan_file,
        validate=validate,
        baseline=baseline,
        broker=broker,
        distributed=distributed,
        priority=priority,
        circuit_breaker=circuit_breaker,
        wait=not no_wait,
        timeout=timeout,
    )
    options.check()
    check_writable(report_dir)
    output.warn_about_login(repo)
    settings = broker_settings(broker) if options.on_workers else local_settings()
    if options.on_workers and no_wait:
        run_id, _ = service.submit(options, settings)
        click.echo(run_id)
        return
    progress = output.Progress()
    try:
        if options.on_workers:
            report = service.run_distributed(
                options, settings, on_progress=progress.advance, on_planned=progress.planned, on_step=progress.step
            )
        else:
            report = service.run(
                options, settings, on_progress=progress.advance, on_planned=progress.planned, on_step=progress.step
            )
    finally:
        progress.stop()
    json_path, _ = write(report, report_dir)
    output.run_summary(report, json_path)
    sys.exit(int(ExitCode.OK if not report.failed else ExitCode.BRANCHES_NOT_ALIGNED))


@click.command(context_settings=CONTEXT)
@click.argument("repo")
@ONTO
@BRANCH
@STRATEGY
@WORKERS
@click.option("--no-forecast", is_flag=True, help="Skip the dry run that predicts each branch's outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print a plan file (JSON) instead of the table.")
@CONFIG
def plan(
    repo: str,
    targets: Sequence[str],
    branch_globs: Sequence[str],
    strategy: str,
    workers: int,
    no_forecast: bool,
    as_json: bool,
    config: Path | None,
) -> None:
    """Show what a run would do, writing nothing: each branch's target (its confidence, and
    where it came from: a plan file, palign.toml, REPO's git-machete layout or upstream, the
    branch's stack, inference), category (up_to_date, behind, diverged, merged or orphan),
    whether it is stale (no commit for [plan] stale_days of palign.toml, 90 by default),
    ahead/behind counts, the branch it is stacked on, its cluster of branches touching the
    same files, and a forecast from an in-memory dry run.

    `palign plan --json > plan.json` writes a plan file that `palign run --plan` executes.
    """
    options = service.RunOptions(
        repo=repo,
        targets=targets,
        branch_globs=branch_globs,
        strategy=Strategy(strategy),
        workers=workers,
        config=config,
    )
    progress = output.Progress()
    try:
        prepared = service.plan(options, local_settings(), forecast=not no_forecast, on_step=progress.step)
    finally:
        progress.stop()
    if as_json:
        click.echo(write_plan(prepared.plan), nl=False)
        return
    output.plan_table(prepared.plan)


@click.command(context_settings=CONTEXT)
@click.argument("repo")
@ONTO
@BRANCH
@WORKERS
@click.option(
    "--json", "as_json", is_flag=True, help="Print the pairs, groups and branches conflicting with the target as JSON."
)
@CONFIG
def conflicts(
    repo: str,
    targets: Sequence[str],
    branch_globs: Sequence[str],
    workers: int,
    as_json: bool,
    config: Path | None,
) -> None:
    """Which branches conflict with each other, in memory and in parallel, with git's merge.

    Each branch is first merged into the target by itself; those that conflict with it are
    listed apart, with their files. Then every pair of branches that change a common file is
    merged on top of the target, and reported only for the files the two conflict in
    together (not the files where either conflicts with the target alone). Prints the
    groups of branches linked by such pairs, then each pair and its files.
    """
    options = service.RunOptions(repo=repo, targets=targets, branch_globs=branch_globs, workers=workers, config=config)
    found = service.conflicts(options, local_settings())
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
        return
    output.conflict_map(found)


@click.command(context_settings=CONTEXT)
@click.argument("repo")
@click.argument("run_id")
def apply(repo: str, run_id: str) -> None:
    """Publish what RUN_ID staged: move its branches in REPO in one atomic transaction.

    Each branch moves only if it still has the sha the run started from; one that moved
    meanwhile is left alone and reported stale (exit 1).
    """
    outcome = service.apply(repo, run_id, local_settings())
    output.apply_outcome(outcome)
    sys.exit(int(ExitCode.OK if not outcome.stale and not outcome.refused else ExitCode.BRANCHES_NOT_ALIGNED))


@click.command(context_settings=CONTEXT)
@click.argument("repo")
@click.argument("run_id")
def rollback(repo: str, run_id: str) -> None:
    """Put every branch RUN_ID applied back to its backup (each with a lease)."""
    outcome = service.rollback(repo, run_id, local_settings())
    output.rollback_outcome(outcome)
    sys.exit(int(ExitCode.OK if not outcome.stale else ExitCode.BRANCHES_NOT_ALIGNED))


@click.command(context_settings=CONTEXT)
@click.argument("repo")
@click.option(
    "--older-than",
    type=Age(),
    default="30d",
    show_default=True,
    help="Remove runs that started longer ago than this (30d, 12h, 90m, 2w; 0: any age).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    metavar="N",
    help="Always keep the N newest runs, however old.",
)
@click.option(
    "--include-applied",
    is_flag=True,
    help="Also remove the backups of runs that were applied (then they can no longer be rolled back).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def prune(repo: str, older_than: timedelta, keep: int, include_applied: bool, dry_run: bool) -> None:
    """Remove old runs' refs under refs/palign/ in REPO, and this machine's cache that has
    not been used for as long (mirrors, scratch folders, check results).

    A run that was applied keeps its backups and applied markers, so `palign rollback`
    still works, unless --include-applied. Each ref is deleted with a lease on the sha it
    was read with; folders under refs/palign/ no palign run id names are left alone.
    """
    outcome = service.prune(
        repo, local_settings(), older_than=older_than, keep=keep, applied_too=include_applied, dry_run=dry_run
    )
    output.prune_outcome(outcome, dry_run=dry_run)


@click.command(context_settings=CONTEXT)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build the sample repository here (default: a new temporary folder).",
)
@WORKERS
def demo(directory: Path | None, workers: int) -> None:
    """Build a sample repository (about 40 branches) and align it, with no services."""
    shown = run_demo(directory, workers=workers, settings=local_settings())
    click.echo(
        f"sample repository: {shown.repository} ({output.plural(sum(shown.kinds.values()), 'branch')}: "
        + ", ".join(f"{v} {k}" for k, v in shown.kinds.items())
        + ")"
    )
    output.run_summary(shown.report, shown.report_file)
    output.demo_next_steps(shown.repository, shown.report.run_id)
