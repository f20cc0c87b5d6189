"""The `palign` command group, and the one place errors turn into exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from palign import __version__
from palign.cli import distributed, local
from palign.cli.options import CONTEXT
from palign.errors import ExitCode, PalignError, exit_code_for
from palign.settings import debug_requested


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


for command in (
    local.run,
    local.plan,
    local.conflicts,
    local.apply,
    local.rollback,
    local.prune,
    local.demo,
    distributed.worker,
    distributed.status,
    distributed.report,
    distributed.cancel,
    distributed.resume,
    distributed.flower,
):
    main.add_command(command)


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"palign: error: {message}", err=True)
    sys.exit(int(code))


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
        if debug_requested():
            raise
        _fail(
            f"internal error: {type(error).__name__}: {error} (set PALIGN_DEBUG=1 for a traceback)",
            ExitCode.INFRASTRUCTURE,
        )
    sys.exit(0)
