"""The planner's vocabulary: facts gathered from git, and the plan made from them.

Plain frozen data and no I/O, so the planning functions stay pure and testable without a
repository, and a plan can travel as JSON (plan files, later the Celery canvas).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Category(str, Enum):
    """What a branch needs relative to its target (see `plan.categorize` for precedence).
    How long it has gone without a commit is another matter: `PlannedBranch.stale`."""

    UP_TO_DATE = "up_to_date"  # contains the target's tip: nothing to do
    BEHIND = "behind"  # an old commit of the target's first-parent line: fast-forwardable
    DIVERGED = "diverged"  # own commits and missing target commits: needs aligning
    MERGED = "merged"  # its changes are already in the target (ancestry or patch-id)
    ORPHAN = "orphan"  # no common history with its target


@dataclass(frozen=True)
class TargetFacts:
    """One branch seen from one target.

    `touched_paths` are the paths changed between the merge base and the branch tip
    (what the branch would bring to that target); `merge_base` lets the planner tell a
    real preference from two targets that merely moved on by different amounts since
    the same fork point.
    """

    ahead: int  # branch commits not in the target
    behind: int  # target commits not in the branch
    has_common_history: bool
    merged_by_ancestry: bool  # the branch tip is reachable from the target
    on_first_parent_chain: bool  # ... and lies on the target's first-parent history
    merged_by_patch_id: bool  # every own commit's patch is already in the target
    merge_base: str | None = None
    touched_paths: frozenset[str] = frozenset()


NO_HISTORY = TargetFacts(
    ahead=0,
    behind=0,
    has_common_history=False,
    merged_by_ancestry=False,
    on_first_parent_chain=False,
    merged_by_patch_id=False,
)


@dataclass(frozen=True)
class BranchFacts:
    """Everything the planner knows about one selected branch.

    `contains` holds the refnames of other selected branches whose tips are strict
    ancestors of this tip. It is gathered from the branch's own commits relative to each
    target (`TARGET..BRANCH`), so a tip already in *every* target it shares history with
    is left out: such a branch is merged, and never a stack parent.

    `held_by` names the long-lived branches (`[plan] long_lived`, other than this branch
    and the targets) whose history already holds this tip: a pull request merged into a
    maintenance branch, say. Its work is then part of a base other branches share, and
    it is never a stack parent either (see `plan.infer_dependencies`).
    """

    refname: str
    name: str
    sha: str
    targets: Mapping[str, TargetFacts]
    last_commit_time: int  # committer time of the tip, seconds since the epoch
    contains: frozenset[str] = frozenset()
    held_by: frozenset[str] = frozenset()

    def on(self, target: str) -> TargetFacts:
        """Facts against `target`; a target never inspected counts as unrelated."""
        return self.targets.get(target, NO_HISTORY)


@dataclass(frozen=True)
class Assignment:
    """The target a branch goes to, how sure the planner is, and why."""

    target: str
    confidence: float
    source: str  # "inferred" | "rule" | "pinned" | "stack" | "orphan" | "machete" | "upstream"


@dataclass(frozen=True)
class DeclaredBase:
    """A base the repository itself records for a branch: its parent in a git-machete
    layout (`source` "machete") or its git upstream ("upstream"). `name` is a ref named as
    the planner names targets and branches (`feature/x`, `refs/remotes/origin/main`); the
    planner decides whether it is a target, a selected branch or neither."""

    name: str
    source: str


@dataclass(frozen=True)
class PlannedBranch:
    branch_name: str
    refname: str
    sha: str
    assigned_target: str
    confidence: float
    category: Category
    ahead: int
    behind: int
    parent: str | None = None
    cluster_id: str = ""
    tags: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    cost: int = 0
    forecast: str | None = None  # filled by the caller (dry run), never by the planner
    # Why this target (an `Assignment.source`), for display: a plan file read back pins
    # the same decisions, so two plans differing only in it are the same plan.
    target_source: str = field(default="inferred", compare=False)
    stale: bool = False  # no commit for longer than the stale limit, whatever its category


@dataclass(frozen=True)
class Unit:
    """One independent piece of work.

    `levels[i]` may run in parallel once every branch of `levels[i-1]` is done: a single
    branch is `[[a]]`, a linear stack `[[a], [b], [c]]`, a tree stack `[[a], [b, c]]`.
    A batch (`batch=True`) is one level of small independent branches run as one task.
    """

    levels: list[list[str]]
    cost: int
    batch: bool = False

    @property
    def branches(self) -> list[str]:
        return [name for level in self.levels for name in level]


@dataclass(frozen=True)
class LeftOut:
    """A branch the default selection (no --branch) left alone, and why: `long_lived` (its
    name matches `detail`, a `[plan] long_lived` glob) or `base` (other selected branches
    fork at its tip and it has no commits of its own against `detail`, a target)."""

    branch_name: str
    reason: str  # "long_lived" | "base"
    detail: str


@dataclass(frozen=True)
class Plan:
    targets: list[str]
    branches: list[PlannedBranch]
    units: list[Unit]
    left_out: list[LeftOut] = field(default_factory=list)  # filled by the caller, which selects

    def branch(self, name: str) -> PlannedBranch:
        for planned in self.branches:
            if planned.branch_name == name:
                return planned
        raise KeyError(name)


@dataclass(frozen=True)
class PlanEntry:
    """One branch of a plan file, validated; `extra` keeps the keys palign does not use
    so that a file written by another tool survives a round trip."""

    branch_name: str
    assigned_target: str
    confidence: float
    tags: list[str]
    cluster_id: str
    depends_on: list[str] | None = None  # None: not given, infer; []: explicitly none
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = 0  # where the entry starts in the plan file, for later error messages
