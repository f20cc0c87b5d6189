"""Checks as the operator wrote them: `[validate]` in palign.toml, or `--validate "CMD"`.

    [validate]
    tests = "pytest -x -q"                                   # a command, default timeout
    slow = { run = "make check", timeout = 300, retries = 1 } # or a table

Checks run in the order written and stop at the first failure. Commands come only from
the operator, never from a branch's content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from palign.errors import InputError

DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Check:
    name: str
    run: str  # a shell command, run in the checked-out tree
    timeout: float = DEFAULT_TIMEOUT
    retries: int = 0  # extra attempts for a flaky check

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "run": self.run, "timeout": self.timeout, "retries": self.retries}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        return cls(str(data["name"]), str(data["run"]), float(data["timeout"]), int(data["retries"]))


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
        unknown = set(value) - {"run", "timeout", "retries"}
        if unknown:
            raise InputError(f"{where}: [validate] {name!r} has unknown keys: {', '.join(sorted(unknown))}")
        timeout = value.get("timeout", DEFAULT_TIMEOUT)
        retries = value.get("retries", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InputError(f"{where}: [validate] {name!r}: timeout must be a positive number of seconds")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise InputError(f"{where}: [validate] {name!r}: retries must be a whole number from 0 to 10")
        checks.append(Check(name, _command(where, name, value.get("run")), float(timeout), retries))
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
