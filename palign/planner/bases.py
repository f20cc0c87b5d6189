"""Bases a repository declares for its branches (a git-machete layout, git upstreams),
weighed against the run: a declared base counts only when it names a target of the run
(the branch's target) or another selected branch (its stack parent). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from palign.planner.model import Assignment, BranchFacts, DeclaredBase

DeclaredBases = Mapping[str, Sequence[DeclaredBase]]  # branch -> its bases, most trusted first


def _closes_cycle(parents: Mapping[str, str | None], child: str, parent: str) -> bool:
    node: str | None = parent
    seen: set[str] = set()
    while node is not None and node not in seen:
        if node == child:
            return True
        seen.add(node)
        node = parents.get(node)
    return False


def resolve_bases(
    bases: DeclaredBases,
    facts: Sequence[BranchFacts],
    targets: Sequence[str],
    fixed_parents: Mapping[str, str | None],
) -> tuple[dict[str, Assignment], dict[str, str | None]]:
    """Declared targets and stack parents, by branch: each branch takes its first base
    that names a target or another selected branch; the others are ignored (a branch
    tracking its own copy on a remote, a layout naming branches this run left out).

    A base naming a branch is skipped when `fixed_parents` (palign.toml, a plan file)
    already settle the branch's parent, when that branch already contains this one (it
    was merged there: the record is stale), or when it would close a cycle. A branch
    under a target in a git-machete layout is stacked on nothing: a layout draws the
    whole tree. An upstream names only a target, and stacking is still inferred.
    """
    by_name = {branch.name: branch for branch in facts}
    parents: dict[str, str | None] = dict(fixed_parents)
    declared_targets: dict[str, Assignment] = {}
    declared_parents: dict[str, str | None] = {}
    for name in sorted(by_name):
        for base in bases.get(name, ()):
            if base.name in targets:
                declared_targets[name] = Assignment(base.name, 1.0, base.source)
                if base.source == "machete" and name not in fixed_parents:
                    declared_parents[name] = parents[name] = None
                break
            parent = by_name.get(base.name)
            if (
                parent is None
                or parent.name == name
                or name in fixed_parents
                or by_name[name].refname in parent.contains
                or _closes_cycle(parents, name, parent.name)
            ):
                continue
            declared_parents[name] = parents[name] = parent.name
            break
    return declared_targets, declared_parents
