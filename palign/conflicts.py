"""`palign conflicts`: which branches of one target conflict with each other.

Two steps, each a batch of git merges (merge-ort, in memory) over the local pool:

1. Each branch is merged into the target by itself, as `git merge` would: its result
   tree, or the paths where it conflicts with the target alone. Those branches are
   listed apart (`conflicts_with_target`): no other branch has a part in their conflicts.
2. Each pair of branches that change a common file (or a file where the other has a
   directory) is merged on top of the target: a three-way merge at the target's tree of
   the two result trees, that is the target with both branches merged, each as git
   merged it alone. The pair is blamed for the paths that conflict there, except those
   where either branch conflicts with the target alone: what such a path will hold is
   not known until that conflict is resolved (that branch's result tree holds git's
   conflict markers there), so it is that branch's problem, not the pair's. Every other
   path of a result tree is exactly what git merged, so a pair is reported only for
   conflicts the two branches cause together.

Pairs with nothing in common are not merged. A branch that shares no history with the
target cannot be merged into it (git refuses to): it is listed, and its pairs counted
apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from palign.engine.ort import merge_commits_by_sha, merge_trees_by_sha, without_side_label
from palign.engine.repository import open_repository, touched_since_fork, tree_of
from palign.errors import InputError, UnrelatedHistories
from palign.executor.local import map_local
from palign.model import short_name
from palign.planner.clusters import components
from palign.prepare import Prepared, RunOptions, prepare
from palign.settings import Settings


@dataclass(frozen=True)
class OnTarget:
    """What merging one branch into the target by itself makes."""

    branch: str
    related: bool  # False: no history in common with the target, git refuses the merge
    tree: str | None  # the result tree (git's conflict markers included where it conflicts)
    conflicts: tuple[str, ...]  # paths where it conflicts with the target alone


@dataclass
class ConflictMap:
    target: str
    branches: list[str]
    pairs: list[dict[str, Any]]  # every pair whose two branches conflict together: left, right, paths
    checked: int  # pairs touching a common path
    groups: list[list[str]]  # branches linked by pair conflicts, largest first
    unrelated: int = 0  # of those pairs, the ones with a branch that shares no history with the target
    with_target: list[dict[str, Any]] = field(default_factory=list)  # branch, paths: conflicts by itself
    unrelated_branches: list[str] = field(default_factory=list)  # no history in common with the target

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "branches": self.branches,
            "pairs_checked": self.checked,
            "pairs_unrelated": self.unrelated,
            "groups": self.groups,
            "conflicts": self.pairs,
            "conflicts_with_target": self.with_target,
            "unrelated_to_target": self.unrelated_branches,
        }


def find_conflicts(options: RunOptions, settings: Settings) -> ConflictMap:
    if len(options.targets) != 1:
        raise InputError("palign conflicts looks at one target at a time: give one --onto")
    prepared = prepare(options, settings)
    target = next(iter(prepared.targets))
    target_sha = prepared.targets[target]
    fixed = (str(prepared.mirror.path), target_sha)
    shas = {b.branch_name: b.sha for b in prepared.plan.branches}
    names = sorted(shas)
    alone: dict[str, OnTarget] = {
        outcome.branch: outcome
        for outcome in _parallel(merge_into_target, fixed, [(name, shas[name]) for name in names], options.workers)
    }
    candidates = _candidates(names, _touched_files(prepared, target))
    mergeable = [(alone[a], alone[b]) for a, b in candidates if alone[a].related and alone[b].related]
    merged = _parallel(merge_pairs, fixed, mergeable, options.workers)
    conflicting = sorted(
        ({"left": left, "right": right, "conflict": True, "paths": paths} for left, right, paths in merged if paths),
        key=lambda pair: (pair["left"], pair["right"]),
    )
    groups = components([(pair["left"], pair["right"]) for pair in conflicting])
    return ConflictMap(
        short_name(target),
        names,
        conflicting,
        len(candidates),
        groups,
        unrelated=len(candidates) - len(mergeable),
        with_target=[{"branch": name, "paths": list(alone[name].conflicts)} for name in names if alone[name].conflicts],
        unrelated_branches=[name for name in names if not alone[name].related],
    )


def _parallel(
    function: Callable[..., list[Any]], fixed: tuple[Any, ...], items: Sequence[Any], workers: int
) -> list[Any]:
    """`function(*fixed, chunk)` over chunks of `items` on the local pool: a few chunks per
    worker, so that a slow chunk does not hold the others up."""
    size = max(1, min(64, len(items) // (workers * 4)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    return map_local(function, fixed, chunks, workers=workers) if chunks else []


def _touched_files(prepared: Prepared, target: str) -> dict[str, set[str]]:
    """Paths each branch changed since its merge base with the target."""
    repo = open_repository(str(prepared.mirror.path))
    return {b.branch_name: touched_since_fork(repo, b.sha, prepared.targets[target]) for b in prepared.plan.branches}


def _candidates(names: list[str], files: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of branches where one changes a path the other changes too, or a path
    inside a directory the other changes a file as (git merges those with care). Two
    branches can only conflict together on top of the target where both changed it."""
    by_file: dict[str, set[str]] = {}
    by_dir: dict[str, set[str]] = {}
    for name in names:
        for path in files[name]:
            by_file.setdefault(path, set()).add(name)
            parts = path.split("/")
            for depth in range(1, len(parts)):
                by_dir.setdefault("/".join(parts[:depth]), set()).add(name)
    return sorted(
        {
            (min(name, other), max(name, other))
            for name in names
            for path in files[name]
            for other in by_file.get(path, set()) | by_dir.get(path, set())
            if other != name
        }
    )


def merge_into_target(git_dir: str, target: str, branches: list[tuple[str, str]]) -> list[OnTarget]:
    """What `git merge` of each (name, sha) into the target makes. One task's worth of
    `palign conflicts`' first step, in a pool process."""
    repo = open_repository(git_dir)
    out: list[OnTarget] = []
    for name, sha in branches:
        try:
            outcome = merge_commits_by_sha(repo, ours=target, theirs=sha)
        except UnrelatedHistories:
            out.append(OnTarget(name, related=False, tree=None, conflicts=()))
            continue
        tree = outcome.tree if outcome.tree is not None else outcome.conflicted_tree
        paths = tuple(dict.fromkeys(without_side_label(path, (target, sha)) for path in outcome.conflicted_paths))
        out.append(OnTarget(name, related=True, tree=str(tree), conflicts=paths))
    return out


def merge_pairs(git_dir: str, target: str, pairs: list[tuple[OnTarget, OnTarget]]) -> list[tuple[str, str, list[str]]]:
    """(left, right, the paths the two conflict in together: none when they merge) for
    each pair of branches merged into the target by themselves. One task's worth of
    `palign conflicts`' second step, in a pool process."""
    repo = open_repository(git_dir)
    base = tree_of(repo, target)
    out: list[tuple[str, str, list[str]]] = []
    for left, right in pairs:
        if left.tree is None or right.tree is None or base in (left.tree, right.tree):
            out.append((left.branch, right.branch, []))  # one of them adds nothing to the target
            continue
        outcome = merge_trees_by_sha(repo, base=base, ours=left.tree, theirs=right.tree)
        on_their_own = set(left.conflicts) | set(right.conflicts)
        out.append((left.branch, right.branch, [p for p in outcome.conflicted_paths if p not in on_their_own]))
    return out
