"""Plan files: `{"branches": [{"branch_name", "assigned_target", "confidence", "tags",
"cluster_id", "depends_on"?}, ...]}`, as the branch-clustering tools of this workflow
write them, plus the keys palign adds when it writes its own.

Files may come from other tools or from hand edits, so every error names the field and
the line it is on. The text is parsed by `json` first (syntax errors keep json's own
line and column); positions are then found by a small structural scan of the already
valid text, which avoids depending on the json module's private scanner.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from palign.errors import InputError
from palign.planner.model import Plan, PlanEntry, PlannedBranch

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "plan.schema.json"
PLAN_VERSION = 1
KNOWN_KEYS = ("branch_name", "assigned_target", "confidence", "tags", "cluster_id", "depends_on")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SPECIAL = re.compile(r'["{}\[\]]')
_WS = re.compile(r"[ \t\r\n]*")


# ---- writing ------------------------------------------------------------------------


def _branch_json(branch: PlannedBranch) -> dict[str, Any]:
    return {
        "branch_name": branch.branch_name,
        "assigned_target": branch.assigned_target,
        "confidence": branch.confidence,
        "tags": list(branch.tags),
        "cluster_id": branch.cluster_id,
        "depends_on": list(branch.depends_on),
        "category": branch.category.value,
        "stale": branch.stale,
        "ahead": branch.ahead,
        "behind": branch.behind,
        "parent": branch.parent,
        "cost": branch.cost,
        "forecast": branch.forecast,
        "sha": branch.sha,
    }


def write_plan(plan: Plan) -> str:
    """The plan as a plan file (JSON text ending in a newline)."""
    document = {
        "version": PLAN_VERSION,
        "targets": list(plan.targets),
        "branches": [_branch_json(b) for b in plan.branches],
        "units": [{"levels": unit.levels, "cost": unit.cost, "batch": unit.batch} for unit in plan.units],
        "left_out": [{"branch_name": b.branch_name, "reason": b.reason, "detail": b.detail} for b in plan.left_out],
    }
    return json.dumps(document, indent=2) + "\n"


# ---- locating values in valid JSON text ---------------------------------------------


def _skip_ws(text: str, at: int) -> int:
    match = _WS.match(text, at)
    return match.end() if match else at


def _end_of_value(text: str, at: int) -> int:
    """Index just past the JSON value starting at `at` (the text is valid JSON)."""
    if text[at] == '"':
        return _STRING.match(text, at).end()  # type: ignore[union-attr]
    if text[at] not in "{[":
        while at < len(text) and text[at] not in ",]} \t\r\n":
            at += 1
        return at
    depth = 0
    while True:
        special = _SPECIAL.search(text, at)
        assert special is not None, "unbalanced JSON after a successful parse"
        char, at = special.group(), special.start()
        if char == '"':
            at = _STRING.match(text, at).end()  # type: ignore[union-attr]
            continue
        depth += 1 if char in "{[" else -1
        at += 1
        if depth == 0:
            return at


def _members(text: str, at: int) -> list[tuple[str | None, int, int]]:
    """(key or None, position of the key or element, position of the value) for each
    member of the object or array starting at `at`."""
    found: list[tuple[str | None, int, int]] = []
    is_object = text[at] == "{"
    at = _skip_ws(text, at + 1)
    while text[at] not in "}]":
        key: str | None = None
        start = at
        if is_object:
            end = _end_of_value(text, at)
            key = json.loads(text[at:end])
            at = _skip_ws(text, _skip_ws(text, end) + 1)  # past the colon
        value_end = _end_of_value(text, at)
        found.append((key, start, at))
        at = _skip_ws(text, value_end)
        if text[at] == ",":
            at = _skip_ws(text, at + 1)
    return found


class _Located:
    """A JSON value and where it starts, to turn positions into line numbers."""

    def __init__(self, text: str, value: Any, at: int) -> None:
        self.text, self.value, self.at = text, value, at

    @property
    def line(self) -> int:
        return self.text.count("\n", 0, self.at) + 1

    def key_line(self, key: str) -> int:
        """Line of `key` in this object (its last occurrence, which json keeps)."""
        lines = [self.text.count("\n", 0, pos) + 1 for name, pos, _ in _members(self.text, self.at) if name == key]
        return lines[-1] if lines else self.line

    def child(self, key: str) -> _Located:
        value_at = [value for name, _, value in _members(self.text, self.at) if name == key][-1]
        return _Located(self.text, self.value[key], value_at)

    def items(self) -> list[_Located]:
        positions = [pos for _, pos, _ in _members(self.text, self.at)]
        return [_Located(self.text, value, pos) for value, pos in zip(self.value, positions, strict=True)]


# ---- reading ------------------------------------------------------------------------


def _fail(line: int, message: str) -> InputError:
    return InputError(f"plan file line {line}: {message}")


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item for item in value)


def _entry(item: _Located, where: str) -> PlanEntry:
    data = item.value
    if not isinstance(data, dict):
        raise _fail(item.line, f"{where} must be an object")
    for key in KNOWN_KEYS[:5]:
        if key not in data:
            raise _fail(item.line, f"{where}.{key} is missing")
    for key in ("branch_name", "assigned_target"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise _fail(item.key_line(key), f"{where}.{key} must be a non-empty string")
    confidence = data["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise _fail(item.key_line("confidence"), f"{where}.confidence must be a number between 0 and 1")
    if not math.isfinite(confidence):  # NaN passes the comparison above
        raise _fail(item.key_line("confidence"), f"{where}.confidence must be a number between 0 and 1")
    if not _string_list(data["tags"]):
        raise _fail(item.key_line("tags"), f"{where}.tags must be a list of non-empty strings")
    cluster_id = data["cluster_id"]
    if isinstance(cluster_id, bool) or not isinstance(cluster_id, (str, int)):
        raise _fail(item.key_line("cluster_id"), f"{where}.cluster_id must be a string or an integer")
    depends_on = data.get("depends_on")
    if depends_on is not None and not _string_list(depends_on):
        raise _fail(item.key_line("depends_on"), f"{where}.depends_on must be a list of branch names")
    if depends_on is not None and len(depends_on) > 1:
        raise _fail(
            item.key_line("depends_on"),
            f"{where}.depends_on names {len(depends_on)} branches; a branch is replayed onto one parent",
        )
    return PlanEntry(
        branch_name=data["branch_name"],
        assigned_target=data["assigned_target"],
        confidence=float(confidence),
        tags=list(data["tags"]),
        cluster_id=str(cluster_id),
        depends_on=list(depends_on) if depends_on is not None else None,
        extra={key: value for key, value in data.items() if key not in KNOWN_KEYS},
        line=item.line,
    )


def read_plan(text: str) -> list[PlanEntry]:
    """The validated branches of a plan file; InputError naming the field and line."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"plan file line {error.lineno} column {error.colno}: invalid JSON: {error.msg}") from None
    root = _Located(text, document, _skip_ws(text, 0))
    if not isinstance(document, dict):
        raise _fail(root.line, 'a plan file must be a JSON object with a "branches" list')
    if "branches" not in document:
        raise _fail(root.line, '"branches" is missing')
    branches = root.child("branches")
    if not isinstance(branches.value, list):
        raise _fail(root.key_line("branches"), '"branches" must be a list')
    items = branches.items()
    entries: list[PlanEntry] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(items):
        entry = _entry(item, f"branches[{index}]")
        if entry.branch_name in first_line:
            raise _fail(
                item.key_line("branch_name"),
                f"branches[{index}].branch_name {entry.branch_name!r} is already listed at line"
                f" {first_line[entry.branch_name]}",
            )
        first_line[entry.branch_name] = entry.line
        entries.append(entry)
    for index, (entry, item) in enumerate(zip(entries, items, strict=True)):
        for parent in entry.depends_on or ():
            where = f"plan file line {item.key_line('depends_on')}: branches[{index}].depends_on"
            if parent == entry.branch_name:
                raise InputError(f"{where}: dependency cycle: {parent} -> {parent}")
            if parent not in first_line:
                raise InputError(f"{where} names {parent!r}, which is not a branch of the plan")
    return entries


def read_plan_file(path: str | Path) -> list[PlanEntry]:
    """`read_plan` on a file, with unreadable files reported as input errors."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read plan file {str(path)!r}: {error}") from None
    return read_plan(text)
