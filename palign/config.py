"""palign.toml: the operator's settings for a repository's runs.

[targets]                 # glob on the branch name -> target, first match wins
"hotfix/*" = "release/2.x"
[dependencies]            # branch -> the branch it is stacked on ("" for none)
"feature/b" = "feature/a"
[plan]
stale_days = 90           # no commit for this long: the branch is marked stale
cluster_threshold = 0.2   # Jaccard similarity of touched paths
long_lived = ["main", "[0-9]*.x"]  # branches that live on (replaces DEFAULT_LONG_LIVED)
[validate]                # checks run on every aligned result, in order (palign.validation)
tests = "pytest -x -q"
slow = { run = "make check", timeout = 300, retries = 1 }

Any other section, or any other key in [plan], is refused (a typo would otherwise be
ignored without a word), as is a [targets] rule naming a target the run does not align onto.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from palign.errors import InputError
from palign.model import short_name
from palign.validation.checks import Check, from_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_FILE = "palign.toml"
SECTIONS = ("targets", "dependencies", "plan", "validate")
PLAN_KEYS = ("stale_days", "cluster_threshold", "long_lived")

# Branches that live on beside the targets: trunks, maintenance and release lines,
# deployment branches. Without --branch they are not selected (a run would rebase a
# maintenance line onto main), and a branch whose tip one of them already holds is never
# a stack parent (see `plan.infer_dependencies`). Globs as --branch takes them: on the
# short name (`*` crosses `/`), or on the full ref for globs starting with refs/. The
# version globs are spelled digit by digit so that `123-fix-py3.12` stays a pull request.
DEFAULT_LONG_LIVED = (
    *("main", "master", "trunk", "devel", "develop", "development", "dev", "next", "stable", "staging", "production"),
    "gh-pages",
    *("[0-9]*.x", "v[0-9]*.x"),  # pytest 9.1.x, 1.x; node v18.x
    *("[0-9].[0-9]", "[0-9].[0-9][0-9]", "[0-9][0-9].[0-9]", "[0-9][0-9].[0-9][0-9]"),  # sympy 1.14
    *("stable/*", "stable-*"),  # django stable/5.1.x, ansible stable-2.17
    *("release*", "releases/*"),  # release/2.x, release-1.2, ansible release1.6.0
    *("maint", "maint-*", "maint/*", "maintenance/*"),
)


@dataclass(frozen=True)
class Config:
    rules: tuple[tuple[str, str], ...] = ()
    dependencies: dict[str, str | None] = field(default_factory=dict)
    stale_days: int | None = 90
    cluster_threshold: float = 0.2
    long_lived: tuple[str, ...] = DEFAULT_LONG_LIVED
    checks: tuple[Check, ...] = ()
    source: str = DEFAULT_FILE  # the file, as error messages name it
    rule_lines: dict[str, int | None] = field(default_factory=dict)  # [targets] glob -> its line

    def check_rule_targets(self, targets: Sequence[str]) -> None:
        """Every [targets] rule must name one of the run's targets (by ref or short name):
        a rule aimed elsewhere is a typo or a forgotten --onto, and would silently do nothing."""
        names = [short_name(target) for target in targets]
        for glob, wanted in self.rules:
            if wanted in targets or wanted in names:
                continue
            where = _where(self.source, self.rule_lines.get(glob))
            close = difflib.get_close_matches(wanted, names, n=1)
            raise InputError(
                f"{where}: [targets] rule {glob!r} = {wanted!r}: {wanted!r} is not a target of this run "
                f"(--onto: {', '.join(names)})" + (f"; did you mean {close[0]!r}?" if close else "")
            )


def load(path: Path | None) -> Config:
    """`path`, or ./palign.toml when it exists, or the defaults."""
    if path is None:
        default = Path(DEFAULT_FILE)
        if not default.is_file():
            return Config()
        path = default
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: {error}") from None
    _refuse_unknown_names(path, text, data)
    config = _parse(path, data, text)
    rule_lines = {glob: line_of(text, glob, section="targets") for glob, _ in config.rules}
    return replace(config, source=str(path), rule_lines=rule_lines)


def _refuse_unknown_names(path: Path, text: str, data: dict[str, Any]) -> None:
    """A misspelled section or [plan] key would otherwise be ignored without a word."""
    for name, value in data.items():
        if name not in SECTIONS:
            what = f"section [{name}]" if isinstance(value, dict) else f"key {name!r} outside any section"
            hint = "; it belongs under [plan]" if name in PLAN_KEYS else _suggestion(name, SECTIONS, shown="[{}]")
            raise InputError(f"{_where(path, line_of(text, name))}: unknown {what}{hint}")
    plan = data.get("plan")
    for name in plan if isinstance(plan, dict) else ():
        if name not in PLAN_KEYS:
            where = _where(path, line_of(text, name, section="plan"))
            hint = _suggestion(name, PLAN_KEYS, shown="'{}'")
            raise InputError(f"{where}: unknown key {name!r} in [plan]{hint}")


def _where(path: Path | str, line: int | None) -> str:
    return f"{path} line {line}" if line is not None else str(path)


def _suggestion(name: str, known: Sequence[str], shown: str = "{}") -> str:
    """A "did you mean X?" hint when a known name is close, else the known names."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {shown.format(close[0])}?"
    return f" (known: {', '.join(shown.format(k) for k in known)})"


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]*?)\s*\]")


def line_of(text: str, name: str, section: str | None = None) -> int | None:
    """The line (from 1) that declares `name` in `section` (None: the top level).

    tomllib gives no positions, so this scans the text: a section is found by its header
    (`[name]`, `[name.sub]`, `[[name]]`) or a top-level dotted key (`name.key = ...`); a key
    by `name = ...` (bare or quoted) after its section's header, or a `[section.name]`
    header. Good enough to point at a typo; None when the scan does not find it.
    """
    quoted = rf"(?:{re.escape(name)}|\"{re.escape(name)}\"|'{re.escape(name)}')"
    key = re.compile(rf"^\s*{quoted}\s*[=.]")
    current = ""  # the section of the line being read ("" before any header)
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header is None:
            if current == (section or "") and key.match(line):
                return number
            continue
        current = re.sub(r"[\s\"']", "", header.group(1))
        wanted = name if section is None else f"{section}.{name}"
        if current == wanted or (section is None and current.startswith(f"{name}.")):
            return number
        current = current.split(".")[0]
    return None


def _parse(path: Path, data: dict[str, Any], text: str) -> Config:
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
    long_lived = plan.get("long_lived", DEFAULT_LONG_LIVED)
    if not isinstance(long_lived, (list, tuple)) or not all(isinstance(g, str) and g for g in long_lived):
        where = _where(path, line_of(text, "long_lived", section="plan"))
        raise InputError(f'{where}: [plan] long_lived must be a list of branch globs, like ["main", "[0-9]*.x"]')
    return Config(
        rules=tuple(targets.items()),
        dependencies={child: parent or None for child, parent in dependencies.items()},
        stale_days=stale_days or None,
        cluster_threshold=float(threshold),
        long_lived=tuple(long_lived),
        checks=from_table(str(path), data["validate"]) if "validate" in data else (),
    )
