"""The commands of distributed mode: worker, status, report, cancel, resume, flower."""

from __future__ import annotations

import json
from pathlib import Path

import click

from palign import service
from palign.cli import output
from palign.cli.options import BROKER, CONTEXT, broker_settings
from palign.report import to_json, to_markdown
from palign.settings import QUEUES, Settings


@click.command(context_settings=CONTEXT)
@BROKER
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="This worker's palign.toml: its [validate] checks are the only ones it runs "
    "(default: $PALIGN_WORKER_CONFIG; none: runs that name checks end in error).",
)
@click.option(
    "--allow-repo",
    "allowed_repos",
    multiple=True,
    metavar="PATTERN",
    help="Serve repositories whose URL matches this glob, e.g. 'https://github.com/org/*'; a path glob "
    "allows repositories on this machine (repeatable; default: $PALIGN_ALLOWED_REPOS, comma-separated).",
)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPUs).")
@click.option("--autoscale", metavar="MAX,MIN", default=None, help="Grow to MAX processes under load, shrink to MIN.")
@click.option("--queues", "-Q", default=",".join(QUEUES), show_default=True, help="Queues to serve, comma-separated.")
@click.option("--hostname", "-n", default=None, help="Node name (default: palign@HOST).")
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
def worker(
    broker: str | None,
    config: Path | None,
    allowed_repos: tuple[str, ...],
    concurrency: int | None,
    autoscale: str | None,
    queues: str,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Serve palign runs: a Celery worker with palign's settings (late acks, one task at a
    time per process, task events on). Start one on every machine that reaches REPO and
    the broker; each keeps its own mirror cache in $PALIGN_CACHE_DIR.

    A worker runs only what its own configuration allows: task messages must be sealed
    with the signing key it shares with producers (PALIGN_SIGNING_KEY_FILE), name a
    repository it serves (--allow-repo) and checks of its own --config. Credentials for
    REPO come from PALIGN_GIT_CREDENTIALS_FILE or its git configuration, never a message.

    `celery -A palign.distributed.app worker` starts the same worker.
    """
    from palign.distributed.client import WorkerOptions

    options = WorkerOptions(
        concurrency=concurrency, autoscale=autoscale, queues=queues, hostname=hostname, loglevel=loglevel
    )
    options.argv()  # refuses bad values before the broker is touched
    settings = Settings.load(broker_url=broker, distributed=True, allowed_repos=allowed_repos, worker_config=config)
    service.start_worker(settings, options)


@click.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
def status(run_id: str, broker: str | None, as_json: bool) -> None:
    """State and progress of a distributed run."""
    output.run_status(service.status(run_id, broker_settings(broker)), as_json)


@click.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER
@click.option(
    "--format", "fmt", type=click.Choice(["json", "md"]), default="md", show_default=True, help="Output format."
)
def report(run_id: str, broker: str | None, fmt: str) -> None:
    """Print the report of a finished distributed run (report.json or report.md)."""
    found = service.report(run_id, broker_settings(broker))
    click.echo(json.dumps(to_json(found), indent=2) if fmt == "json" else to_markdown(found))


@click.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER
def cancel(run_id: str, broker: str | None) -> None:
    """Cancel a distributed run: branches not yet aligned are left alone and reported
    `cancelled`; a branch being aligned finishes (nothing is half-written)."""
    state = service.cancel(run_id, broker_settings(broker))
    if state.final:
        click.echo(f"run {run_id} had already ended ({state.value})")
    else:
        click.echo(f"run {run_id}: cancelling")


@click.command(context_settings=CONTEXT)
@click.argument("run_id")
@BROKER
def resume(run_id: str, broker: str | None) -> None:
    """Send again the work of a distributed run's branches that have no result yet.

    Redis can lose a task when a worker is killed at the instant it takes one; a waiting
    `palign run --broker` does this by itself after a while without progress. A branch
    whose task was only late is not aligned twice."""
    resent = service.resume(run_id, broker_settings(broker))
    click.echo(
        f"run {run_id}: {output.plural(resent, 'branch')} sent again" if resent else f"run {run_id}: nothing to resend"
    )


@click.command(context_settings=CONTEXT)
@BROKER
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option(
    "--basic-auth",
    metavar="USER:PASSWORD",
    default=None,
    help="Require this login (API and pages). Visible to every user in process listings: prefer "
    "--basic-auth-file, or $FLOWER_BASIC_AUTH.",
)
@click.option(
    "--basic-auth-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A file holding USER:PASSWORD (a mounted secret, say).",
)
def flower(broker: str | None, address: str, port: int, basic_auth: str | None, basic_auth_file: Path | None) -> None:
    """Flower, the Celery dashboard, for palign's workers: each task shows as
    `palign.align[RUN_ID] branch, ...`. Listens on 127.0.0.1 unless told otherwise.
    Flower can send tasks; workers refuse every message that is not sealed with their key."""
    login = basic_auth_file.read_text(encoding="utf-8").strip() if basic_auth_file is not None else basic_auth
    service.start_flower(broker_settings(broker), address=address, port=port, basic_auth=login)
