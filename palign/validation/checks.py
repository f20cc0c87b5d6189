"""Checks as the operator wrote them: `[validate]` in palign.toml, or `--validate "CMD"`.

    [validate]
    tests = "pytest -x -q"                                   # a command, default timeout
    slow = { run = "make check", timeout = 300, retries = 1 } # or a table
    deps = { run = "pip download -r req.txt", network = true } # network is off unless asked

Checks run in the order written and stop at the first failure. Commands come only from
the operator, never from a branch's content, and never from a task message: a
distributed run names its checks (`CheckRef`: a name and a digest of what the check is),
and each worker runs the checks of its own configuration that match.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from palign.errors import InputError, MalformedRecord

DEFAULT_TIMEOUT = 600.0


_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CheckRef:
    """A check as a task message names it: its name, and a digest of what it is, so a
    worker runs it only if its own configuration has that very check."""

    name: str
    digest: str

    def to_json(self) -> list[str]:
        return [self.name, self.digest]

    @classmethod
    def from_json(cls, data: Any) -> CheckRef:
        if (
            not isinstance(data, list)
            or len(data) != 2
            or not all(isinstance(v, str) for v in data)
            or not _DIGEST.fullmatch(data[1])
        ):
            raise MalformedRecord(f"not a check reference: {data!r}")
        return cls(data[0], data[1])


@dataclass(frozen=True)
class Check:
    name: str
    run: str  # a shell command, run in the checked-out tree
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 0  # extra attempts for a flaky check
    network: bool = False  # the check may use the network (off in the sandbox otherwise)

    def ref(self) -> CheckRef:
        what = json.dumps([self.run, self.timeout, self.retries, self.network])
        return CheckRef(self.name, hashlib.sha256(what.encode()).hexdigest())


def from_table(where: str, table: Any) -> tuple[Check, ...]:
    """The checks of a [validate] table; `where` names the file in error messages."""
    if not isinstance(table, dict):
        raise InputError(f"{where}: [validate] must be a table of checks")
    checks = []
    for name, value in table.items():
        if isinstance(value, str):
            checks.append(Check(name, _command(where, name, value)))
            continue
        if not isinstance(value, dict):
            raise InputError(f"{where}: [validate] {name!r} must be a command or a table with `run`")
        unknown = set(value) - {"run", "timeout", "retries", "network"}
        if unknown:
            raise InputError(f"{where}: [validate] {name!r} has unknown keys: {', '.join(sorted(unknown))}")
        timeout = value.get("timeout", DEFAULT_TIMEOUT)
        retries = value.get("retries", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InputError(f"{where}: [validate] {name!r}: timeout must be a positive number of seconds")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise InputError(f"{where}: [validate] {name!r}: retries must be a whole number from 0 to 10")
        network = value.get("network", False)
        if not isinstance(network, bool):
            raise InputError(f"{where}: [validate] {name!r}: network must be true or false")
        checks.append(Check(name, _command(where, name, value.get("run")), float(timeout), retries, network))
    return tuple(checks)


def from_commands(commands: Sequence[str]) -> tuple[Check, ...]:
    """`--validate CMD` (repeatable): checks named validate-1, validate-2, ..."""
    return tuple(Check(f"validate-{i}", _command("--validate", str(i), c)) for i, c in enumerate(commands, 1))


def _command(where: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: check {name!r} needs a command (`run`)")
    if "\0" in value:
        raise InputError(f"{where}: check {name!r}: the command contains a NUL byte")
    return value
