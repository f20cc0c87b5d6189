"""palign's refs in REPO, and the protocol that publishes through them.

    refs/palign/backup/RUN/BRANCH    each selected branch's tip when the run planned it
    refs/palign/pending/RUN/BRANCH   an aligned result waiting for its checks (distributed runs)
    refs/palign/staged/RUN/BRANCH    an aligned (and checked) result, ready to apply
    refs/palign/applied/RUN/BRANCH   what an apply moved, so a rollback undoes exactly that

BRANCH is the short name of a branch (`feature/x`) or the full name of another ref
(`refs/pull/7/head`). The protocol:
- backups are in REPO before any result is staged or any task is sent;
- a run's refs are created only if absent (a repeated task finds its own sha there, never
  another), under run ids nobody else uses;
- an apply moves every staged branch in one atomic transaction, each with a lease on the
  sha it had when the run planned it (its backup); a rollback moves them back with a
  lease on the sha the apply gave them. When a lease loses a race with someone moving a
  branch, REPO is read again and the transaction retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TypeVar

from palign.errors import GitCommandError, InfrastructureError, UnknownRun
from palign.model import (
    PALIGN_NAMESPACE,
    ZERO_SHA,
    AlignRequest,
    ApplyOutcome,
    BranchResult,
    PruneOutcome,
    RollbackOutcome,
    branch_ref,
)
from palign.transport import Mirror, checked_out_branches

_ATTEMPTS = 3  # a lease lost to a concurrent writer: read REPO again and retry


class Kind(str, Enum):
    BACKUP = "backup"
    PENDING = "pending"
    STAGED = "staged"
    APPLIED = "applied"


def run_ref(kind: Kind, run_id: str, branch: str) -> str:
    return f"{PALIGN_NAMESPACE}{kind.value}/{run_id}/{branch}"


def backup_ref(run_id: str, branch: str) -> str:
    return run_ref(Kind.BACKUP, run_id, branch)


def staged_ref(run_id: str, branch: str) -> str:
    return run_ref(Kind.STAGED, run_id, branch)


def pending_ref(run_id: str, branch: str) -> str:
    return run_ref(Kind.PENDING, run_id, branch)


def applied_ref(run_id: str, branch: str) -> str:
    return run_ref(Kind.APPLIED, run_id, branch)


def check_run_id(run_id: str) -> None:
    """A run id names refs and Redis keys: letters, digits, `-`, `_` and `.` only."""
    if not run_id or "/" in run_id or run_id.startswith("-") or not all(c.isalnum() or c in "-_." for c in run_id):
        raise UnknownRun(f"not a run id: {run_id!r}")


def of_run(refs: dict[str, str], kind: Kind, run_id: str) -> dict[str, str]:
    """The run's refs of one kind among `refs` (name -> sha), by branch."""
    prefix = run_ref(kind, run_id, "")
    return {ref[len(prefix) :]: value for ref, value in refs.items() if ref.startswith(prefix)}


def tips_to_publish(kind: Kind, run_id: str, results: Iterable[BranchResult]) -> dict[str, str]:
    """Ref -> new tip of each result that has one to publish (aligned, or merged already)."""
    return {run_ref(kind, run_id, r.branch_name): str(r.new_sha) for r in results if r.status.publishable and r.new_sha}


# --- writing a run's refs ---------------------------------------------------------------


def back_up_and_stage(
    mirror: Mirror,
    run_id: str,
    requests: Sequence[AlignRequest],
    results: Sequence[BranchResult] = (),
    *,
    objects_from: Path | None = None,
) -> None:
    """Backups of every selected branch, and the staged results, in one push: no branch
    moves before both are in REPO. (No lease: the run id is new, nothing can be there.)"""
    specs = [f"{r.old_sha}:{backup_ref(run_id, r.branch)}" for r in requests]
    specs += [f"{sha}:{ref}" for ref, sha in tips_to_publish(Kind.STAGED, run_id, results).items()]
    mirror.push(specs, objects_from=objects_from)


def create_once(
    mirror: Mirror, wanted: dict[str, str], *, objects_from: Path | None = None, have: Sequence[str] | None = None
) -> int:
    """Create each ref of REPO in `wanted` (ref -> sha) only if absent, in one transaction;
    returns how many were there already. A repeated task finds some or all of them written:
    the same sha is fine (a run pins its commit times, so a repeat writes the same
    commits), another sha is an error."""
    left = dict(wanted)
    for _attempt in range(_ATTEMPTS):
        specs = [f"{sha}:{ref}" for ref, sha in left.items()]
        try:
            mirror.push(specs, leases=dict.fromkeys(left, ZERO_SHA), atomic=True, objects_from=objects_from, have=have)
            return len(wanted) - len(left)
        except GitCommandError as error:
            failure = error
        existing = mirror.remote_refs(*left)
        clashes = [ref for ref, sha in left.items() if existing.get(ref) not in (None, sha)]
        if clashes:
            raise InfrastructureError(f"refs of this run hold other commits: {', '.join(clashes)}")
        left = {ref: sha for ref, sha in left.items() if ref not in existing}
        if not left:
            return len(wanted)
    raise InfrastructureError(f"cannot write the run's refs to REPO: {failure}")


def fetch_run_refs(mirror: Mirror, kind: Kind, run_id: str, branches: Iterable[str] | None = None) -> None:
    """Bring a run's refs of one kind (all, or those of `branches`) from REPO into the
    mirror, with their objects: the regular sync leaves palign's namespace out."""
    if branches is None:
        pattern = run_ref(kind, run_id, "*")
        mirror.fetch([f"+{pattern}:{pattern}"])
    else:
        mirror.fetch([f"+{ref}:{ref}" for ref in (run_ref(kind, run_id, b) for b in branches)])


# --- apply and rollback ------------------------------------------------------------------


@dataclass(frozen=True)
class RunRefs:
    """REPO's refs as one apply or rollback attempt sees them."""

    refs: dict[str, str]  # REPO's branches, the run's refs, and the other refs it names
    backups: dict[str, str]  # by branch
    staged: dict[str, str]
    applied: dict[str, str]

    def current(self, branch: str) -> str | None:
        return self.refs.get(branch_ref(branch))


def read_run_refs(mirror: Mirror, run_id: str) -> RunRefs:
    """REPO's branches and the run's refs, read from REPO itself (leases need the truth)."""
    refs = mirror.remote_refs("refs/heads/*", f"{PALIGN_NAMESPACE}*/{run_id}/*")
    backups = of_run(refs, Kind.BACKUP, run_id)
    if not backups:
        raise UnknownRun(f"unknown run id: {run_id} (no refs/palign/backup/{run_id}/ in the repository)")
    staged = of_run(refs, Kind.STAGED, run_id)
    others = [name for name in {*backups, *staged} if name.startswith("refs/")]  # refs/pull/7/head, say
    if others:
        refs.update(mirror.remote_refs(*others))
    return RunRefs(refs, backups, staged, of_run(refs, Kind.APPLIED, run_id))


Outcome = TypeVar("Outcome")


def _leased_transaction(
    mirror: Mirror, run_id: str, decide: Callable[[RunRefs], tuple[list[str], dict[str, str], Outcome]]
) -> Outcome:
    """Read REPO, decide what to move (refspecs, leases, and what they will do), move it
    atomically under those leases; when a lease fails (someone moved a branch meanwhile),
    read REPO again and decide again."""
    for attempt in range(_ATTEMPTS):
        specs, leases, outcome = decide(read_run_refs(mirror, run_id))
        try:
            mirror.push(specs, leases=leases, atomic=True)
            return outcome
        except GitCommandError:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def apply(mirror: Mirror, run_id: str, reported: Mapping[str, str] | None = None) -> ApplyOutcome:
    """Move every branch `run_id` staged in one atomic transaction, each with a lease on
    the sha it had when the run planned it; branches that moved since are left alone
    (`stale`), and so are branches checked out in a working tree of REPO.
    `reported` (branch -> aligned sha, from the run's report) limits the apply to what
    the report says: a staged ref it does not name, or names with another commit, stays."""
    check_run_id(run_id)
    fetch_run_refs(mirror, Kind.STAGED, run_id)

    def decide(found: RunRefs) -> tuple[list[str], dict[str, str], ApplyOutcome]:
        busy = checked_out_branches(mirror.location)
        outcome = ApplyOutcome()
        specs: list[str] = []
        leases: dict[str, str] = {}
        for name, new in sorted(found.staged.items()):
            ref, current = branch_ref(name), found.current(name)
            if reported is not None and reported.get(name) != new:
                continue
            if current == new:
                outcome.already.append(name)
            elif current != found.backups.get(name):
                outcome.stale.append(name)
            elif ref in busy:
                outcome.refused[name] = "checked out in a working tree of the repository; not moved"
            else:
                specs += [f"{new}:{ref}", f"{new}:{applied_ref(run_id, name)}"]
                leases[ref] = found.backups[name]
                outcome.applied.append(name)
        return specs, leases, outcome

    return _leased_transaction(mirror, run_id, decide)


def rollback(mirror: Mirror, run_id: str) -> RollbackOutcome:
    """Put every branch `run_id` applied back to its backup, each with a lease on the sha
    the apply gave it; a branch that moved since is left alone and reported."""
    check_run_id(run_id)
    fetch_run_refs(mirror, Kind.BACKUP, run_id)

    def decide(found: RunRefs) -> tuple[list[str], dict[str, str], RollbackOutcome]:
        outcome = RollbackOutcome()
        specs: list[str] = []
        leases: dict[str, str] = {}
        for name, new in sorted(found.applied.items()):
            if found.current(name) != new:
                outcome.stale.append(name)
                continue
            ref, marker = branch_ref(name), applied_ref(run_id, name)
            specs += [f"{found.backups[name]}:{ref}", f":{marker}"]
            leases[ref] = new
            leases[marker] = new
            outcome.restored.append(name)
        return specs, leases, outcome

    return _leased_transaction(mirror, run_id, decide)


# --- housekeeping ------------------------------------------------------------------------


def run_started(run_id: str) -> datetime | None:
    """When a run started, read from its id (`YYYYMMDD-HHMMSS-xxxxxx`, UTC); None for a
    name palign did not make."""
    try:
        return datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def prune_runs(
    mirror: Mirror, *, started_before: datetime, keep: int, applied_too: bool, dry_run: bool = False
) -> PruneOutcome:
    """Delete the refs of runs that started before `started_before`, but the `keep` newest
    runs; a run that was applied keeps its backups and applied markers (what a rollback
    needs) unless `applied_too`. Each ref is deleted with a lease on the sha it was read
    with; folders under refs/palign/ that no palign run id names are left alone."""
    by_run: dict[str, dict[str, str]] = {}
    for ref, sha in mirror.remote_refs(f"{PALIGN_NAMESPACE}*").items():
        parts = ref.removeprefix(PALIGN_NAMESPACE).split("/", 2)
        if len(parts) == 3:
            by_run.setdefault(parts[1], {})[ref] = sha
    outcome = PruneOutcome()
    dated = {run: run_started(run) for run in by_run}
    outcome.foreign = sorted(run for run, started in dated.items() if started is None)
    newest_first = sorted((run for run in by_run if dated[run] is not None), reverse=True)
    doomed: dict[str, str] = {}
    for position, run in enumerate(newest_first):
        started = dated[run]
        assert started is not None
        if position < keep or started >= started_before:
            outcome.kept.append(run)
            continue
        found = by_run[run]
        applied = any(ref.startswith(run_ref(Kind.APPLIED, run, "")) for ref in found)
        if applied and not applied_too:
            keeps = (run_ref(Kind.BACKUP, run, ""), run_ref(Kind.APPLIED, run, ""))
            doomed.update({ref: sha for ref, sha in found.items() if not ref.startswith(keeps)})
            outcome.trimmed.append(run)
        else:
            doomed.update(found)
            outcome.removed.append(run)
    outcome.refs_deleted = len(doomed)
    if doomed and not dry_run:
        mirror.push([f":{ref}" for ref in sorted(doomed)], leases=doomed)
    return outcome
