"""`palign conflicts`: which branches of one target conflict with each other.

A `git merge` of every pair of branches that change a common file (or a file where the
other has a directory), merged in memory by git, in parallel over the local pool. Pairs
with nothing in common are not merged; pairs whose histories are unrelated are not
merged either (git refuses to), and are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from palign.engine.ort import merge_commits_by_sha
from palign.engine.repository import open_repository, touched_since_fork
from palign.errors import InputError, UnrelatedHistories
from palign.executor.local import map_local
from palign.model import short_name
from palign.planner.clusters import components
from palign.prepare import Prepared, RunOptions, prepare
from palign.settings import Settings

Pair = tuple[str, str, str, str]  # left name, left sha, right name, right sha


@dataclass
class ConflictMap:
    target: str
    branches: list[str]
    pairs: list[dict[str, Any]]  # every pair that conflicts: left, right, paths
    checked: int  # pairs merged (those touching a common path)
    groups: list[list[str]]  # branches linked by conflicts, largest first
    unrelated: int = 0  # pairs sharing paths but no history: not mergeable

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "branches": self.branches,
            "pairs_checked": self.checked,
            "pairs_unrelated": self.unrelated,
            "groups": self.groups,
            "conflicts": self.pairs,
        }


def find_conflicts(options: RunOptions, settings: Settings) -> ConflictMap:
    if len(options.targets) != 1:
        raise InputError("palign conflicts looks at one target at a time: give one --onto")
    prepared = prepare(options, settings)
    target = next(iter(prepared.targets))
    shas = {b.branch_name: b.sha for b in prepared.plan.branches}
    names = sorted(shas)
    pairs = [(a, shas[a], b, shas[b]) for a, b in _candidates(names, _touched_files(prepared, target))]
    size = max(1, min(64, len(pairs) // (options.workers * 4) or 1))
    chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    merged = map_local(merge_pairs, (str(prepared.mirror.path),), chunks, workers=options.workers) if chunks else []
    conflicting = sorted(
        ({"left": left, "right": right, "conflict": True, "paths": paths} for left, right, state, paths in merged
         if state == "conflict"),
        key=lambda pair: (pair["left"], pair["right"]),
    )  # fmt: skip
    unrelated = sum(1 for _, _, state, _ in merged if state == "unrelated")
    groups = components([(pair["left"], pair["right"]) for pair in conflicting])
    return ConflictMap(short_name(target), names, conflicting, len(pairs), groups, unrelated)


def _touched_files(prepared: Prepared, target: str) -> dict[str, set[str]]:
    """Paths each branch changed since its merge base with the target."""
    repo = open_repository(str(prepared.mirror.path))
    return {b.branch_name: touched_since_fork(repo, b.sha, prepared.targets[target]) for b in prepared.plan.branches}


def _candidates(names: list[str], files: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of branches where one changes a path the other changes too, or a path
    inside a directory the other changes a file as (git merges those with care)."""
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


def merge_pairs(git_dir: str, pairs: list[Pair]) -> list[tuple[str, str, str, list[str]]]:
    """What `git merge` makes of each pair: (left, right, "clean" | "conflict" |
    "unrelated", conflicting paths). One task's worth of `palign conflicts`, in a pool
    process."""
    repo = open_repository(git_dir)
    out: list[tuple[str, str, str, list[str]]] = []
    for left_name, left, right_name, right in pairs:
        try:
            outcome = merge_commits_by_sha(repo, ours=left, theirs=right)
        except UnrelatedHistories:
            out.append((left_name, right_name, "unrelated", []))
            continue
        state = "clean" if outcome.tree is not None else "conflict"
        out.append((left_name, right_name, state, list(outcome.conflicted_paths)))
    return out
