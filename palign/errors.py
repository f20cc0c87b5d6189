"""palign's one exception tree, and the exit code each error maps to.

    PalignError                      base of everything palign raises on purpose
    ├── InputError            (2)    the user asked for something that cannot be done
    │   ├── RepositoryNotFound       REPO is not a repository, does not exist or refuses us
    │   ├── TransportRefused         REPO uses a transport outside the allow-list
    │   ├── UnknownTarget            an --onto ref does not exist
    │   ├── NoBranchMatched          the --branch globs (or the default selection) select nothing
    │   ├── UnknownRun               a run id with no refs in REPO or no record in the broker
    │   └── UnrelatedHistories       two commits with no common history cannot be merged
    └── InfrastructureError   (3)    git, the network, the broker, the disk or a worker failed
        ├── GitCommandError          a git command exited non-zero unexpectedly
        ├── RepositoryUnreachable    REPO could not be reached (network, DNS, a refused connection)
        ├── BrokerUnavailable        Redis (the broker and run store) failed or cannot be reached
        ├── MalformedRecord          a record read from the broker or a task message is not valid
        └── RunTimeout               a distributed run did not end within the wait asked for

Library errors are translated into these where the library is used: git subprocesses in
`palign.git`, Redis in `palign.distributed.store`, Celery in `palign.distributed.client`.
The CLI maps them to exit codes in one place (`exit_code_for`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

from palign.redact import redact_text

Params = ParamSpec("Params")
Returned = TypeVar("Returned")


class ExitCode(IntEnum):
    OK = 0
    BRANCHES_NOT_ALIGNED = 1
    BAD_INPUT = 2
    INFRASTRUCTURE = 3


class PalignError(Exception):
    """Base of every error palign raises on purpose."""

    exit_code: ExitCode = ExitCode.INFRASTRUCTURE


class InputError(PalignError):
    exit_code = ExitCode.BAD_INPUT


class RepositoryNotFound(InputError):
    pass


class TransportRefused(InputError):
    pass


class UnknownTarget(InputError):
    pass


class NoBranchMatched(InputError):
    pass


class UnknownRun(InputError):
    pass


class UnrelatedHistories(InputError):
    pass


class InfrastructureError(PalignError):
    exit_code = ExitCode.INFRASTRUCTURE


class GitCommandError(InfrastructureError):
    def __init__(self, command: str, status: int, stderr: str) -> None:
        stderr = redact_text(stderr)  # git quotes URLs; a message may end up in a report or a log
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"git {command} failed ({status}): {detail}")
        self.command = command
        self.status = status
        self.stderr = stderr

    @property
    def last_line(self) -> str:
        lines = [line.strip() for line in self.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit {self.status}"


class RepositoryUnreachable(InfrastructureError):
    pass


class BrokerUnavailable(InfrastructureError):
    pass


class MalformedRecord(InfrastructureError):
    pass


class RunTimeout(InfrastructureError):
    pass


def translated(
    library_errors: type[BaseException] | tuple[type[BaseException], ...], into: type[PalignError], what: str
) -> Callable[[Callable[Params, Returned]], Callable[Params, Returned]]:
    """A decorator: a library's errors raised by the function become `into`, saying `what`
    failed (the boundary of one outside system)."""

    def decorate(function: Callable[Params, Returned]) -> Callable[Params, Returned]:
        @functools.wraps(function)
        def call(*args: Params.args, **kwargs: Params.kwargs) -> Returned:
            try:
                return function(*args, **kwargs)
            except library_errors as error:
                raise into(f"{what}: {type(error).__name__}: {error}") from error

        return call

    return decorate


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, PalignError):
        return error.exit_code
    return ExitCode.INFRASTRUCTURE
