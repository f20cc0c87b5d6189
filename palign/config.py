"""palign.toml: the operator's settings for a repository's runs.

[targets]                 # glob on the branch name -> target, first match wins
"release/*" = "release/2.x"
[dependencies]            # branch -> the branch it is stacked on ("" for none)
"feature/b" = "feature/a"
[plan]
stale_days = 90           # no commit for this long: category `stale`
cluster_threshold = 0.2   # Jaccard similarity of touched paths
[validate]                # checks run on every aligned result, in order (palign.validation)
tests = "pytest -x -q"
slow = { run = "make check", timeout = 300, retries = 1 }
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palign.errors import InputError
from palign.validation.checks import Check, from_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_FILE = "palign.toml"


@dataclass(frozen=True)
class Config:
    rules: tuple[tuple[str, str], ...] = ()
    dependencies: dict[str, str | None] = field(default_factory=dict)
    stale_days: int | None = 90
    cluster_threshold: float = 0.2
    checks: tuple[Check, ...] = ()


def load(path: Path | None) -> Config:
    """`path`, or ./palign.toml when it exists, or the defaults."""
    if path is None:
        default = Path(DEFAULT_FILE)
        if not default.is_file():
            return Config()
        path = default
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: {error}") from None
    return _parse(path, data)


def _parse(path: Path, data: dict[str, Any]) -> Config:
    targets = data.get("targets", {})
    dependencies = data.get("dependencies", {})
    plan = data.get("plan", {})
    for name, value in (("targets", targets), ("dependencies", dependencies), ("plan", plan)):
        if not isinstance(value, dict):
            raise InputError(f"{path}: [{name}] must be a table")
    for glob, target in targets.items():
        if not isinstance(target, str) or not target:
            raise InputError(f"{path}: [targets] {glob!r} must name a target branch")
    for child, parent in dependencies.items():
        if not isinstance(parent, str):
            raise InputError(f"{path}: [dependencies] {child!r} must name the branch it is stacked on")
    stale_days = plan.get("stale_days", 90)
    threshold = plan.get("cluster_threshold", 0.2)
    if not isinstance(stale_days, int) or isinstance(stale_days, bool) or stale_days < 0:
        raise InputError(f"{path}: [plan] stale_days must be a whole number of days")
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise InputError(f"{path}: [plan] cluster_threshold must be in (0, 1]")
    return Config(
        rules=tuple(targets.items()),
        dependencies={child: parent or None for child, parent in dependencies.items()},
        stale_days=stale_days or None,
        cluster_threshold=float(threshold),
        checks=from_table(str(path), data["validate"]) if "validate" in data else (),
    )
