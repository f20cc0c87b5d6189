"""`palign` command line: thin over `palign.service`; errors become exit codes here only."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from palign import __version__, service
from palign.errors import ExitCode, PalignError, exit_code_for
from palign.model import Strategy
from palign.report import RunReport, write

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


ONTO_OPTION = click.option(
    "--onto",
    "targets",
    multiple=True,
    required=True,
    metavar="TARGET",
    help="Branch (or ref) to align onto, e.g. main; repeatable (main, release/2.x ...).",
)
BRANCH_OPTION = click.option(
    "--branch",
    "branch_globs",
    multiple=True,
    metavar="GLOB",
    help="Only branches whose name matches (repeatable; refs/... globs match full ref names). "
    "Default: every branch but the targets.",
)
STRATEGY_OPTION = click.option(
    "--strategy",
    type=click.Choice([s.value for s in Strategy]),
    default="rebase",
    show_default=True,
    help="rebase = `git rebase TARGET`; merge = `git merge TARGET`; auto = rebase, or the merge "
    "where only the merge is clean.",
)
WORKERS_OPTION = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Worker processes (default: CPU count).",
    callback=lambda _ctx, _param, value: value or os.cpu_count() or 1,
)
CONFIG_OPTION = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="palign.toml with target rules, declared stacks and plan settings (default: ./palign.toml).",
)


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"palign: error: {message}", err=True)
    sys.exit(int(code))


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="palign")
@click.option("-v", "--verbose", is_flag=True, help="Log what palign does, with timings, on stderr.")
def main(verbose: bool) -> None:
    """Keep many git branches aligned with the branches they target.

    palign rebases (or merges) every selected branch onto its target in memory, in
    parallel, checks each result against git's own rules, and stages the results under
    refs/palign/ in the repository. Branches move only with --apply (or `palign apply`),
    atomically and with a lease; `palign rollback` undoes an apply.

    Start with `palign demo`.
    """
    if verbose:
        logging.basicConfig(level=logging.INFO, format="palign: %(message)s", stream=sys.stderr)


def _progress(total_hint: list[int]) -> tuple[Callable[[int], None], Callable[[Any], None], Callable[[], None]]:
    """Progress on stderr when it is a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return (lambda n: None), (lambda r: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    # No refresh thread: the worker pool forks, which is only safe with a single thread.
    progress = Progress(
        "[bold]aligning",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        auto_refresh=False,
        console=Console(stderr=True),
    )
    task: list[Any] = []

    def planned(n: int) -> None:
        progress.start()
        task.append(progress.add_task("align", total=n))

    def advance(_: Any) -> None:
        if task:
            progress.advance(task[0])
            progress.refresh()

    return planned, advance, progress.stop


def print_summary(report: RunReport, json_path: Path | None) -> None:
    counts = report.counts()
    order = ["aligned", "up_to_date", "merged", "conflict", "stale", "error"]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    click.echo(
        f"run {report.run_id}: {len(report.results)} branches in {report.total_time_seconds:.2f} s: " + ", ".join(parts)
    )
    for result in report.failed:
        detail = result.error_message or ", ".join(sorted({c.path for c in result.conflicts}))
        click.echo(f"  {result.status.value:10} {result.branch_name}: {detail}")
    if report.applied:
        click.echo(f"applied; undo with: palign rollback {report.repository} {report.run_id}")
    elif report.successful:
        click.echo(
            f"staged under refs/palign/staged/{report.run_id}/; publish with: "
            f"palign apply {report.repository} {report.run_id}"
        )
    if json_path is not None:
        click.echo(f"report: {json_path}")


@main.command(context_settings=CONTEXT)
@click.argument("repo")
@ONTO_OPTION
@BRANCH_OPTION
@STRATEGY_OPTION
@WORKERS_OPTION
@click.option("--apply", "apply_", is_flag=True, help="Move the aligned branches in REPO (atomic, with leases).")
@CONFIG_OPTION
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
) -> None:
    """Align branches of REPO (a path or a file/ssh/http(s)/git URL) onto TARGET.

    With several --onto, each branch goes onto the target it forked from most recently
    (rules in palign.toml win). A branch built on another selected branch is aligned onto
    that branch's result, after it (a stack); if that one does not align, it is blocked.

    Backups of every selected branch go to refs/palign/backup/RUN_ID/ before anything
    else, results to refs/palign/staged/RUN_ID/. Exit status: 0 every branch aligned,
    up to date or merged; 1 some did not; 2 bad input; 3 infrastructure failure.
    """
    if report_dir.exists() and not os.access(report_dir, os.W_OK):
        _fail(f"report folder is not writable: {report_dir}", ExitCode.BAD_INPUT)
    options = service.RunOptions(
        repo=repo,
        targets=targets,
        branch_globs=branch_globs,
        strategy=Strategy(strategy),
        workers=workers,
        apply=apply_,
        config=config,
        plan_file=plan_file,
    )
    planned, advance, stop = _progress([])
    try:
        report = service.run(options, on_result=advance, on_planned=planned)
    finally:
        stop()
    json_path, _ = write(report, report_dir)
    print_summary(report, json_path)
    sys.exit(int(ExitCode.OK if not report.failed else ExitCode.BRANCHES_NOT_ALIGNED))


@main.command(context_settings=CONTEXT)
@click.argument("repo")
@ONTO_OPTION
@BRANCH_OPTION
@STRATEGY_OPTION
@WORKERS_OPTION
@click.option("--no-forecast", is_flag=True, help="Skip the dry run that predicts each branch's outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print a plan file (JSON) instead of the table.")
@CONFIG_OPTION
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
    """Show what a run would do, writing nothing: each branch's target (and confidence),
    category, ahead/behind counts, the branch it is stacked on, its cluster of branches
    touching the same files, and a forecast from an in-memory dry run.

    `palign plan --json > plan.json` writes a plan file that `palign run --plan` executes.
    """
    from palign.planner.planfile import write_plan

    options = service.RunOptions(
        repo=repo,
        targets=targets,
        branch_globs=branch_globs,
        strategy=Strategy(strategy),
        workers=workers,
        config=config,
    )
    prepared = service.plan(options, forecast=not no_forecast)
    if as_json:
        click.echo(write_plan(prepared.plan), nl=False)
        return
    rows = [("branch", "target", "conf", "category", "ahead", "behind", "stacked on", "cluster", "forecast")]
    for b in sorted(prepared.plan.branches, key=lambda b: (b.assigned_target, b.cluster_id, b.branch_name)):
        rows.append(
            (
                b.branch_name,
                b.assigned_target,
                f"{b.confidence:.2f}",
                b.category.value,
                str(b.ahead),
                str(b.behind),
                b.parent or "-",
                b.cluster_id,
                b.forecast or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    units = prepared.plan.units
    stacks = sum(1 for unit in units if len(unit.levels) > 1)
    click.echo(f"{len(prepared.plan.branches)} branches in {len(units)} units of work ({stacks} stacks)")


@main.command(context_settings=CONTEXT)
@click.argument("repo")
@ONTO_OPTION
@BRANCH_OPTION
@WORKERS_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the groups and pairs as JSON.")
@CONFIG_OPTION
def conflicts(
    repo: str,
    targets: Sequence[str],
    branch_globs: Sequence[str],
    workers: int,
    as_json: bool,
    config: Path | None,
) -> None:
    """Which branches conflict with each other: every pair of branches of one target that
    change a common file is merged in memory (as `git merge` would), in parallel. Prints
    the groups of branches linked by conflicts, then each conflicting pair and its files.
    """
    import json

    options = service.RunOptions(repo=repo, targets=targets, branch_globs=branch_globs, workers=workers, config=config)
    found = service.conflicts(options)
    if as_json:
        data = {
            "target": found.target,
            "branches": found.branches,
            "pairs_checked": found.checked,
            "groups": found.groups,
            "conflicts": found.pairs,
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"{len(found.branches)} branches onto {found.target}: {found.checked} pairs share files, "
        f"{len(found.pairs)} conflict"
    )
    for number, group in enumerate(found.groups, 1):
        click.echo(f"group {number}: {', '.join(group)}")
    for pair in found.pairs:
        click.echo(f"  {pair['left']} x {pair['right']}: {', '.join(pair['paths'])}")


@main.command(context_settings=CONTEXT)
@click.argument("repo")
@click.argument("run_id")
def apply(repo: str, run_id: str) -> None:
    """Publish what RUN_ID staged: move its branches in REPO in one atomic transaction.

    Each branch moves only if it still has the sha the run started from; one that moved
    meanwhile is left alone and reported stale (exit 1).
    """
    outcome = service.apply(repo, run_id)
    for name in outcome.applied:
        click.echo(f"applied   {name}")
    for name in outcome.already:
        click.echo(f"unchanged {name} (already applied)")
    for name in outcome.stale:
        click.echo(f"stale     {name} (moved since the run; left alone)")
    for name, reason in outcome.refused.items():
        click.echo(f"refused   {name} ({reason})")
    click.echo(f"{len(outcome.applied)} applied, {len(outcome.stale)} stale, {len(outcome.refused)} refused")
    sys.exit(int(ExitCode.OK if not outcome.stale and not outcome.refused else ExitCode.BRANCHES_NOT_ALIGNED))


@main.command(context_settings=CONTEXT)
@click.argument("repo")
@click.argument("run_id")
def rollback(repo: str, run_id: str) -> None:
    """Put every branch RUN_ID applied back to its backup (each with a lease)."""
    outcome = service.rollback(repo, run_id)
    for name in outcome.restored:
        click.echo(f"restored {name}")
    for name in outcome.stale:
        click.echo(f"stale    {name} (moved since the apply; left alone)")
    click.echo(f"{len(outcome.restored)} restored, {len(outcome.stale)} left alone")
    sys.exit(int(ExitCode.OK if not outcome.stale else ExitCode.BRANCHES_NOT_ALIGNED))


@main.command(context_settings=CONTEXT)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build the sample repository here (default: a new temporary folder).",
)
@WORKERS_OPTION
def demo(directory: Path | None, workers: int) -> None:
    """Build a sample repository (about 40 branches) and align it, with no services."""
    from palign.demo import run_demo

    run_demo(directory, workers=workers)


def entry(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: the one place errors turn into exit codes."""
    try:
        main.main(args=list(argv) if argv is not None else None, prog_name="palign", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", ExitCode.INFRASTRUCTURE)
    except click.UsageError as error:
        _fail(error.format_message().replace("\n", " "), ExitCode.BAD_INPUT)
    except PalignError as error:
        _fail(str(error), exit_code_for(error))
    except KeyboardInterrupt:
        _fail("interrupted", ExitCode.INFRASTRUCTURE)
    except OSError as error:
        _fail(f"{type(error).__name__}: {error}", ExitCode.INFRASTRUCTURE)
    except Exception as error:  # a bug: one line, the traceback only on request
        if os.environ.get("PALIGN_DEBUG"):
            raise
        _fail(
            f"internal error: {type(error).__name__}: {error} (set PALIGN_DEBUG=1 for a traceback)",
            ExitCode.INFRASTRUCTURE,
        )
    sys.exit(0)
