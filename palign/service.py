"""The one service layer the CLI (and later the API) call: run, apply, rollback.

A run: check the input, sync the mirror, select branches, keep backups in REPO, align in
memory, stage the results in REPO, apply them if asked, report. Nothing is written to
REPO or to the report folder before every input check has passed.
"""

from __future__ import annotations

import fnmatch
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2

from palign.config import load as load_config
from palign.engine.changes import ChangeIndex, PendingDiff, commits_of_run
from palign.engine.objects import Identity, committer_identity
from palign.engine.treeops import changed_entries
from palign.errors import GitCommandError, InputError, NoBranchMatched, UnknownRun, UnknownTarget
from palign.executor.local import Unit, map_local, run_local
from palign.model import (
    BRANCH_PREFIX,
    PALIGN_NAMESPACE,
    AlignRequest,
    BranchResult,
    Sha,
    Status,
    Strategy,
    applied_ref,
    backup_ref,
    short_name,
    staged_ref,
)
from palign.planner.inspect import facts_of_share, gather_facts
from palign.planner.model import BranchFacts, Plan
from palign.planner.plan import make_plan
from palign.planner.planfile import read_plan_file
from palign.report import RunReport, now
from palign.runtime import adopt_changes, merge_pairs, tune_libgit2
from palign.scratch import ScratchStore
from palign.transport import Mirror, checked_out_branches, commit_settings, parse_location
from palign.validation.checks import Check, from_commands

ProgressCallback = Callable[[BranchResult], None]
log = logging.getLogger("palign")


@contextmanager
def _phase(name: str, run_id: str = "-") -> Iterator[None]:
    started = time.perf_counter()
    yield
    log.info("run %s: %s took %.3f s", run_id, name, time.perf_counter() - started)


@dataclass(frozen=True)
class RunOptions:
    repo: str
    targets: Sequence[str]
    branch_globs: Sequence[str] = ()
    strategy: Strategy = Strategy.REBASE
    workers: int = 1
    apply: bool = False
    config: Path | None = None  # palign.toml (default: ./palign.toml when present)
    plan_file: Path | None = None  # a plan file to execute (`palign plan --json`, or another tool's)
    # Distributed mode: a Redis URL hands the plan to Celery workers instead of the local pool.
    broker: str | None = None
    priority: int = 5  # 0 runs first, 9 last (Redis priority lists)
    circuit_breaker: str | None = None  # "COUNT,PERCENT": stop once failures pass both
    validate: Sequence[str] = ()  # --validate commands; they replace palign.toml's [validate]
    baseline: bool = False  # a failing check also runs on the original commit


@dataclass
class ApplyOutcome:
    applied: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def new_run_id(at: datetime) -> str:
    return f"{at.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _resolve_target(refs: dict[str, str], name: str) -> str:
    for candidate in (name, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/remotes/{name}"):
        if candidate.startswith("refs/") and candidate in refs and not candidate.startswith(PALIGN_NAMESPACE):
            return candidate
    raise UnknownTarget(f"unknown target: {name!r} is not a branch or ref of the repository")


def select_branches(refs: dict[str, str], globs: Sequence[str], exclude: set[str]) -> list[str]:
    """Branch refs to align: every branch, or those whose short name (or full ref name,
    for globs starting with refs/) matches a glob; targets are never selected."""
    if globs:
        chosen = [
            ref
            for ref in refs
            if ref not in exclude
            and not ref.startswith(PALIGN_NAMESPACE)
            and any(
                fnmatch.fnmatchcase(ref, g)
                if g.startswith("refs/")
                else ref.startswith(BRANCH_PREFIX) and fnmatch.fnmatchcase(short_name(ref), g)
                for g in globs
            )
        ]
        if not chosen:
            raise NoBranchMatched(f"no branch matches {', '.join(repr(g) for g in globs)}")
    else:
        chosen = [ref for ref in refs if ref.startswith(BRANCH_PREFIX) and ref not in exclude]
        if not chosen:
            raise NoBranchMatched("the repository has no branches besides the target")
    return sorted(chosen)


def run_identity(settings: dict[str, str]) -> Identity:
    """Who commits a run's rewritten commits, and when: one pinned time per run."""
    identity = committer_identity(settings.get("user.name"), settings.get("user.email"))
    return replace(identity, when=int(time.time()))


@dataclass
class Prepared:
    """A checked and planned run: nothing has been written anywhere yet."""

    mirror: Mirror
    targets: dict[str, str]  # target ref -> commit sha
    plan: Plan
    requests: dict[str, AlignRequest]  # by branch short name
    units: list[Unit]
    diffing: PendingDiff | None = None  # what the run's commits changed, diffed while planning
    checks: tuple[Check, ...] = ()  # the operator's checks for each aligned result

    def changes_ready(self) -> ChangeIndex | None:
        if self.diffing is None:
            return None
        index = ChangeIndex()
        index.by_commit.update(self.diffing.result())
        self.diffing = None
        return index


def prepare(options: RunOptions, *, diff_ahead: bool = False) -> Prepared:
    """Every input check, and the plan: raises InputError before anything is written.
    `diff_ahead` diffs the commits alignment will look at while the planner works."""
    if options.workers < 1:
        raise InputError(f"--workers must be at least 1 (got {options.workers})")
    config = load_config(options.config)
    entries = read_plan_file(options.plan_file) if options.plan_file is not None else []
    location = parse_location(options.repo)
    mirror = Mirror(location)
    mirror.sync()
    refs = mirror.ref_values("refs/")
    tune_libgit2()
    repo = pygit2.Repository(str(mirror.path))
    targets: dict[str, str] = {}
    for name in options.targets:
        ref = _resolve_target(refs, name)
        targets[ref] = str(repo.revparse_single(refs[ref]).peel(pygit2.Commit).id)
    if entries and not options.branch_globs:
        branches = []
        for entry in entries:
            ref = _branch_ref(entry.branch_name)
            if ref not in refs:
                raise InputError(f"plan file line {entry.line}: no branch {entry.branch_name!r} in the repository")
            branches.append(ref)
    else:
        branches = select_branches(refs, options.branch_globs, exclude=set(targets))
    diffing = _diff_in_background(repo, targets, [refs[r] for r in branches]) if diff_ahead else None
    names = {short_name(ref): ref for ref in targets}
    facts = _gather_facts(
        mirror.path, {ref: refs[ref] for ref in branches}, {n: targets[r] for n, r in names.items()}, options.workers
    )
    plan = make_plan(
        facts,
        list(names),
        config.rules,
        config.dependencies,
        config.stale_days,
        time.time(),
        entries=entries,
        cluster_threshold=config.cluster_threshold,
    )
    requests: dict[str, AlignRequest] = {}
    for planned in plan.branches:
        target_ref = names[planned.assigned_target]
        orphan = planned.category.value == "orphan"
        requests[planned.branch_name] = AlignRequest(
            refname=planned.refname,
            old_sha=Sha(planned.sha),
            target=target_ref,
            target_sha=Sha(targets[target_ref]),
            strategy=options.strategy,
            cost=planned.cost,
            ahead=-1 if orphan else planned.ahead,
            behind=-1 if orphan else planned.behind,
            parent=plan.branch(planned.parent).refname if planned.parent is not None else None,
        )
    units = [[[requests[name] for name in level] for level in unit.levels] for unit in plan.units]
    checks = from_commands(options.validate) if options.validate else config.checks
    return Prepared(mirror, targets, plan, requests, units, diffing, checks)


# Below this many branches the planner's facts are gathered in this process.
_PARALLEL_FACTS_FROM = 200


def _gather_facts(
    mirror_path: Path, branch_refs: dict[str, str], targets: dict[str, str], workers: int
) -> list[BranchFacts]:
    """The planner's facts, in shares over the worker processes for large runs."""
    if workers < 2 or len(branch_refs) < _PARALLEL_FACTS_FROM:
        return gather_facts(pygit2.Repository(str(mirror_path)), branch_refs, targets)
    refs = list(branch_refs)
    shares = [{ref: branch_refs[ref] for ref in refs[i::workers]} for i in range(workers)]
    facts = map_local(
        facts_of_share, (str(mirror_path),), [(share, branch_refs, targets) for share in shares], workers=workers
    )
    order = {ref: i for i, ref in enumerate(refs)}
    return sorted(facts, key=lambda fact: order[fact.refname])


def _diff_in_background(repo: pygit2.Repository, targets: dict[str, str], tips: list[str]) -> PendingDiff:
    """Start diffing every commit a run may look at (one git process running beside the
    planner; its result is read before any worker process forks for the alignment)."""
    commits = [
        commit
        for target_sha in targets.values()
        for commit in commits_of_run(repo, pygit2.Oid(hex=target_sha), [pygit2.Oid(hex=t) for t in tips])
    ]
    return PendingDiff(repo.path, commits)


def plan(options: RunOptions, *, forecast: bool = True) -> Prepared:
    """The plan of a run, with each branch's forecast from an in-memory dry run of the real
    alignment (nothing is written to REPO; the dry run's objects live in a scratch store)."""
    prepared = prepare(options, diff_ahead=forecast)
    prepared.checks = ()  # a forecast predicts alignment only: checks run in real runs
    prepared.units = [[[replace(r, forecast=True) for r in level] for level in unit] for unit in prepared.units]
    prepared.requests = {name: replace(r, forecast=True) for name, r in prepared.requests.items()}
    if forecast and prepared.requests:
        settings = commit_settings(prepared.mirror.location)
        with ScratchStore(prepared.mirror.path, f"plan-{secrets.token_hex(3)}", settings=settings) as scratch:
            results = _align_all(options, prepared, scratch.path, settings, None)
        by_name = {r.branch_name: r for r in results}
        prepared.plan = replace(
            prepared.plan,
            branches=[replace(b, forecast=by_name[b.branch_name].status.value) for b in prepared.plan.branches],
        )
    return prepared


def _align_all(
    options: RunOptions,
    prepared: Prepared,
    store: Path,
    settings: dict[str, str],
    on_result: ProgressCallback | None,
) -> list[BranchResult]:
    changes = prepared.changes_ready()
    if changes is not None:
        adopt_changes(str(store), changes)  # forked workers inherit it
    return run_local(
        str(store),
        run_identity(settings),
        prepared.units,
        workers=options.workers,
        on_result=on_result,
        checks=[check.to_json() for check in prepared.checks],
        baseline=options.baseline,
    )


def run(
    options: RunOptions, *, on_result: ProgressCallback | None = None, on_planned: Callable[[int], None] | None = None
) -> RunReport:
    started_at = now()
    clock = time.perf_counter()
    run_id = new_run_id(started_at)
    with _phase("checking input, syncing the mirror and planning", run_id):
        prepared = prepare(options, diff_ahead=True)
    mirror, targets, requests = prepared.mirror, prepared.targets, list(prepared.requests.values())
    if on_planned is not None:
        on_planned(len(requests))
    settings = commit_settings(mirror.location)
    with ScratchStore(mirror.path, run_id, settings=settings) as scratch:
        with _phase("aligning", run_id):
            results = _align_all(options, prepared, scratch.path, settings, on_result)
        # Backups and staged results land together, in one push: no branch moves before
        # both are in REPO (only --apply / `palign apply` move branches).
        with _phase("pushing backups and staged results", run_id):
            mirror.push(
                [f"{r.old_sha}:{backup_ref(run_id, r.branch)}" for r in requests]
                + [
                    f"{r.new_sha}:{staged_ref(run_id, r.branch_name)}"
                    for r in results
                    if r.status in (Status.ALIGNED, Status.MERGED) and r.new_sha
                ],
                objects_from=scratch.path,
            )
    report = RunReport(
        run_id=run_id,
        repository=mirror.location.display,
        strategy=options.strategy.value,
        targets=targets,
        results=results,
        started_at=started_at,
        total_time_seconds=0.0,
        planned=_planned_info(prepared),
    )
    if options.apply:
        note_applied(report, apply(options.repo, run_id, mirror=mirror))
    report.total_time_seconds = time.perf_counter() - clock
    return report


def note_applied(report: RunReport, outcome: ApplyOutcome) -> None:
    """What an apply did, in the run's report."""
    by_name = {r.branch_name: r for r in report.results}
    for name in outcome.applied + outcome.already:
        by_name[name].applied = True
    for name in outcome.stale:
        by_name[name].status = Status.STALE
        by_name[name].error_message = "the branch moved after it was planned; left alone"
        by_name[name].errors_detected.append("stale_branch")
    for name, reason in outcome.refused.items():
        by_name[name].status = Status.ERROR
        by_name[name].error_message = reason
        by_name[name].errors_detected.append("apply_refused")
    report.applied = True


def _planned_info(prepared: Prepared) -> dict[str, dict[str, Any]]:
    return {
        b.branch_name: {
            "category": b.category.value,
            "cluster_id": b.cluster_id,
            "stacked_on": b.parent,
            "target_confidence": b.confidence,
        }
        for b in prepared.plan.branches
    }


# --- distributed runs (Celery workers over Redis) ----------------------------------------


def _run_store(broker: str | None) -> Any:
    from palign.distributed.settings import DistributedSettings
    from palign.distributed.store import RunStore

    settings = DistributedSettings.from_env(broker)
    store = RunStore(settings.broker_url)
    store.check()
    return store


def submit(options: RunOptions, *, on_planned: Callable[[int], None] | None = None) -> tuple[str, Any]:
    """Plan a run and enqueue it on the Celery workers; returns its id (and the store).
    The broker is checked first and every input before anything is written; backups of
    every selected branch are in REPO before any task is sent."""
    from palign.distributed import app as app_module
    from palign.distributed.producer import CircuitBreaker, enqueue

    if not 0 <= options.priority <= 9:
        raise InputError(f"--priority must be 0-9 (got {options.priority})")
    breaker = CircuitBreaker.parse(options.circuit_breaker) if options.circuit_breaker else None
    app_module.configure(options.broker)
    store = _run_store(options.broker)
    started_at = now()
    run_id = new_run_id(started_at)
    with _phase("checking input, syncing the mirror and planning", run_id):
        prepared = prepare(options)
    requests = list(prepared.requests.values())
    if on_planned is not None:
        on_planned(len(requests))
    settings = commit_settings(prepared.mirror.location)
    identity = run_identity(settings)
    with _phase("pushing backups", run_id):
        prepared.mirror.push([f"{r.old_sha}:{backup_ref(run_id, r.branch)}" for r in requests])
    with _phase("enqueueing", run_id):
        enqueue(
            store,
            run_id,
            record={
                "repo": prepared.mirror.location.url,
                "repository": prepared.mirror.location.display,
                "strategy": options.strategy.value,
                "targets": prepared.targets,
                "apply": options.apply,
                "priority": options.priority,
                "created_at": time.time(),
                "breaker_failures": breaker.failures if breaker else 0,
                "breaker_percent": breaker.percent if breaker else 0,
            },
            requests=requests,
            planned=_planned_info(prepared),
            units=prepared.units,
            job_base={
                "repo": prepared.mirror.location.url,
                "identity": [identity.name, identity.email, identity.when],
                "settings": settings,
                "checks": [check.to_json() for check in prepared.checks],
                "baseline": options.baseline,
            },
            priority=options.priority,
            ttl=app_module.current.run_ttl,
        )
    return run_id, store


def run_distributed(
    options: RunOptions,
    *,
    on_result: ProgressCallback | None = None,
    on_planned: Callable[[int], None] | None = None,
    timeout: float | None = None,
) -> RunReport:
    from palign.distributed import app as app_module
    from palign.distributed.producer import wait

    run_id, store = submit(options, on_planned=on_planned)
    with _phase("waiting for the workers", run_id):
        return wait(store, run_id, on_result=on_result, timeout=timeout, stall_after=app_module.current.stall_timeout)


def resume(run_id: str, broker: str | None) -> int:
    """Send again the work of a run's branches that have no result (a task Redis lost);
    returns how many branches were resent."""
    from palign.distributed import app as app_module
    from palign.distributed.producer import resubmit_missing

    _check_run_id(run_id)
    app_module.configure(broker)
    return resubmit_missing(_run_store(broker), run_id)


def run_status(run_id: str, broker: str | None) -> dict[str, Any]:
    _check_run_id(run_id)
    store = _run_store(broker)
    record: dict[str, Any] = store.record(run_id)
    record.pop("repo", None)  # may carry credentials
    record["run_id"] = run_id
    return record


def run_report(run_id: str, broker: str | None) -> RunReport:
    from palign.distributed.producer import load_report

    _check_run_id(run_id)
    report: RunReport = load_report(_run_store(broker), run_id)
    return report


def cancel(run_id: str, broker: str | None) -> str:
    """Ask a run to stop: branches not started are dropped, running ones stop before their
    next branch; the report says cancelled. Returns the run's state when asked."""
    _check_run_id(run_id)
    state = _run_store(broker).cancel(run_id)
    return str(state.value)


def _branch_ref(name: str) -> str:
    return name if name.startswith("refs/") else BRANCH_PREFIX + name


def _run_refs(refs: dict[str, str], kind: str, run_id: str) -> dict[str, str]:
    prefix = f"{PALIGN_NAMESPACE}{kind}/{run_id}/"
    return {ref[len(prefix) :]: value for ref, value in refs.items() if ref.startswith(prefix)}


def _refs_of_run(mirror: Mirror, run_id: str) -> dict[str, str]:
    """REPO's branches and the run's refs, read from REPO itself (leases need the truth)."""
    refs = mirror.remote_refs("refs/heads/*", f"{PALIGN_NAMESPACE}*/{run_id}/*")
    if not _run_refs(refs, "backup", run_id):
        raise UnknownRun(f"unknown run id: {run_id} (no refs/palign/backup/{run_id}/ in the repository)")
    non_branch = {name for kind in ("backup", "staged") for name in _run_refs(refs, kind, run_id)}
    extra = [name for name in non_branch if name.startswith("refs/")]
    if extra:
        refs.update(mirror.remote_refs(*extra))
    return refs


def _synced_mirror(repo: str) -> Mirror:
    mirror = Mirror(parse_location(repo))
    mirror.sync()
    return mirror


def _check_run_id(run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith("-") or not all(c.isalnum() or c in "-_." for c in run_id):
        raise UnknownRun(f"not a run id: {run_id!r}")


def apply(repo: str, run_id: str, *, mirror: Mirror | None = None) -> ApplyOutcome:
    """Move every branch staged by `run_id` in one atomic transaction, each with a lease on
    the sha it had when the run planned it; branches that moved since are left alone."""
    _check_run_id(run_id)
    mirror = mirror or _synced_mirror(repo)
    mirror.fetch_namespace(["staged"], run_id)
    for attempt in range(3):
        refs = _refs_of_run(mirror, run_id)
        backups = _run_refs(refs, "backup", run_id)
        staged = _run_refs(refs, "staged", run_id)
        busy = checked_out_branches(mirror.location)
        outcome = ApplyOutcome()
        specs: list[str] = []
        leases: dict[str, str] = {}
        for name, new in sorted(staged.items()):
            ref = _branch_ref(name)
            current = refs.get(ref)
            if current == new:
                outcome.already.append(name)
            elif current != backups.get(name):
                outcome.stale.append(name)
            elif ref in busy:
                outcome.refused[name] = "checked out in a working tree of the repository; not moved"
            else:
                specs += [f"{new}:{ref}", f"{new}:{applied_ref(run_id, name)}"]
                leases[ref] = backups[name]
                outcome.applied.append(name)
        try:
            mirror.push(specs, leases=leases, atomic=True)
            return outcome
        except GitCommandError:
            if attempt == 2:
                raise
            # A lease failed: someone moved a branch between our sync and the push. Look again.
    raise AssertionError("unreachable")


@dataclass
class RollbackOutcome:
    restored: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def rollback(repo: str, run_id: str) -> RollbackOutcome:
    """Put every branch `run_id` applied back to its backup, each with a lease on the sha
    the run gave it; a branch that moved since is left alone and reported."""
    _check_run_id(run_id)
    mirror = _synced_mirror(repo)
    mirror.fetch_namespace(["backup"], run_id)
    for attempt in range(3):
        refs = _refs_of_run(mirror, run_id)
        backups = _run_refs(refs, "backup", run_id)
        applied = _run_refs(refs, "applied", run_id)
        outcome = RollbackOutcome()
        specs: list[str] = []
        leases: dict[str, str] = {}
        for name, new in sorted(applied.items()):
            ref = _branch_ref(name)
            if refs.get(ref) != new:
                outcome.stale.append(name)
                continue
            specs += [f"{backups[name]}:{ref}", f":{applied_ref(run_id, name)}"]
            leases[ref] = new
            leases[applied_ref(run_id, name)] = new
            outcome.restored.append(name)
        try:
            mirror.push(specs, leases=leases, atomic=True)
            return outcome
        except GitCommandError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass
class ConflictMap:
    target: str
    branches: list[str]
    pairs: list[dict[str, Any]]  # every pair that conflicts: left, right, paths
    checked: int  # pairs merged (those touching a common path)
    groups: list[list[str]]  # branches linked by conflicts, largest first


def conflicts(options: RunOptions) -> ConflictMap:
    """Which branches of one target conflict with each other: a `git merge` of every pair
    that changes a common file (or a file where the other has a directory), merged in
    memory by git, in parallel. Pairs with nothing in common are not merged."""
    if len(options.targets) != 1:
        raise InputError("palign conflicts looks at one target at a time: give one --onto")
    prepared = prepare(options)
    target = next(iter(prepared.targets))
    facts = {b.branch_name: b for b in prepared.plan.branches}
    files = _touched_files(prepared, target)
    names = sorted(facts)
    by_file: dict[str, set[str]] = {}
    by_dir: dict[str, set[str]] = {}
    for name in names:
        for path in files[name]:
            by_file.setdefault(path, set()).add(name)
            parts = path.split("/")
            for depth in range(1, len(parts)):
                by_dir.setdefault("/".join(parts[:depth]), set()).add(name)
    candidates = sorted(
        {
            (min(name, other), max(name, other))
            for name in names
            for path in files[name]
            for other in by_file.get(path, set()) | by_dir.get(path, set())
            if other != name
        }
    )
    pairs = [(a, facts[a].sha, b, facts[b].sha) for a, b in candidates]
    size = max(1, min(64, len(pairs) // (options.workers * 4) or 1))
    chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    results = map_local(merge_pairs, (str(prepared.mirror.path),), chunks, workers=options.workers) if chunks else []
    conflicting = sorted((r for r in results if r["conflict"]), key=lambda r: (r["left"], r["right"]))
    return ConflictMap(short_name(target), names, conflicting, len(pairs), _groups(conflicting))


def _touched_files(prepared: Prepared, target: str) -> dict[str, set[str]]:
    """Paths each branch changed since its merge base with the target."""
    repo = pygit2.Repository(str(prepared.mirror.path))
    target_id = pygit2.Oid(hex=prepared.targets[target])
    touched: dict[str, set[str]] = {}
    for planned in prepared.plan.branches:
        tip = pygit2.Oid(hex=planned.sha)
        base = repo.merge_base(tip, target_id)
        old = repo[base].peel(pygit2.Tree) if base is not None else None
        touched[planned.branch_name] = set(changed_entries(repo, old, repo[tip].peel(pygit2.Tree)))
    return touched


def _groups(pairs: list[dict[str, Any]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for pair in pairs:
        parent[root(pair["left"])] = root(pair["right"])
    groups: dict[str, list[str]] = {}
    for name in list(parent):
        groups.setdefault(root(name), []).append(name)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g))
