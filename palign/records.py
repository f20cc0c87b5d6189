"""What crosses process boundaries in a distributed run, declared: the task message
(`Job`), the run record in Redis (`RunRecord`), each planned branch (`QueuedBranch`).

Plain data with `to_json` / `from_json`. Whatever is read back (a message, a Redis
field) is checked as it is decoded, shas by `parse_sha`: a malformed record is refused
as `MalformedRecord`, never half-read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from palign.errors import InputError, MalformedRecord
from palign.model import COMMIT_SETTINGS, AlignRequest, Identity, Sha, Strategy, parse_sha
from palign.validation.checks import CheckRef

_SETTING_NAMES = {name.lower(): name for name in COMMIT_SETTINGS}


class RunState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (RunState.FINISHED, RunState.CANCELLED)


@dataclass(frozen=True)
class CircuitBreaker:
    """Stop a run once at least `failures` branches failed and they are at least
    `percent` % of the branches finished so far."""

    failures: int
    percent: int

    @classmethod
    def parse(cls, text: str) -> CircuitBreaker:
        """`COUNT,PERCENT` as the operator writes it: `5,50%`."""
        count, sep, percent = text.partition(",")
        try:
            breaker = cls(int(count), int(percent.strip().rstrip("%")) if sep else 0)
        except ValueError:
            raise InputError(f"--circuit-breaker takes COUNT,PERCENT, e.g. 5,50% (got {text!r})") from None
        if breaker.failures < 1 or not 0 <= breaker.percent <= 100:
            raise InputError(f"--circuit-breaker needs COUNT >= 1 and 0 <= PERCENT <= 100 (got {text!r})")
        return breaker


@dataclass(frozen=True)
class PlanInfo:
    """What the planner said of a branch, carried into its report entry."""

    category: str
    cluster_id: str
    stacked_on: str | None
    target_confidence: float
    stale: bool = False  # no commit for longer than [plan] stale_days

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "stale": self.stale,
            "cluster_id": self.cluster_id,
            "stacked_on": self.stacked_on,
            "target_confidence": self.target_confidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanInfo:
        try:
            stacked_on = data["stacked_on"]
            category, stale = str(data["category"]), data.get("stale", False)
            if category == "stale":  # a record of an older palign: its `stale` meant diverged and old
                category, stale = "diverged", True
            if not isinstance(stale, bool):
                raise TypeError(f"stale must be true or false, not {stale!r}")
            return cls(
                category=category,
                cluster_id=str(data["cluster_id"]),
                stacked_on=None if stacked_on is None else str(stacked_on),
                target_confidence=float(data["target_confidence"]),
                stale=stale,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedRecord(f"not a branch's plan: {error}") from None


@dataclass(frozen=True)
class RunSpec:
    """What every task of a run shares (kept once, in the run record). It says what to
    do, never how to run it: checks are named (each worker runs its own), git settings
    are limited to those that shape commits, REPO's URL carries no login."""

    run_id: str
    repo: str  # REPO's URL, which is all a worker knows of it
    identity: Identity  # committer, with the run's pinned time
    git_config: dict[str, str]  # REPO's settings that shape the commits git would write
    checks: tuple[CheckRef, ...] = ()
    baseline: bool = False

    def __post_init__(self) -> None:
        _check_git_config(self.git_config)
        _check_repo_url(self.repo)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "repo": self.repo,
            "identity": self.identity.to_json(),
            "git_config": dict(self.git_config),
            "checks": [check.to_json() for check in self.checks],
            "baseline": self.baseline,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        try:
            git_config = data["git_config"]
            if not isinstance(git_config, dict):
                raise MalformedRecord(f"not git settings: {git_config!r}")
            return cls(
                run_id=_text(data["run_id"], "run_id"),
                repo=_text(data["repo"], "repo"),
                identity=Identity.from_json(data["identity"]),
                git_config=dict(git_config),
                checks=tuple(CheckRef.from_json(c) for c in data.get("checks", ())),
                baseline=bool(data.get("baseline", False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise MalformedRecord(f"not a run's task settings: {error}") from None


def _check_git_config(settings: Mapping[Any, Any]) -> None:
    """Only the settings that shape commits (`COMMIT_SETTINGS`), one-line values: no
    message can make a worker's git allow a transport or rewrite a URL."""
    for key, value in settings.items():
        if not isinstance(key, str) or key.lower() not in _SETTING_NAMES:
            raise MalformedRecord(f"git setting not allowed in a task: {key!r}")
        if not isinstance(value, str) or len(value) > 1024 or any(c in value for c in "\n\r\0"):
            raise MalformedRecord(f"git setting {key} has a value that is not one line of text")


def _check_repo_url(url: str) -> None:
    """A URL for workers never carries a login: they use their own credentials."""
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https") and "@" in parts.netloc:
        raise MalformedRecord("a repository URL with a login in a task: refused")


@dataclass(frozen=True)
class Job:
    """One task message: a level of a unit of work (a batch of independent branches, or
    one level of a stack), with what the run's tasks share."""

    spec: RunSpec
    unit: int
    level: int
    requests: tuple[AlignRequest, ...]

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def refnames(self) -> list[str]:
        return [r.refname for r in self.requests]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.spec.to_json(),
            "unit": self.unit,
            "level": self.level,
            "requests": [r.to_json() for r in self.requests],
        }

    @classmethod
    def from_json(cls, data: Any) -> Job:
        if not isinstance(data, dict):
            raise MalformedRecord(f"not a task message: {type(data).__name__}")
        try:
            return cls(
                spec=RunSpec.from_json(data),
                unit=int(data["unit"]),
                level=int(data["level"]),
                requests=tuple(AlignRequest.from_json(r) for r in data["requests"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedRecord(f"not a task message: {error}") from None


@dataclass(frozen=True)
class QueuedBranch:
    """A branch of a distributed run, as planned (its result comes later)."""

    refname: str
    branch_name: str
    target: str
    old_sha: Sha
    order: int  # its place in the report
    plan: PlanInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "branch_name": self.branch_name,
            "target": self.target,
            "old_sha": self.old_sha,
            "order": self.order,
            "planned": self.plan.to_json() if self.plan else {},
        }

    @classmethod
    def from_json(cls, refname: str, data: Any) -> QueuedBranch:
        if not isinstance(data, dict):
            raise MalformedRecord(f"{refname}: not a planned branch: {type(data).__name__}")
        try:
            planned = data.get("planned") or None
            return cls(
                refname=refname,
                branch_name=_text(data["branch_name"], "branch_name"),
                target=_text(data["target"], "target"),
                old_sha=parse_sha(data["old_sha"], "old_sha"),
                order=int(data["order"]),
                plan=PlanInfo.from_json(planned) if planned else None,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedRecord(f"not a planned branch: {error}") from None


@dataclass(frozen=True)
class RunRecord:
    """A distributed run in the broker: what was asked, and how far it got."""

    run_id: str
    repo: str  # for the workers; never shown (it may carry credentials)
    repository: str  # REPO as shown (credentials redacted)
    strategy: Strategy
    targets: dict[str, Sha]  # target ref -> the sha branches are aligned onto
    apply: bool
    priority: int
    created_at: float
    spec: RunSpec
    breaker: CircuitBreaker | None = None
    total: int = 0  # branches
    tasks: int = 0
    chunks: int = 0
    state: RunState = RunState.QUEUED
    done: int = 0
    failures: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    circuit_breaker_triggered: bool = False
    apply_error: str | None = None

    def sized(self, *, total: int, tasks: int, chunks: int) -> RunRecord:
        return replace(self, total=total, tasks=tasks, chunks=chunks)

    def to_fields(self) -> dict[str, Any]:
        """The record as created: its fields' JSON values (the Redis hash)."""
        return {
            "repo": self.repo,
            "repository": self.repository,
            "strategy": self.strategy.value,
            "targets": dict(self.targets),
            "apply": self.apply,
            "priority": self.priority,
            "created_at": self.created_at,
            # Read by the result-recording script in Redis, which trips the breaker.
            "breaker_failures": self.breaker.failures if self.breaker else 0,
            "breaker_percent": self.breaker.percent if self.breaker else 0,
            "chunks": self.chunks,
            "total": self.total,
            "tasks": self.tasks,
            "job_base": self.spec.to_json(),
        }

    @classmethod
    def from_fields(cls, run_id: str, fields: Mapping[str, Any]) -> RunRecord:
        """From the hash's fields, each decoded from JSON where it is JSON."""
        try:
            failures_at, percent_at = int(fields.get("breaker_failures") or 0), int(fields.get("breaker_percent") or 0)
            return cls(
                run_id=run_id,
                repo=_text(fields["repo"], "repo"),
                repository=_text(fields["repository"], "repository"),
                strategy=Strategy(fields["strategy"]),
                targets={_text(ref, "target"): parse_sha(sha, "target sha") for ref, sha in fields["targets"].items()},
                apply=bool(fields.get("apply", False)),
                priority=int(fields.get("priority", 5)),
                created_at=float(fields["created_at"]),
                spec=RunSpec.from_json(fields["job_base"]),
                breaker=CircuitBreaker(failures_at, percent_at) if failures_at else None,
                total=int(fields.get("total") or 0),
                tasks=int(fields.get("tasks") or 0),
                chunks=int(fields.get("chunks") or 0),
                state=RunState(fields.get("state", RunState.QUEUED.value)),
                done=int(fields.get("done") or 0),
                failures=int(fields.get("failures") or 0),
                started_at=_seconds_or_none(fields.get("started_at")),
                finished_at=_seconds_or_none(fields.get("finished_at")),
                cancel_requested=bool(fields.get("cancel_requested")),
                circuit_breaker_triggered=bool(fields.get("circuit_breaker_triggered")),
                apply_error=str(fields["apply_error"]) if fields.get("apply_error") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise MalformedRecord(f"run {run_id}: not a run record: {error}") from None

    @property
    def shown_state(self) -> str:
        """The state as people read it: a run asked to stop says so until it has."""
        if self.cancel_requested and not self.state.final:
            return f"{self.state.value} (cancelling)"
        return self.state.value

    def status_json(self) -> dict[str, Any]:
        """What `palign status --json` shows: everything but what may carry credentials
        (REPO's URL, the tasks' settings)."""
        shown = {name: value for name, value in self.to_fields().items() if name not in ("repo", "job_base")}
        data: dict[str, Any] = {
            "run_id": self.run_id,
            **shown,
            "state": self.state.value,
            "done": self.done,
            "failures": self.failures,
        }
        optional = {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cancel_requested": self.cancel_requested or None,
            "circuit_breaker_triggered": self.circuit_breaker_triggered or None,
            "apply_error": self.apply_error,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedRecord(f"{what} is not text: {value!r}")
    return value


def _seconds_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
