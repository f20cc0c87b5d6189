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
    help="palign.toml with target rules, declared stacks, plan settings and [validate] checks "
    "(default: ./palign.toml).",
)


BROKER_OPTION = click.option(
    "--broker",
    envvar="PALIGN_BROKER_URL",
    metavar="URL",
    default=None,
    help="Redis URL of the Celery broker, e.g. redis://:password@host:6379/0 "
    "(default: $PALIGN_BROKER_URL, else redis://127.0.0.1:6379/0).",
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
    order = [
        "aligned",
        "up_to_date",
        "merged",
        "conflict",
        "failed_validation",
        "blocked",
        "stale",
        "error",
        "cancelled",
        "skipped",
    ]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    click.echo(
        f"run {report.run_id}: {len(report.results)} branches in {report.total_time_seconds:.2f} s: " + ", ".join(parts)
    )
    for result in report.failed:
        detail = result.error_message or ", ".join(sorted({c.path for c in result.conflicts}))
        click.echo(f"  {result.status.value:10} {result.branch_name}: {detail}")
    if report.cancelled:
        click.echo("cancelled: branches not aligned before the cancel were left alone")
    if report.circuit_breaker_triggered:
        click.echo("circuit breaker triggered: the remaining branches were skipped")
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
    help="Run on Celery workers (`palign worker`) through this Redis broker instead of the local pool.",
)
@click.option("--no-wait", is_flag=True, help="With --broker: print the run id and return; see `palign status`.")
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    default=5,
    show_default=True,
    help="With --broker: 0 runs before 1 ... 9.",
)
@click.option(
    "--circuit-breaker",
    metavar="COUNT,PERCENT",
    default=None,
    help="With --broker: stop the run once COUNT branches failed (conflict or error) and they are at least "
    "PERCENT %% of those finished, e.g. 5,50%%; the rest are skipped.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="With --broker: stop waiting after this long (the run goes on).",
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
    no_wait: bool,
    priority: int,
    circuit_breaker: str | None,
    timeout: float | None,
) -> None:
    """Align branches of REPO (a path or a file/ssh/http(s)/git URL) onto TARGET.

    With several --onto, each branch goes onto the target it forked from most recently
    (rules in palign.toml win). A branch built on another selected branch is aligned onto
    that branch's result, after it (a stack); if that one does not align, it is blocked.

    Backups of every selected branch go to refs/palign/backup/RUN_ID/ before anything
    else, results to refs/palign/staged/RUN_ID/. Exit status: 0 every branch aligned,
    up to date or merged; 1 some did not; 2 bad input; 3 infrastructure failure.

    With --broker the plan runs on Celery workers (`palign worker` on any machine that
    reaches REPO and the broker): each stack a chain, the rest in parallel tasks; the
    report is the same as a local run's.
    """
    if broker is None and (no_wait or circuit_breaker or timeout):
        _fail("--no-wait, --circuit-breaker and --timeout need --broker", ExitCode.BAD_INPUT)
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
        broker=broker,
        priority=priority,
        circuit_breaker=circuit_breaker,
        validate=validate,
        baseline=baseline,
    )
    if broker is not None and no_wait:
        run_id, _store = service.submit(options)
        click.echo(run_id)
        return
    planned, advance, stop = _progress([])
    try:
        if broker is not None:
            report = service.run_distributed(options, on_result=advance, on_planned=planned, timeout=timeout)
        else:
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


@main.command(context_settings=CONTEXT)
@BROKER_OPTION
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPUs).")
@click.option("--autoscale", metavar="MAX,MIN", default=None, help="Grow to MAX processes under load, shrink to MIN.")
@click.option(
    "--queues",
    "-Q",
    default="align,validate,report",
    show_default=True,
    help="Queues to serve, comma-separated.",
)
@click.option("--hostname", "-n", default=None, help="Node name (default: palign@HOST).")
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
def worker(
    broker: str | None,
    concurrency: int | None,
    autoscale: str | None,
    queues: str,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Serve palign runs: a Celery worker with palign's settings (late acks, one task at a
    time per process, task events on). Start one on every machine that reaches REPO and
    the broker; each keeps its own mirror cache in $PALIGN_CACHE_DIR.

    `celery -A palign.distributed.app worker` starts the same worker.
    """
    from palign.distributed.settings import QUEUES

    unknown = [q for q in queues.split(",") if q not in QUEUES]
    if unknown or not queues:
        _fail(f"unknown queue {', '.join(unknown) or queues!r} (queues: {', '.join(QUEUES)})", ExitCode.BAD_INPUT)
    if autoscale is not None:
        parts = autoscale.split(",")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts) or int(parts[0]) < int(parts[1]):
            _fail(f"--autoscale takes MAX,MIN with MAX >= MIN >= 1 (got {autoscale!r})", ExitCode.BAD_INPUT)
    if broker:
        os.environ["PALIGN_BROKER_URL"] = broker  # pool processes and the app read it
    from palign.distributed import app as app_module

    app = app_module.configure(broker)
    argv = ["worker", f"--loglevel={loglevel}", "-Q", queues, "-E"]
    argv.append(f"--autoscale={autoscale}" if autoscale else f"--concurrency={concurrency or os.cpu_count() or 1}")
    argv += [f"--hostname={hostname}"] if hostname else ["--hostname=palign@%h"]
    app.worker_main(argv)


@main.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def status(run_id: str, broker: str | None, as_json: bool) -> None:
    """State and progress of a distributed run."""
    import json

    record = service.run_status(run_id, broker)
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
        return
    state = record.get("state")
    if record.get("cancel_requested") and state not in ("cancelled", "finished"):
        state = f"{state} (cancelling)"
    click.echo(f"run {run_id}: {state}; {record.get('done', 0)}/{record.get('total', 0)} branches done")
    click.echo(f"  repository: {record.get('repository')}; strategy: {record.get('strategy')}")
    if record.get("failures"):
        click.echo(f"  failures: {record['failures']}")
    if record.get("circuit_breaker_triggered"):
        click.echo("  circuit breaker triggered")
    if record.get("apply_error"):
        click.echo(f"  apply failed: {record['apply_error']}")


@main.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER_OPTION
@click.option(
    "--format", "fmt", type=click.Choice(["json", "md"]), default="md", show_default=True, help="Output format."
)
def report(run_id: str, broker: str | None, fmt: str) -> None:
    """Print the report of a finished distributed run (report.json or report.md)."""
    import json

    from palign.report import to_json, to_markdown

    found = service.run_report(run_id, broker)
    click.echo(json.dumps(to_json(found), indent=2) if fmt == "json" else to_markdown(found))


@main.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER_OPTION
def cancel(run_id: str, broker: str | None) -> None:
    """Cancel a distributed run: branches not yet aligned are left alone and reported
    `cancelled`; a branch being aligned finishes (nothing is half-written)."""
    state = service.cancel(run_id, broker)
    if state in ("finished", "cancelled"):
        click.echo(f"run {run_id} had already ended ({state})")
    else:
        click.echo(f"run {run_id}: cancelling")


@main.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER_OPTION
def resume(run_id: str, broker: str | None) -> None:
    """Send again the work of a distributed run's branches that have no result yet.

    Redis can lose a task when a worker is killed at the instant it takes one; a waiting
    `palign run --broker` does this by itself after a while without progress. A branch
    whose task was only late is not aligned twice."""
    resent = service.resume(run_id, broker)
    click.echo(f"run {run_id}: {resent} branches sent again" if resent else f"run {run_id}: nothing to resend")


@main.command(context_settings=CONTEXT)
@BROKER_OPTION
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--basic-auth", metavar="USER:PASSWORD", default=None, help="Require this login (API and pages).")
def flower(broker: str | None, address: str, port: int, basic_auth: str | None) -> None:
    """Flower, the Celery dashboard, for palign's workers: each task shows as
    `palign.align[RUN_ID] branch, ...`. Listens on 127.0.0.1 unless told otherwise."""
    if broker:
        os.environ["PALIGN_BROKER_URL"] = broker
    from palign.distributed import app as app_module

    app = app_module.configure(broker)
    argv = ["flower", f"--address={address}", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    app.start(argv)


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
