"""The pure planner: targets, stacks, cycles, categories, units and whole plans, from facts
(clusters: test_planner_clusters.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace

import pytest

from palign.errors import InputError
from palign.planner.model import Assignment, BranchFacts, Category, PlannedBranch, TargetFacts
from palign.planner.plan import (
    assign_targets,
    build_units,
    categorize,
    follow_roots,
    infer_dependencies,
    make_plan,
)

MAIN, REL = "main", "release/1.x"
NOW = 1_800_000_000
DAY = 86_400


def tf(ahead: int = 1, behind: int = 1, *, base: str = "b0", in_target: bool = False, first_parent: bool = False,
       patch: bool = False, paths: Iterable[str] = ("f",), common: bool = True) -> TargetFacts:  # fmt: skip
    touched = frozenset(paths) if common else frozenset()
    return TargetFacts(ahead, behind, common, in_target, first_parent, patch, base if common else None, touched)


def bf(
    name: str, on: dict[str, TargetFacts] | None = None, contains: Iterable[str] = (), age_days: int = 0
) -> BranchFacts:
    return BranchFacts(
        refname=f"refs/heads/{name}",
        name=name,
        sha=hashlib.sha1(name.encode()).hexdigest(),
        targets=on if on is not None else {MAIN: tf()},
        last_commit_time=NOW - age_days * DAY,
        contains=frozenset(f"refs/heads/{c}" for c in contains),
    )


def stack(depth: int) -> list[BranchFacts]:
    """s1 <- s2 <- ... : s_k contains s_1 .. s_(k-1)."""
    names = [f"s{i}" for i in range(1, depth + 1)]
    return [bf(n, {MAIN: tf(ahead=i + 1, paths=[f"p{i}"])}, contains=names[:i]) for i, n in enumerate(names)]


# ---- targets ------------------------------------------------------------------------


def test_single_candidate_target_is_certain() -> None:
    branch = bf("a", {MAIN: tf(behind=40), REL: tf(common=False)})
    assert assign_targets([branch], [MAIN, REL])["a"] == Assignment(MAIN, 1.0, "inferred")


def test_fewest_own_commits_win_with_margin_confidence() -> None:
    # Cut from the release branch: against main it also carries the release's own commits.
    backport = bf("a", {MAIN: tf(ahead=8, behind=2, base="m"), REL: tf(ahead=2, behind=30, base="r")})
    assert assign_targets([backport], [MAIN, REL])["a"] == Assignment(REL, 0.875, "inferred")
    # Forked from main before the release branch was cut: as many own commits against
    # both, however much fewer of the release's commits it misses. A real tie.
    old_fork = bf("b", {MAIN: tf(ahead=3, behind=40, base="m"), REL: tf(ahead=3, behind=2, base="r")})
    assert assign_targets([old_fork], [MAIN, REL])["b"] == Assignment(MAIN, 0.5, "inferred")
    # Forked from main after the cut: it carries main's newer commits against the release.
    recent = bf("c", {MAIN: tf(ahead=2, behind=9, base="m"), REL: tf(ahead=12, behind=1, base="r")})
    assert assign_targets([recent], [MAIN, REL])["c"] == Assignment(MAIN, 0.917, "inferred")


@pytest.mark.parametrize("order", [[MAIN, REL], [REL, MAIN]])
def test_ties_go_to_the_first_target(order: list[str]) -> None:
    equal = bf("equal", {MAIN: tf(behind=7, base="m"), REL: tf(behind=7, base="r")})
    # Same fork point: one target merely moved on further since; still a tie.
    same_base = bf("same_base", {MAIN: tf(behind=30, base="x"), REL: tf(behind=3, base="x")})
    assigned = assign_targets([equal, same_base], order)
    assert assigned["equal"] == Assignment(order[0], 0.5, "inferred")
    assert assigned["same_base"] == Assignment(order[0], 0.5, "inferred")


def test_no_common_history_is_an_orphan_on_the_first_target() -> None:
    branch = bf("lonely", {MAIN: tf(common=False), REL: tf(common=False)})
    assert assign_targets([branch], [MAIN, REL])["lonely"] == Assignment(MAIN, 0.0, "orphan")


def test_rules_win_first_match_and_skip_targets_of_other_runs() -> None:
    main, rel = "refs/heads/main", "refs/heads/release/1.x"  # rules may name targets by short name
    branches = [
        bf("hotfix/x", {main: tf(behind=1, base="m"), rel: tf(behind=50, base="r")}),
        bf("feature/y", {main: tf(ahead=9, behind=9, base="m"), rel: tf(ahead=2, behind=2, base="r")}),
        bf("docs/z", {main: tf(ahead=8, behind=8, base="m"), rel: tf(ahead=2, behind=2, base="r")}),
    ]
    rules = [("hotfix/*", "release/1.x"), ("hotfix/*", "main"), ("feature/*", "main"), ("docs/*", "scientific")]
    assigned = assign_targets(branches, [main, rel], rules)
    assert assigned["hotfix/x"] == Assignment(rel, 1.0, "rule")
    assert assigned["feature/y"] == Assignment(main, 1.0, "rule")
    assert assigned["docs/z"] == Assignment(rel, 0.875, "inferred")  # its rule's target is not in this run


def test_pinned_targets_beat_rules() -> None:
    branch = bf("a", {MAIN: tf(), REL: tf()})
    pinned = {"a": Assignment(REL, 0.3, "pinned")}
    assert assign_targets([branch], [MAIN, REL], [("*", MAIN)], pinned=pinned)["a"] == pinned["a"]


def test_children_follow_their_root() -> None:
    root = bf("root", {MAIN: tf(ahead=20, behind=10, base="m"), REL: tf(ahead=2, behind=1, base="r")})
    child = bf("child", {MAIN: tf(behind=1, base="m2"), REL: tf(behind=1, base="r")}, contains=["root"])
    grandchild = bf(
        "grandchild", {MAIN: tf(behind=0, base="m3"), REL: tf(behind=9, base="r")}, contains=["root", "child"]
    )
    facts = [root, child, grandchild]
    parents = {"root": None, "child": "root", "grandchild": "child"}
    assigned = assign_targets(facts, [MAIN, REL], [("grandchild", MAIN)], parents=parents)
    assert assigned["root"] == Assignment(REL, 0.95, "inferred")
    assert assigned["child"] == assigned["grandchild"] == Assignment(REL, 0.95, "stack")
    assert follow_roots({"x": Assignment(MAIN, 1.0, "rule")}, {"x": None}) == {"x": Assignment(MAIN, 1.0, "rule")}


def test_no_target_is_an_input_error() -> None:
    with pytest.raises(InputError):
        assign_targets([bf("a")], [])


# ---- stacks -------------------------------------------------------------------------


def test_linear_stack_of_six_levels() -> None:
    facts = stack(6)
    parents = infer_dependencies(facts)
    assert parents == {"s1": None, "s2": "s1", "s3": "s2", "s4": "s3", "s5": "s4", "s6": "s5"}
    plan = make_plan(facts, [MAIN], now=NOW)
    assert [u.levels for u in plan.units] == [[["s1"], ["s2"], ["s3"], ["s4"], ["s5"], ["s6"]]]
    assert plan.branch("s4").depends_on == ["s3"] and plan.branch("s4").tags == [
        "target-from-stack",
        "stacked",
        "stack-parent",
    ]
    assert plan.branch("s1").tags == ["stack-root"]


def test_tree_stacks() -> None:
    facts = [bf("a"), bf("b", contains=["a"]), bf("c", contains=["a"]), bf("d", contains=["a", "b"]), bf("e")]
    parents = infer_dependencies(facts)
    assert parents == {"a": None, "b": "a", "c": "a", "d": "b", "e": None}
    units = make_plan(facts, [MAIN], now=NOW).units
    assert [["a"], ["b", "c"], ["d"]] in [u.levels for u in units]


def test_parents_already_in_a_target_are_ignored() -> None:
    merged = bf("merged", {MAIN: tf(ahead=0, in_target=True), REL: tf(ahead=3)})
    child = bf("child", {MAIN: tf(), REL: tf()}, contains=["merged"])
    assert infer_dependencies([merged, child])["child"] is None
    # Even for a child planned onto the release, which lacks it: its commits are upstream
    # of a base (main), not a lower level of a stack the child must wait for.
    assert make_plan([merged, child], [REL, MAIN], [("*", REL)]).branch("child").parent is None


def test_parents_a_long_lived_branch_holds_are_ignored() -> None:
    """p2 was branched from 1.x after 1.x merged p1: p2 holds p1's tip through 1.x's merge,
    not because it was built on p1."""
    p1 = replace(bf("p1"), held_by=frozenset({"refs/heads/1.x"}))
    p2 = bf("p2", contains=["p1"])
    assert infer_dependencies([p1, p2]) == {"p1": None, "p2": None}
    assert infer_dependencies([bf("p1"), p2])["p2"] == "p1"  # the same graph, 1.x not long-lived: a stack


def test_unselected_contained_tips_are_ignored() -> None:
    assert infer_dependencies([bf("b", contains=["gone"])]) == {"b": None}


def test_declared_dependencies_override_inference() -> None:
    facts = [bf("a"), bf("b", contains=["a"]), bf("c", contains=["a"])]
    declared = {"b": None, "c": "b", "not-selected": "a"}
    assert infer_dependencies(facts, declared) == {"a": None, "b": None, "c": "b"}


@pytest.mark.parametrize(
    ("declared", "cycle"),
    [
        ({"a": "b", "b": "a"}, "a -> b -> a"),
        ({"x": "x"}, "x -> x"),
        ({"c": "a", "a": "b", "b": "c"}, "a -> b -> c -> a"),
        ({"a": "b"}, "a -> b -> a"),  # b's parent a is inferred: b contains a
    ],
)
def test_cycles_are_input_errors_naming_the_cycle(declared: dict[str, str | None], cycle: str) -> None:
    facts = [bf("a"), bf("b", contains=["a"]), bf("c"), bf("x")]
    with pytest.raises(InputError, match=f"^dependency cycle: {cycle}$"):
        infer_dependencies(facts, declared)


def test_a_declared_parent_must_be_selected() -> None:
    with pytest.raises(InputError, match="'b' depends on 'ghost', which is not a selected branch"):
        infer_dependencies([bf("b")], {"b": "ghost"})


# ---- categories ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "category"),
    [
        (tf(common=False), Category.ORPHAN),
        (tf(ahead=3, behind=0), Category.UP_TO_DATE),
        (tf(ahead=0, behind=0, in_target=True, first_parent=True), Category.UP_TO_DATE),
        (tf(ahead=0, behind=4, in_target=True, first_parent=True), Category.BEHIND),
        (tf(ahead=0, behind=4, in_target=True), Category.MERGED),
        (tf(ahead=2, behind=4, patch=True), Category.MERGED),
        (tf(ahead=2, behind=4), Category.DIVERGED),
    ],
)
def test_every_category_and_its_precedence(seen: TargetFacts, category: Category) -> None:
    assert categorize(bf("a", {MAIN: seen}), MAIN) is category


def test_unknown_target_is_orphan() -> None:
    assert categorize(bf("a", {MAIN: tf()}), REL) is Category.ORPHAN  # judged against the assigned target


def test_staleness_is_told_apart_from_the_category() -> None:
    """An old branch keeps its category (diverged, behind...): staleness is a field of its own."""
    behind = tf(ahead=0, behind=4, in_target=True, first_parent=True)
    facts = [
        bf("old-diverged", {MAIN: tf(ahead=2, behind=4)}, age_days=31),
        bf("old-behind", {MAIN: behind}, age_days=31),
        bf("recent-diverged", {MAIN: tf(ahead=2, behind=4)}, age_days=29),
        bf("recent-behind", {MAIN: behind}, age_days=0),
    ]
    plan = make_plan(facts, [MAIN], stale_days=30, now=NOW)
    assert {b.branch_name: (b.category, b.stale) for b in plan.branches} == {
        "old-diverged": (Category.DIVERGED, True),
        "old-behind": (Category.BEHIND, True),
        "recent-diverged": (Category.DIVERGED, False),
        "recent-behind": (Category.BEHIND, False),
    }
    unlimited = make_plan(facts, [MAIN], stale_days=None, now=NOW)
    assert not any(b.stale for b in unlimited.branches)
    assert [b.category for b in unlimited.branches] == [b.category for b in plan.branches]


# ---- units --------------------------------------------------------------------------


def pb(name: str, cost: int, parent: str | None = None) -> PlannedBranch:
    return PlannedBranch(name, f"refs/heads/{name}", "0" * 40, MAIN, 1.0, Category.DIVERGED, 1, 1, parent, cost=cost)


def test_units_stacks_batches_and_order() -> None:
    planned = [
        pb("big", 50),
        pb("root", 5),
        pb("kid1", 4, "root"),
        pb("kid2", 1, "root"),
        pb("grandkid", 1, "kid2"),
        pb("mid", 12),
        *(pb(f"tiny{i}", i % 3) for i in range(5)),
    ]
    units = build_units(planned, batch_threshold=2, batch_size=3)
    assert [(u.levels, u.cost, u.batch) for u in units] == [
        ([["big"]], 50, False),
        ([["mid"]], 12, False),
        ([["root"], ["kid1", "kid2"], ["grandkid"]], 11, False),
        ([["tiny2", "tiny1", "tiny4"]], 4, True),
        ([["tiny0", "tiny3"]], 0, True),
    ]
    assert units[2].branches == ["root", "kid1", "kid2", "grandkid"]


def test_no_batching_and_lone_small_branches() -> None:
    planned = [pb("a", 0), pb("b", 1), pb("c", 1, "a")]
    assert [(u.levels, u.batch) for u in build_units(planned, batch_size=1)] == [
        ([["a"], ["c"]], False),
        ([["b"]], False),
    ]
    assert [(u.levels, u.batch) for u in build_units(planned)] == [([["a"], ["c"]], False), ([["b"]], False)]


# ---- the whole plan -----------------------------------------------------------------


def test_make_plan_ties_it_together() -> None:
    facts = [
        bf("a", {MAIN: tf(ahead=2, behind=3, paths=["x", "y"]), REL: tf(ahead=6, behind=9, base="r")}),
        bf(
            "b",
            {MAIN: tf(ahead=5, behind=3, paths=["x", "y", "z"]), REL: tf(ahead=9, behind=9, base="r")},
            contains=["a"],
        ),
        bf("old", {MAIN: tf(ahead=0, behind=3, in_target=True, first_parent=True)}),
        bf("gone", {MAIN: tf(ahead=4, behind=3, paths=["q"])}, age_days=100),
        bf("lonely", {MAIN: tf(common=False), REL: tf(common=False)}),
    ]
    plan = make_plan(facts, [MAIN, REL], [("gone", REL)], None, 30, NOW, batch_threshold=0)
    rows = {b.branch_name: (b.assigned_target, b.category, b.parent, b.cost, b.cluster_id) for b in plan.branches}
    assert rows == {
        "a": (MAIN, Category.DIVERGED, None, 4, "c1"),
        "b": (MAIN, Category.DIVERGED, "a", 9, "c1"),
        "old": (MAIN, Category.BEHIND, None, 0, "c4"),
        "gone": (REL, Category.ORPHAN, None, 0, "c2"),  # rules win, even onto a target it shares nothing with
        "lonely": (MAIN, Category.ORPHAN, None, 1, "c3"),
    }
    assert plan.branch("gone").tags == ["target-from-rule"] and plan.branch("gone").confidence == 1.0
    assert [(u.levels, u.batch) for u in plan.units] == [
        ([["a"], ["b"]], False),
        ([["lonely"]], False),
        ([["gone", "old"]], True),
    ]
    assert plan.targets == [MAIN, REL] and plan.branch("a").confidence == 0.833
    with pytest.raises(KeyError):
        plan.branch("nope")


def test_duplicate_branch_names_are_refused() -> None:
    with pytest.raises(InputError, match="share a name"):
        make_plan([bf("a"), bf("a")], [MAIN])


def test_units_refuse_a_cycle_that_slipped_through() -> None:
    with pytest.raises(InputError, match="dependency cycle among a, b"):
        build_units([pb("a", 1, "b"), pb("b", 1, "a"), pb("c", 1)])
