"""The domain vocabulary: shas, refs, strategies, statuses and per-branch results.

Plain data, no I/O: the same objects travel through the local process pool and,
as JSON, through Celery.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, NewType

Sha = NewType("Sha", str)

_SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

BRANCH_PREFIX = "refs/heads/"
PALIGN_NAMESPACE = "refs/palign/"


def sha(value: str) -> Sha:
    """Validate a full hexadecimal object id."""
    if not _SHA_RE.match(value):
        raise ValueError(f"not a full object id: {value!r}")
    return Sha(value)


def short_name(refname: str) -> str:
    """`refs/heads/feature/x` -> `feature/x`; other refs keep their full name."""
    return refname[len(BRANCH_PREFIX) :] if refname.startswith(BRANCH_PREFIX) else refname


def backup_ref(run_id: str, branch: str) -> str:
    return f"{PALIGN_NAMESPACE}backup/{run_id}/{branch}"


def staged_ref(run_id: str, branch: str) -> str:
    return f"{PALIGN_NAMESPACE}staged/{run_id}/{branch}"


def pending_ref(run_id: str, branch: str) -> str:
    """An aligned result waiting for its checks (distributed runs); staged once they pass."""
    return f"{PALIGN_NAMESPACE}pending/{run_id}/{branch}"


def applied_ref(run_id: str, branch: str) -> str:
    """Marks a branch a run moved, so `rollback` knows exactly what to undo."""
    return f"{PALIGN_NAMESPACE}applied/{run_id}/{branch}"


class Strategy(str, Enum):
    REBASE = "rebase"
    MERGE = "merge"
    AUTO = "auto"


class Status(str, Enum):
    ALIGNED = "aligned"
    UP_TO_DATE = "up_to_date"
    MERGED = "merged"
    CONFLICT = "conflict"
    ERROR = "error"
    STALE = "stale"
    BLOCKED = "blocked"  # stacked on a branch that did not align
    CANCELLED = "cancelled"  # the run was cancelled before this branch was aligned
    SKIPPED = "skipped"  # the run's circuit breaker stopped it before this branch
    FAILED_VALIDATION = "failed_validation"  # aligned, but an operator's check failed on the result

    @property
    def counts_as_failure(self) -> bool:
        """What the circuit breaker counts: outcomes that say something is wrong with the
        run, not consequences of another branch's outcome (blocked) or of a stop."""
        return self in (Status.CONFLICT, Status.ERROR, Status.FAILED_VALIDATION)

    @property
    def successful(self) -> bool:
        return self in (Status.ALIGNED, Status.UP_TO_DATE, Status.MERGED)


@dataclass(frozen=True)
class Conflict:
    path: str
    commit: Sha


@dataclass(frozen=True)
class AlignRequest:
    """One branch to align: everything a worker needs, as plain data."""

    refname: str
    old_sha: Sha
    target: str
    target_sha: Sha
    strategy: Strategy
    cost: int = 0
    ahead: int = -1  # commits of the branch not in the target; -1 when not known
    behind: int = -1  # commits of the target not in the branch
    parent: str | None = None  # refname of the branch this one is stacked on
    parent_old: Sha | None = None  # that branch's tip when planned
    onto: Sha | None = None  # that branch's aligned tip: where this one is replayed
    forecast: bool = False  # only the outcome is wanted: skip writing what a clean outcome proves

    @property
    def branch(self) -> str:
        return short_name(self.refname)


@dataclass
class BranchResult:
    branch_name: str
    refname: str
    target: str
    status: Status
    old_sha: Sha
    new_sha: Sha | None
    strategy_used: Strategy | None = None
    commits_replayed: int = 0
    commits_skipped: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    errors_detected: list[str] = field(default_factory=list)
    error_message: str | None = None
    integration_time_seconds: float = 0.0
    slow_merges: int = 0
    applied: bool = False
    validation: dict[str, Any] | None = None  # the checks run on the result (see palign.validation)
    change_summary: dict[str, Any] | None = None  # own commits, files both sides changed (palign.summary)
    replayed_commits: list[str] = field(default_factory=list)  # original ids of the commits a rebase replayed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["strategy_used"] = self.strategy_used.value if self.strategy_used else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BranchResult:
        fields = dict(data)
        fields["status"] = Status(fields["status"])
        fields["strategy_used"] = Strategy(fields["strategy_used"]) if fields.get("strategy_used") else None
        fields["conflicts"] = [Conflict(path=c["path"], commit=Sha(c["commit"])) for c in fields.get("conflicts", [])]
        return cls(**fields)


def unaligned(refname: str, target: str, old_sha: Sha, status: Status, detected: str, message: str) -> BranchResult:
    """The result of a branch left as it was (blocked, cancelled, skipped, lost, failed)."""
    return BranchResult(
        branch_name=short_name(refname),
        refname=refname,
        target=target,
        status=status,
        old_sha=old_sha,
        new_sha=None,
        errors_detected=[detected],
        error_message=message,
    )
