"""The domain vocabulary: shas, strategies, statuses, identities and per-branch results.

Plain data, no I/O: the same objects travel through the local process pool and, as
JSON (`to_json` / `from_json`), through Celery and Redis. Every sha that comes in as JSON
is checked by `parse_sha`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, NewType

from palign.errors import MalformedRecord

Sha = NewType("Sha", str)

ZERO_SHA = Sha("0" * 40)  # git's "no object": a ref that must not exist yet, a deleted file
_SHA_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")

BRANCH_PREFIX = "refs/heads/"
# The settings of REPO that decide what git's own rebase or merge would write there: the
# only git settings that travel to workers (values without line breaks).
COMMIT_SETTINGS = (
    "user.name",
    "user.email",
    "i18n.commitEncoding",
    "commit.cleanup",
    "core.commentChar",
    "merge.renames",
    "merge.directoryRenames",
    "merge.renameLimit",
    "diff.renames",
    "diff.renameLimit",
)
PALIGN_NAMESPACE = "refs/palign/"  # every ref palign writes without --apply (see palign.refs)


def parse_sha(value: object, what: str = "object id") -> Sha:
    """A full hexadecimal object id read from JSON (a task message, a Redis record)."""
    if not isinstance(value, str) or not _SHA_RE.fullmatch(value):
        raise MalformedRecord(f"{what} is not a full object id: {value!r}")
    return Sha(value)


def _optional_sha(value: object, what: str) -> Sha | None:
    return None if value is None or value == "" else parse_sha(value, what)


def short_name(refname: str) -> str:
    """`refs/heads/feature/x` -> `feature/x`; other refs keep their full name."""
    return refname[len(BRANCH_PREFIX) :] if refname.startswith(BRANCH_PREFIX) else refname


def branch_ref(name: str) -> str:
    """`feature/x` -> `refs/heads/feature/x`; full ref names stay as they are."""
    return name if name.startswith("refs/") else BRANCH_PREFIX + name


class Strategy(str, Enum):
    REBASE = "rebase"
    MERGE = "merge"
    AUTO = "auto"


class Status(str, Enum):
    """A branch's final state; members are listed in the order summaries show them."""

    ALIGNED = "aligned"
    UP_TO_DATE = "up_to_date"
    MERGED = "merged"
    CONFLICT = "conflict"
    FAILED_VALIDATION = "failed_validation"  # aligned, but an operator's check failed on the result
    BLOCKED = "blocked"  # stacked on a branch that did not align
    STALE = "stale"  # moved after the run planned it: left alone by an apply
    ERROR = "error"
    CANCELLED = "cancelled"  # the run was cancelled before this branch was aligned
    SKIPPED = "skipped"  # the run's circuit breaker stopped it before this branch

    @property
    def counts_as_failure(self) -> bool:
        """What the circuit breaker counts: outcomes that say something is wrong with the
        run, not consequences of another branch's outcome (blocked) or of a stop."""
        return self in (Status.CONFLICT, Status.ERROR, Status.FAILED_VALIDATION)

    @property
    def successful(self) -> bool:
        return self in (Status.ALIGNED, Status.UP_TO_DATE, Status.MERGED)

    @property
    def publishable(self) -> bool:
        """A result with a new tip to stage (a merged branch ends at its target's tip)."""
        return self in (Status.ALIGNED, Status.MERGED)


@dataclass(frozen=True)
class Identity:
    """Who commits a run's rewritten commits."""

    name: str
    email: str
    # A run pins its committer time, so a branch aligned twice (a task delivered twice,
    # a retry on another worker) gets byte-identical commits: ref writes stay idempotent.
    when: int | None = None

    def signature_line(self, when: float | None = None) -> bytes:
        """`Name <email> 1700000000 +0100`, git's ident format, with the local offset."""
        if when is None:
            when = self.when
        stamp = int(time.time() if when is None else when)
        offset_minutes = -(time.altzone if time.localtime(stamp).tm_isdst > 0 else time.timezone) // 60
        sign = "+" if offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(offset_minutes), 60)
        return f"{self.name} <{self.email}> {stamp} {sign}{hours:02d}{minutes:02d}".encode()

    def to_json(self) -> list[Any]:
        return [self.name, self.email, self.when]

    @classmethod
    def from_json(cls, data: Any) -> Identity:
        if not isinstance(data, list) or len(data) != 3 or not all(isinstance(v, str) for v in data[:2]):
            raise MalformedRecord(f"not a committer identity: {data!r}")
        when = data[2]
        if when is not None and (not isinstance(when, int) or isinstance(when, bool)):
            raise MalformedRecord(f"not a commit time: {when!r}")
        return cls(data[0], data[1], when)


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
    fork_point: Sha | None = None  # merge base with the target when planned (spares the summary a walk)

    @property
    def branch(self) -> str:
        return short_name(self.refname)

    def to_json(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict costs 20 us a request, and a large run sends tens of thousands.
        return {
            "refname": self.refname,
            "old_sha": self.old_sha,
            "target": self.target,
            "target_sha": self.target_sha,
            "strategy": self.strategy.value,
            "cost": self.cost,
            "ahead": self.ahead,
            "behind": self.behind,
            "parent": self.parent,
            "parent_old": self.parent_old,
            "onto": self.onto,
            "forecast": self.forecast,
            "fork_point": self.fork_point,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlignRequest:
        try:
            return cls(
                refname=str(data["refname"]),
                old_sha=parse_sha(data["old_sha"], "old_sha"),
                target=str(data["target"]),
                target_sha=parse_sha(data["target_sha"], "target_sha"),
                strategy=Strategy(data["strategy"]),
                cost=int(data.get("cost", 0)),
                ahead=int(data.get("ahead", -1)),
                behind=int(data.get("behind", -1)),
                parent=str(data["parent"]) if data.get("parent") else None,
                parent_old=_optional_sha(data.get("parent_old"), "parent_old"),
                onto=_optional_sha(data.get("onto"), "onto"),
                forecast=bool(data.get("forecast", False)),
                fork_point=_optional_sha(data.get("fork_point"), "fork_point"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedRecord(f"not an align request: {error}") from None


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
    change_summary: dict[str, Any] | None = None  # own commits, files both sides changed (engine.summary)
    replayed_commits: list[str] = field(default_factory=list)  # original ids of the commits a rebase replayed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["strategy_used"] = self.strategy_used.value if self.strategy_used else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BranchResult:
        try:
            fields = dict(data)
            fields["status"] = Status(fields["status"])
            fields["old_sha"] = parse_sha(fields["old_sha"], "old_sha")
            fields["new_sha"] = _optional_sha(fields.get("new_sha"), "new_sha")
            fields["strategy_used"] = Strategy(fields["strategy_used"]) if fields.get("strategy_used") else None
            fields["conflicts"] = [
                Conflict(path=str(c["path"]), commit=parse_sha(c["commit"], "conflict commit"))
                for c in fields.get("conflicts", [])
            ]
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedRecord(f"not a branch result: {error}") from None


WorkUnit = list[list[AlignRequest]]  # a stack, level by level; a lone branch is [[request]]
Progress = Callable[[str, Status], None]  # a branch (its short name) reached its final status
# How far a step of the work is: ("gathering facts", 120, 400); a total of 0 is not counted.
Steps = Callable[[str, int, int], None]


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


def blocked_result(request: AlignRequest, blocker: BranchResult) -> BranchResult:
    message = f"stacked on {blocker.branch_name}, which did not align ({blocker.status.value})"
    return unaligned(request.refname, request.target, request.old_sha, Status.BLOCKED, "blocked_by_parent", message)


def stopped_result(refname: str, target: str, old_sha: Sha, status: Status) -> BranchResult:
    """A branch a cancel or the circuit breaker kept from being aligned: left as it was."""
    cancelled = status is Status.CANCELLED
    reason = "the run was cancelled" if cancelled else "the run's circuit breaker stopped it"
    detected = "cancelled" if cancelled else "circuit_breaker"
    return unaligned(refname, target, old_sha, status, detected, f"{reason} before this branch was aligned")


@dataclass
class ApplyOutcome:
    """What publishing a run did, by branch name."""

    applied: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # moved since the run planned it: left alone
    already: list[str] = field(default_factory=list)  # at the aligned tip already
    refused: dict[str, str] = field(default_factory=dict)  # name -> why it was not moved


@dataclass
class RollbackOutcome:
    restored: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # moved since the apply: left alone


@dataclass
class PruneOutcome:
    """What `palign prune` removed, and what it kept and why."""

    removed: list[str] = field(default_factory=list)  # runs whose refs are gone
    trimmed: list[str] = field(default_factory=list)  # applied runs: backups kept for a rollback
    kept: list[str] = field(default_factory=list)  # recent enough, or among the newest to keep
    foreign: list[str] = field(default_factory=list)  # folders under refs/palign/ no palign run id names
    refs_deleted: int = 0
    mirrors_removed: int = 0
    scratch_removed: int = 0
    checks_removed: int = 0
