"""palign's one exception tree, and the exit code each error maps to.

    PalignError                      base of everything palign raises on purpose
    ├── InputError            (2)    the user asked for something that cannot be done
    │   ├── RepositoryNotFound       REPO is not a repository, or cannot be reached
    │   ├── TransportRefused         REPO uses a transport outside the allow-list
    │   ├── UnknownTarget            an --onto ref does not exist
    │   ├── NoBranchMatched          the --branch globs select nothing
    │   └── UnknownRun               a run id with no refs in REPO
    └── InfrastructureError   (3)    git, the disk or a worker failed under us
        └── GitCommandError          a git command exited non-zero unexpectedly

Library errors (GitPython, pygit2, OSError) are translated into these at the module
that owns the library; the CLI maps them to exit codes in one place (`exit_code_for`).
"""

from __future__ import annotations

from enum import IntEnum


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


class InfrastructureError(PalignError):
    exit_code = ExitCode.INFRASTRUCTURE


class GitCommandError(InfrastructureError):
    def __init__(self, command: str, status: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"git {command} failed ({status}): {detail}")
        self.status = status
        self.stderr = stderr


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, PalignError):
        return error.exit_code
    return ExitCode.INFRASTRUCTURE
