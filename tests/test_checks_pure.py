"""The pure helpers behind the first-time-user checks: where palign.toml declares a name,
clusters in numeric order, counts with their nouns agreeing."""

from __future__ import annotations

import pytest

from palign.cli.output import cluster_order, plural
from palign.config import line_of

TOML = """\
# a comment naming plan
stale_days = 1
[targets]
"release/*" = "release/2.x"
hotfix = "main"

[ plan ]
stale_days = 30
[validate.slow]
run = "make check"
[[plann]]
"""


@pytest.mark.parametrize(
    ("name", "section", "line"),
    [
        ("stale_days", None, 2),  # a top-level key, not the one in [plan]
        ("targets", None, 3),
        ("plan", None, 7),  # spaces in the header
        ("validate", None, 9),  # found by its dotted header
        ("plann", None, 11),  # an array of tables
        ("release/*", "targets", 4),  # quoted
        ("hotfix", "targets", 5),
        ("stale_days", "plan", 8),
        ("slow", "validate", 9),
        ("nowhere", "plan", None),
    ],
)
def test_line_of_finds_where_a_name_is_declared(name: str, section: str | None, line: int | None) -> None:
    assert line_of(TOML, name, section) == line


def test_clusters_sort_by_their_numbers() -> None:
    ids = ["c10", "c2", "c1", "c11", "c9", "x", "c3b"]
    assert sorted(ids, key=cluster_order) == ["c1", "c2", "c3b", "c9", "c10", "c11", "x"]


@pytest.mark.parametrize(
    ("count", "noun", "shown"),
    [(0, "branch", "0 branches"), (1, "branch", "1 branch"), (2, "stack", "2 stacks"), (1, "pair", "1 pair")],
)
def test_plural_agrees_with_the_count(count: int, noun: str, shown: str) -> None:
    assert plural(count, noun) == shown
