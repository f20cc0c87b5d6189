"""Plan files: palign's own round trip, other tools' files, the schema, and every
malformed case reported with its field and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from palign.errors import InputError
from palign.planner.model import BranchFacts, Plan, TargetFacts
from palign.planner.plan import make_plan
from palign.planner.planfile import SCHEMA_PATH, read_plan, read_plan_file, write_plan

MAIN, REL = "main", "release/1.x"
NOW = 1_800_000_000


def _facts(name: str, behind_main: int, behind_rel: int, contains: tuple[str, ...] = (), ahead: int = 2) -> BranchFacts:
    def seen(behind: int, base: str) -> TargetFacts:
        return TargetFacts(ahead, behind, True, False, False, False, base, frozenset({f"{name}.py", "shared.py"}))

    return BranchFacts(
        refname=f"refs/heads/{name}",
        name=name,
        sha=f"{len(name):040x}",
        targets={MAIN: seen(behind_main, "m"), REL: seen(behind_rel, "r")},
        last_commit_time=NOW,
        contains=frozenset(f"refs/heads/{c}" for c in contains),
    )


FACTS = [
    _facts("feature/a", 2, 9),
    _facts("feature/b", 2, 9, ("feature/a",), ahead=4),
    _facts("feature/c", 3, 9, ("feature/a", "feature/b"), ahead=5),
    _facts("fix/d", 9, 1),
    _facts("hotfix/e", 1, 9),
    _facts("docs/f", 5, 5),
]


def _plan() -> Plan:
    return make_plan(FACTS, [MAIN, REL], [("hotfix/*", REL)], {"docs/f": None}, 30, NOW)


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_palign_output_validates_against_the_schema() -> None:
    document = json.loads(write_plan(_plan()))
    jsonschema.validate(document, _schema(), cls=jsonschema.Draft202012Validator)
    assert document["version"] == 1 and document["targets"] == [MAIN, REL]
    assert document["units"][0] == {"levels": [["feature/a"], ["feature/b"], ["feature/c"]], "cost": 10, "batch": False}


def test_round_trip_gives_the_same_plan() -> None:
    plan = _plan()
    text = write_plan(plan)
    entries = read_plan(text)
    lines = text.splitlines()
    assert [e.branch_name for e in entries] == [b.branch_name for b in plan.branches]
    assert entries[1].depends_on == ["feature/a"] and entries[1].extra["category"] == "diverged"
    for entry in entries:  # where each object starts: the line before its branch_name
        assert lines[entry.line] == f'      "branch_name": "{entry.branch_name}",' and lines[entry.line - 1] == "    {"
    again = make_plan(FACTS, [MAIN, REL], (), None, 30, NOW, entries=entries)
    assert again == plan
    assert write_plan(again) == write_plan(plan)


def test_a_file_from_another_tool() -> None:
    text = json.dumps(
        {
            "generated_by": "branch-clusterer",
            "branches": [
                {"branch_name": "fix/d", "assigned_target": MAIN, "confidence": 0.4, "tags": ["bugfix"],
                 "cluster_id": 7, "similarity": [0.1, 0.2]},
                {"branch_name": "feature/a", "assigned_target": REL, "confidence": 1, "tags": [], "cluster_id": "x",
                 "depends_on": ["fix/d"]},
            ],
        },
        indent=1,
    )  # fmt: skip
    jsonschema.validate(json.loads(text), _schema(), cls=jsonschema.Draft202012Validator)
    fix, feature = read_plan(text)
    assert (fix.cluster_id, fix.extra, fix.depends_on, fix.confidence) == ("7", {"similarity": [0.1, 0.2]}, None, 0.4)
    assert feature.depends_on == ["fix/d"]
    facts = [f for f in FACTS if f.name in ("fix/d", "feature/a")]
    plan = make_plan(facts, [MAIN, REL], entries=[fix, feature], now=NOW)
    # Pinned targets and confidences; the child follows its declared parent's target.
    assert plan.branch("fix/d").assigned_target == MAIN and plan.branch("fix/d").tags == ["bugfix", "stack-root"]
    assert (plan.branch("feature/a").assigned_target, plan.branch("feature/a").parent) == (MAIN, "fix/d")


def test_plan_entries_must_match_the_run() -> None:
    entry = read_plan('{"branches": [\n {"branch_name": "fix/d", "assigned_target": "scientific",'
                      ' "confidence": 1, "tags": [], "cluster_id": "c1"}]}')  # fmt: skip
    with pytest.raises(InputError, match="^plan file line 2: 'fix/d' is assigned to 'scientific', which is not a"):
        make_plan(FACTS, [MAIN, REL], entries=entry)
    ghost = read_plan('{"branches": [{"branch_name": "ghost", "assigned_target": "main", "confidence": 1,'
                      ' "tags": [], "cluster_id": "c1"}]}')  # fmt: skip
    with pytest.raises(InputError, match="^plan file line 1: 'ghost' is not a selected branch"):
        make_plan(FACTS, [MAIN, REL], entries=ghost)


GOOD = {"branch_name": "a", "assigned_target": "main", "confidence": 0.5, "tags": ["t"], "cluster_id": "c1"}


def _file(*branches: Any, key: str = "branches") -> str:
    """Two header lines, then one branch per line: branches[i] is on line 3 + i."""
    lines = ",\n".join("    " + json.dumps(b) for b in branches)
    return '{\n  "' + key + '": [\n' + lines + "\n  ]\n}\n"


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  "branches": [\n    {"branch_name": "a",}\n  ]\n}', "line 3 column 25: invalid JSON: Expecting property"),
        ("", "line 1 column 1: invalid JSON: Expecting value"),
        ('\n\n["not", "an", "object"]', 'line 3: a plan file must be a JSON object with a "branches" list'),
        ('{\n  "version": 1\n}', 'line 1: "branches" is missing'),
        ('{\n  "version": 1,\n  "branches": {"a": 1}\n}', 'line 3: "branches" must be a list'),
        (_file(GOOD, GOOD | {"branch_name": "b"}, "c"), "line 5: branches[2] must be an object"),
        (_file(GOOD, GOOD | {"branch_name": "b"}, _without("branch_name")), "line 5: branches[2].branch_name is"),
        (_file(GOOD | {"branch_name": " "}), "line 3: branches[0].branch_name must be a non-empty string"),
        (_file(GOOD, GOOD | {"assigned_target": 3}), "line 4: branches[1].assigned_target must be a non-empty"),
        (_file(GOOD, _without("cluster_id")), "line 4: branches[1].cluster_id is missing"),
        (_file(GOOD | {"cluster_id": None}), "line 3: branches[0].cluster_id must be a string or an integer"),
        (_file(GOOD | {"tags": "t"}), "line 3: branches[0].tags must be a list of non-empty strings"),
        (_file(GOOD | {"tags": ["ok", 1]}), "line 3: branches[0].tags must be a list of non-empty strings"),
        (_file(GOOD | {"depends_on": "b"}, GOOD | {"branch_name": "b"}),
         "line 3: branches[0].depends_on must be a list of branch names"),
        (_file(GOOD | {"depends_on": [{"name": "b"}]}), "line 3: branches[0].depends_on must be a list of branch"),
        (_file(GOOD | {"depends_on": ["b", "c"]}), "line 3: branches[0].depends_on names 2 branches; a branch is"),
        (_file(GOOD | {"depends_on": ["zz"]}), "line 3: branches[0].depends_on names 'zz', which is not a branch of"),
        (_file(GOOD | {"depends_on": ["a"]}), "line 3: branches[0].depends_on: dependency cycle: a -> a"),
        (_file(GOOD, GOOD), "line 4: branches[1].branch_name 'a' is already listed at line 3"),
    ],
)  # fmt: skip
def test_malformed_files_name_the_field_and_line(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_plan(text)
    assert str(caught.value).startswith(f"plan file {message}")


@pytest.mark.parametrize("confidence", ["1.5", "-0.1", '"0.5"', "true", "null", "NaN", "Infinity"])
def test_bad_confidence_is_reported_on_its_own_line(confidence: str) -> None:
    text = (
        '{\n  "branches": [\n'
        '    {"branch_name": "a", "assigned_target": "main", "confidence": 1, "tags": [], "cluster_id": "c1"},\n'
        '    {"branch_name": "b", "assigned_target": "main", "confidence": 1, "tags": [], "cluster_id": "c1"},\n'
        "    {\n"
        '      "branch_name": "c",\n'
        '      "assigned_target": "main",\n'
        f'      "confidence": {confidence},\n'
        '      "tags": [], "cluster_id": "c1", "note": {"confidence": 2}\n'
        "    }\n  ]\n}\n"
    )
    expected = r"^plan file line 8: branches\[2\]\.confidence must be a number between 0 and 1$"
    with pytest.raises(InputError, match=expected):
        read_plan(text)


def test_positions_survive_tricky_strings_and_nesting() -> None:
    tricky = GOOD | {"note": 'braces } ] { [ and "quotes" \\ and \u00e9', "nested": [{"x": [1, {"y": "}"}]}]}
    text = _file(tricky, GOOD | {"branch_name": "b"}, GOOD | {"branch_name": "c", "confidence": 7})
    with pytest.raises(InputError, match=r"^plan file line 5: branches\[2\]\.confidence"):
        read_plan(text)


def test_schema_rejects_what_palign_rejects() -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    for bad in (_without("branch_name"), GOOD | {"confidence": 2}, GOOD | {"depends_on": "b"}, GOOD | {"tags": [1]}):
        assert not validator.is_valid({"branches": [bad]})
    assert validator.is_valid({"branches": [GOOD, GOOD | {"branch_name": "b", "depends_on": []}]})


def test_reading_a_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("\ufeff" + _file(GOOD), encoding="utf-8")
    assert [e.branch_name for e in read_plan_file(path)] == ["a"]
    with pytest.raises(InputError, match="cannot read plan file"):
        read_plan_file(tmp_path / "missing.json")
