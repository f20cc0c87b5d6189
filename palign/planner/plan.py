"""Planning: targets, stacks, categories, clusters and units of work, from facts alone.

Pure functions (no git, no clock, no I/O): `inspect.gather_facts` reads the repository,
these decide. Every function is deterministic, so the same facts give the same plan.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from palign.errors import InputError
from palign.model import short_name
from palign.planner.bases import DeclaredBases, resolve_bases
from palign.planner.clusters import cluster
from palign.planner.model import Assignment, BranchFacts, Category, Plan, PlanEntry, PlannedBranch, Unit

__all__ = [
    "assign_targets",
    "build_units",
    "categorize",
    "cluster",
    "follow_roots",
    "in_shared_base",
    "infer_dependencies",
    "is_stale",
    "make_plan",
]

Rules = Sequence[tuple[str, str]]  # (glob on the branch's short name, target), first match wins
DAY = 86_400


def _rule_target(name: str, rules: Rules, targets: Sequence[str]) -> str | None:
    """First rule matching `name` whose target is part of this run. A rule may name a
    target by its full ref or its short name; rules for other targets are skipped
    (palign.toml is shared by runs with different --onto)."""
    for glob, wanted in rules:
        if fnmatch.fnmatchcase(name, glob):
            for target in targets:
                if wanted in (target, short_name(target)):
                    return target
    return None


def _inferred(facts: BranchFacts, targets: Sequence[str]) -> Assignment:
    """The target against which the branch's own change is smallest: fewest commits of
    its own (`TARGET..BRANCH`, what a pull request page lists as its commits).

    How far a target has moved on since says nothing of where a branch came from: a
    branch forked from main long ago misses fewer commits of a release branch cut later,
    yet carries no more of its own against main. Ties (the branch forked before the
    targets parted) go to the first target given, with confidence 0.5: really tied.
    Otherwise confidence grows with the margin to the runner-up, and is 1.0 for a branch
    built on the best target's tip (not behind it at all).
    """
    candidates = sorted((facts.on(t).ahead, i, t) for i, t in enumerate(targets) if facts.on(t).has_common_history)
    if not candidates:
        return Assignment(targets[0], 0.0, "orphan")
    if len(candidates) == 1:
        return Assignment(candidates[0][2], 1.0, "inferred")
    (best_ahead, _, best), (runner_ahead, _, _) = candidates[0], candidates[1]
    if runner_ahead == best_ahead:
        return Assignment(best, 0.5, "inferred")
    if facts.on(best).behind == 0:
        return Assignment(best, 1.0, "inferred")
    return Assignment(best, round(0.5 + 0.5 * (runner_ahead - best_ahead) / runner_ahead, 3), "inferred")


def follow_roots(assignments: Mapping[str, Assignment], parents: Mapping[str, str | None]) -> dict[str, Assignment]:
    """Stacked branches take their root's target: a child is replayed onto its parent's
    aligned commit, so it can only land where the root lands. `parents` must be acyclic."""
    followed = dict(assignments)
    for name in assignments:
        root = name
        while (parent := parents.get(root)) is not None:
            root = parent
        if root != name:
            rooted = assignments[root]
            followed[name] = Assignment(rooted.target, rooted.confidence, "stack")
    return followed


def assign_targets(
    facts: Sequence[BranchFacts],
    targets: Sequence[str],
    rules: Rules = (),
    *,
    parents: Mapping[str, str | None] | None = None,
    pinned: Mapping[str, Assignment] | None = None,
    declared: Mapping[str, Assignment] | None = None,
) -> dict[str, Assignment]:
    """Target of every branch (by short name): pinned (a plan file) > rules > declared
    (by the repository: `bases.resolve_bases`) > inference, then, when `parents` are
    given, stacked children follow their root."""
    if not targets:
        raise InputError("give at least one target")
    pinned = pinned or {}
    declared = declared or {}
    assignments: dict[str, Assignment] = {}
    for branch in facts:
        if branch.name in pinned:
            assignments[branch.name] = pinned[branch.name]
        elif (ruled := _rule_target(branch.name, rules, targets)) is not None:
            assignments[branch.name] = Assignment(ruled, 1.0, "rule")
        elif branch.name in declared:
            assignments[branch.name] = declared[branch.name]
        else:
            assignments[branch.name] = _inferred(branch, targets)
    return follow_roots(assignments, parents) if parents else assignments


def _cycle_check(parents: Mapping[str, str | None]) -> None:
    """Raise an InputError naming the first cycle found (`a -> b -> a`, smallest first)."""
    done: set[str] = set()
    for start in sorted(parents):
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in done:
            if node in path:
                cycle = path[path.index(node) :]
                first = cycle.index(min(cycle))
                cycle = cycle[first:] + cycle[:first]
                raise InputError("dependency cycle: " + " -> ".join([*cycle, cycle[0]]))
            path.append(node)
            node = parents.get(node)
        done.update(path)


def in_shared_base(branch: BranchFacts) -> bool:
    """Whether the branch's tip is already part of a base other branches share: some target
    or some long-lived branch (other than itself) holds it."""
    return bool(branch.held_by) or any(seen.merged_by_ancestry for seen in branch.targets.values())


def infer_dependencies(
    facts: Sequence[BranchFacts],
    declared: Mapping[str, str | None] | None = None,
) -> dict[str, str | None]:
    """The parent of every branch (None: not stacked), by short name.

    B is stacked on A when A's tip is one of B's own commits (reachable from B, not from a
    target: `BranchFacts.contains`) and A's work is not already part of a shared base:
    no target and no long-lived branch holds A's tip (`in_shared_base`). Among several such A,
    the deepest one (containing the most of the others; ties by name).

    Why the long-lived branches: a real stack and a shared base are the same graph.
    Backports p1 and p2 of maintenance branch 1.x, p2 branched from 1.x after 1.x merged
    p1: p2's history holds p1's tip, through 1.x's merge of p1. B built on A's tip, then
    merging A once A gained commits: B's history holds A's tip, through B's merge of A.
    Only where the merge is tells them apart: in a branch that lives on (1.x, a target),
    p1 is already in the base p2 shares with everyone built on 1.x, and aligning p2 onto
    p1 would make p2 wait for (and be blocked by) an unrelated change. The same holds for
    a tip merged into any target, even one that is not this branch's: its commits are
    upstream of the base, not a lower level of a stack.

    Declared dependencies (child -> parent, or None for "no parent") override inference
    for that child; entries for branches that are not selected are ignored.
    """
    declared = declared or {}
    by_ref = {branch.refname: branch for branch in facts}
    names = {branch.name for branch in facts}
    parents: dict[str, str | None] = {}
    for branch in sorted(facts, key=lambda b: b.name):
        if branch.name in declared:
            parent = declared[branch.name]
            if parent is not None and parent not in names:
                raise InputError(f"branch {branch.name!r} depends on {parent!r}, which is not a selected branch")
            parents[branch.name] = parent
            continue
        candidates = sorted(
            (by_ref[ref] for ref in branch.contains if ref in by_ref and not in_shared_base(by_ref[ref])),
            key=lambda b: b.name,
        )
        refs = {c.refname for c in candidates}
        nearest = max(candidates, key=lambda c: len(c.contains & refs), default=None)
        parents[branch.name] = nearest.name if nearest is not None else None
    _cycle_check(parents)
    return parents


def categorize(facts: BranchFacts, target: str) -> Category:
    """Precedence: orphan > up_to_date > behind > merged > diverged.

    `behind` is a tip on the target's first-parent line (a plain fast-forward); any
    other tip reachable from the target was merged into it. Orphan is judged against
    the assigned target, the one the branch would be aligned onto.
    """
    seen = facts.on(target)
    if not seen.has_common_history:
        return Category.ORPHAN
    if seen.behind == 0:
        return Category.UP_TO_DATE
    if seen.ahead == 0:
        return Category.BEHIND if seen.on_first_parent_chain else Category.MERGED
    if seen.merged_by_patch_id:
        return Category.MERGED
    return Category.DIVERGED


def is_stale(facts: BranchFacts, stale_days: int | None, now: float) -> bool:
    """No commit on the branch for longer than `stale_days` (None: no limit). Told apart
    from the category, so an old branch still says whether it is behind or diverged."""
    return stale_days is not None and now - facts.last_commit_time > stale_days * DAY


def build_units(planned: Sequence[PlannedBranch], batch_threshold: int = 2, batch_size: int = 8) -> list[Unit]:
    """Units of work, largest total cost first (ties by first branch name).

    A stack becomes one unit whose levels are its generations (root, children,
    grandchildren...); an independent branch with cost <= `batch_threshold` is batched
    with up to `batch_size - 1` others to save per-task overhead.
    """
    known = {b.branch_name: b for b in planned}
    children: dict[str, list[str]] = {}
    for branch in planned:
        if branch.parent is not None and branch.parent in known:
            children.setdefault(branch.parent, []).append(branch.branch_name)
    units: list[Unit] = []
    small: list[PlannedBranch] = []
    for branch in sorted(planned, key=lambda b: b.branch_name):
        if branch.parent is not None and branch.parent in known:
            continue
        if branch.branch_name not in children:
            if batch_size > 1 and branch.cost <= batch_threshold:
                small.append(branch)
            else:
                units.append(Unit([[branch.branch_name]], branch.cost))
            continue
        levels, level = [], [branch.branch_name]
        while level:
            levels.append(level)
            level = sorted(child for name in level for child in children.get(name, []))
        units.append(Unit(levels, sum(known[name].cost for level in levels for name in level)))
    small.sort(key=lambda b: (-b.cost, b.branch_name))
    for start in range(0, len(small), max(batch_size, 1)):
        chunk = small[start : start + batch_size]
        names = [b.branch_name for b in chunk]
        units.append(Unit([names], sum(b.cost for b in chunk), batch=len(chunk) > 1))
    unplaced = known.keys() - {name for unit in units for name in unit.branches}
    if unplaced:  # only a cycle leaves branches without a root
        raise InputError(f"dependency cycle among {', '.join(sorted(unplaced))}")
    return sorted(units, key=lambda u: (-u.cost, u.levels[0][0]))


def _cost(facts: BranchFacts, target: str, category: Category, parent: BranchFacts | None) -> int:
    """Commits to replay x paths they change; a stacked child replays only its own."""
    if category in (Category.UP_TO_DATE, Category.BEHIND):
        return 0
    seen = facts.on(target)
    commits = seen.ahead - (parent.on(target).ahead if parent is not None else 0)
    return max(commits, 1 if seen.ahead else 0) * max(len(seen.touched_paths), 1)


def _tags(assignment: Assignment, parent: str | None, has_children: bool) -> list[str]:
    """Structural tags only, derived from the plan itself, so a plan file read back and
    planned again gets the same tags."""
    tagged = ("rule", "stack", "machete", "upstream")
    tags = [f"target-from-{assignment.source}"] if assignment.source in tagged else []
    if parent is not None:
        tags.append("stacked")
    if has_children:
        tags.append("stack-root" if parent is None else "stack-parent")
    return tags


def make_plan(
    facts: Sequence[BranchFacts],
    targets: Sequence[str],
    rules: Rules = (),
    declared: Mapping[str, str | None] | None = None,
    stale_days: int | None = None,
    now: float = 0.0,
    *,
    entries: Sequence[PlanEntry] = (),
    bases: DeclaredBases | None = None,
    cluster_threshold: float = 0.2,
    batch_threshold: int = 2,
    batch_size: int = 8,
) -> Plan:
    """The whole plan. `entries` (a plan file) pin targets, confidences and tags, and
    their `depends_on` count as declared dependencies (over `declared`, palign.toml's);
    `bases` (the repository's own records) come next, before inference."""
    declared = dict(declared or {})
    by_name = {b.name: b for b in facts}
    if len(by_name) != len(facts):
        raise InputError("two selected branches share a name")
    pinned: dict[str, Assignment] = {}
    for entry in entries:
        if entry.branch_name not in by_name:
            raise InputError(f"plan file line {entry.line}: {entry.branch_name!r} is not a selected branch")
        if entry.assigned_target not in targets:
            raise InputError(
                f"plan file line {entry.line}: {entry.branch_name!r} is assigned to {entry.assigned_target!r},"
                f" which is not a target of this run"
            )
        pinned[entry.branch_name] = Assignment(entry.assigned_target, entry.confidence, "pinned")
        if entry.depends_on is not None:
            declared[entry.branch_name] = entry.depends_on[0] if entry.depends_on else None
    based_targets, based_parents = resolve_bases(bases or {}, facts, targets, declared)
    declared = {**based_parents, **declared}
    first = assign_targets(facts, targets, rules, pinned=pinned, declared=based_targets)
    parents = infer_dependencies(facts, declared)
    assigned = follow_roots(first, parents)
    clusters = cluster({b.name: b.on(assigned[b.name].target).touched_paths for b in facts}, cluster_threshold)
    extra_tags = {entry.branch_name: entry.tags for entry in entries}
    with_children = set(parents.values())
    planned = []
    for branch in facts:
        assignment = assigned[branch.name]
        seen = branch.on(assignment.target)
        category = categorize(branch, assignment.target)
        parent = parents[branch.name]
        structural = _tags(assignment, parent, branch.name in with_children)
        tags = list(dict.fromkeys([*extra_tags.get(branch.name, []), *structural]))
        planned.append(
            PlannedBranch(
                branch_name=branch.name,
                refname=branch.refname,
                sha=branch.sha,
                assigned_target=assignment.target,
                confidence=assignment.confidence,
                category=category,
                ahead=seen.ahead,
                behind=seen.behind,
                parent=parent,
                cluster_id=clusters[branch.name],
                tags=tags,
                depends_on=[parent] if parent is not None else [],
                cost=_cost(branch, assignment.target, category, by_name[parent] if parent is not None else None),
                target_source=assignment.source,
                stale=is_stale(branch, stale_days, now),
            )
        )
    return Plan(list(targets), planned, build_units(planned, batch_threshold, batch_size))
