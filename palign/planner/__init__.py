"""The planner: what each branch targets, what it is stacked on, what state it is in, and
in what order the work runs. Pure: it decides from the facts `palign.engine.facts`
gathers from git, and never loads pygit2 itself."""

from __future__ import annotations

from palign.planner.model import (
    Assignment,
    BranchFacts,
    Category,
    Plan,
    PlanEntry,
    PlannedBranch,
    TargetFacts,
    Unit,
)
from palign.planner.plan import (
    assign_targets,
    build_units,
    categorize,
    cluster,
    follow_roots,
    infer_dependencies,
    make_plan,
)
from palign.planner.planfile import read_plan, read_plan_file, write_plan

__all__ = [
    "Assignment",
    "BranchFacts",
    "Category",
    "Plan",
    "PlanEntry",
    "PlannedBranch",
    "TargetFacts",
    "Unit",
    "assign_targets",
    "build_units",
    "categorize",
    "cluster",
    "follow_roots",
    "infer_dependencies",
    "make_plan",
    "read_plan",
    "read_plan_file",
    "write_plan",
]
