"""Every input check of a run, and its plan. Nothing is written to REPO or anywhere else
before `prepare` has returned: bad input fails here, with one line.

A run is prepared by: checking the options, reading palign.toml, the plan file and the
bases a local REPO declares (`palign.declared`), syncing the mirror, resolving the
targets, selecting the branches, gathering the planner's facts (in shares over processes
for large runs), planning, and turning the plan into align requests grouped in units of
work (a stack per unit).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from palign.config import load as load_config
from palign.declared import declared_bases
from palign.engine.changes import ChangeIndex, PendingDiff, commits_of_run
from palign.engine.facts import facts_of_share, gather_facts
from palign.engine.objects import committer_identity
from palign.engine.repository import Repository, open_repository, resolve_commit
from palign.errors import InputError, NoBranchMatched, UnknownTarget
from palign.executor.local import map_local
from palign.model import (
    BRANCH_PREFIX,
    PALIGN_NAMESPACE,
    AlignRequest,
    BranchResult,
    Identity,
    Sha,
    Status,
    Steps,
    Strategy,
    WorkUnit,
    branch_ref,
    short_name,
    unaligned,
)
from palign.planner.model import BranchFacts, LeftOut, Plan, PlanEntry
from palign.planner.plan import make_plan
from palign.planner.planfile import read_plan_file
from palign.planner.selection import matching_glob, shared_bases
from palign.records import CircuitBreaker, PlanInfo
from palign.settings import Settings
from palign.transport import Mirror, mirror_of
from palign.validation.checks import Check, from_commands

DEFAULT_PRIORITY = 5  # of a run on Celery workers: 0 runs first, 9 last
# Below this many branches the planner's facts are gathered in this process.
_PARALLEL_FACTS_FROM = 200
# Above it, in shares of at least this many branches, up to 4 a process: progress shows as
# each ends, and a share's fixed cost (a git process, walks of each target's side: 0.1 s on
# pytest's history) stays small beside its branches.
_FACTS_SHARE = 500


@dataclass(frozen=True)
class RunOptions:
    """What a run is asked to do (the options of `palign run`, `plan` and `conflicts`)."""

    repo: str
    targets: Sequence[str]
    branch_globs: Sequence[str] = ()
    strategy: Strategy = Strategy.REBASE
    workers: int = 1
    apply: bool = False
    config: Path | None = None  # palign.toml (default: ./palign.toml when present)
    plan_file: Path | None = None  # a plan file to execute (`palign plan --json`, or another tool's)
    validate: Sequence[str] = ()  # --validate commands; they replace palign.toml's [validate]
    baseline: bool = False  # a failing check also runs on the original commit
    # Distributed mode: a Redis URL hands the plan to Celery workers instead of the local pool.
    broker: str | None = None
    distributed: bool = False  # on Celery workers through the broker of the environment (PALIGN_BROKER_URL[_FILE])
    priority: int | None = None  # 0 runs first, 9 last (Redis priority lists); None: DEFAULT_PRIORITY
    circuit_breaker: str | None = None  # "COUNT,PERCENT": stop once failures pass both
    wait: bool = True  # wait for a distributed run's report
    timeout: float | None = None  # ... at most this long

    def check(self) -> None:
        """The options that cannot go together, or out of range: one line each."""
        if not self.targets and self.plan_file is None:
            raise InputError("give --onto TARGET, or --plan FILE whose branches name their targets")
        if self.workers < 1:
            raise InputError(f"--workers must be at least 1 (got {self.workers})")
        if self.priority is not None and not 0 <= self.priority <= 9:
            raise InputError(f"--priority must be 0-9 (got {self.priority})")
        if not self.on_workers and self.workers_only_options:
            given = self.workers_only_options
            named = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
            raise InputError(
                f"{named} only {'apply' if len(given) > 1 else 'applies'} to a run on Celery workers: "
                "add --broker URL or --distributed"
            )
        if self.on_workers and self.validate:
            raise InputError(
                "with --broker, checks are named, never sent: define them in palign.toml [validate] "
                "on the producer (--config) and on the workers (palign worker --config)"
            )
        if self.circuit_breaker is not None:
            CircuitBreaker.parse(self.circuit_breaker)

    @property
    def on_workers(self) -> bool:
        """A distributed run: on Celery workers, not the local pool."""
        return self.distributed or self.broker is not None

    @property
    def workers_only_options(self) -> list[str]:
        """The options given that only a run on Celery workers uses."""
        given = {
            "--no-wait": not self.wait,
            "--priority": self.priority is not None,
            "--circuit-breaker": self.circuit_breaker is not None,
            "--timeout": self.timeout is not None,
        }
        return [option for option, is_given in given.items() if is_given]

    @property
    def queue_priority(self) -> int:
        return DEFAULT_PRIORITY if self.priority is None else self.priority

    @property
    def breaker(self) -> CircuitBreaker | None:
        return CircuitBreaker.parse(self.circuit_breaker) if self.circuit_breaker else None


@dataclass
class Prepared:
    """A checked and planned run: nothing has been written anywhere yet."""

    mirror: Mirror
    targets: dict[str, Sha]  # target ref -> commit sha
    plan: Plan
    requests: dict[str, AlignRequest]  # by branch short name
    units: list[WorkUnit]
    diffing: PendingDiff | None = None  # what the run's commits changed, diffed while planning
    checks: tuple[Check, ...] = field(default=())  # the operator's checks for each aligned result
    refused: list[BranchResult] = field(default_factory=list)  # selected, but left alone (their names)

    def changes_ready(self) -> ChangeIndex | None:
        if self.diffing is None:
            return None
        index = ChangeIndex()
        index.by_commit.update(self.diffing.result())
        self.diffing = None
        return index

    def plan_info(self) -> dict[str, PlanInfo]:
        """What the report says of each branch's plan, by branch name."""
        return {
            b.branch_name: PlanInfo(b.category.value, b.cluster_id, b.parent, b.confidence, b.stale)
            for b in self.plan.branches
        }

    def as_forecast(self) -> Prepared:
        """The same run as a dry run: only each branch's outcome is wanted, no checks."""
        units = [[[replace(r, forecast=True) for r in level] for level in unit] for unit in self.units]
        requests = {name: replace(r, forecast=True) for name, r in self.requests.items()}
        return replace(self, units=units, requests=requests, checks=())


def prepare(
    options: RunOptions, settings: Settings, *, diff_ahead: bool = False, on_step: Steps | None = None
) -> Prepared:
    """Every input check, and the plan: raises InputError before anything is written.
    `diff_ahead` diffs the commits alignment will look at while the planner works;
    `on_step` hears the long steps start and advance (the mirror, the facts)."""
    options.check()
    config = load_config(options.config)
    entries = read_plan_file(options.plan_file) if options.plan_file is not None else []
    mirror = mirror_of(options.repo, settings)
    bases = declared_bases(mirror.location.local_path)  # a malformed layout fails before the sync
    if on_step is not None:
        on_step("syncing the mirror", 0, 0)
    mirror.sync()
    refs = mirror.ref_values("refs/")
    repo = open_repository(str(mirror.path))
    targets: dict[str, Sha] = {}
    asked = [(name, "") for name in options.targets] or _plan_targets(entries, options.plan_file)
    for name, where in asked:
        ref = _resolve_target(refs, name, where)
        targets[ref] = resolve_commit(repo, name, refs[ref])
    config.check_rule_targets(list(targets))
    by_default = not options.branch_globs and not entries  # palign chooses: long-lived branches stay out
    if entries and not options.branch_globs:
        branches = [_planned_ref(entry.branch_name, entry.line, refs) for entry in entries]
    else:
        branches = select_branches(refs, options.branch_globs, exclude=set(targets), long_lived=config.long_lived)
    long_lived = _long_lived(refs, set(targets), config.long_lived)
    left_out = [
        LeftOut(short_name(ref), "long_lived", glob)
        for ref, glob in sorted(long_lived.items())
        if by_default and ref.startswith(BRANCH_PREFIX)
    ]
    refused = [_unnamed(ref, refs[ref], next(iter(targets))) for ref in branches if not _utf8(ref)]
    branches = [ref for ref in branches if _utf8(ref)]
    if not branches:
        raise NoBranchMatched("no selected branch has a UTF-8 name: palign leaves such branches alone")
    names = {short_name(ref): ref for ref in targets}
    facts = _gather_facts(
        mirror.path,
        {ref: refs[ref] for ref in branches},
        {n: targets[r] for n, r in names.items()},
        {ref: refs[ref] for ref in long_lived},
        options.workers,
        on_step,
    )
    if by_default:
        shared = shared_bases(facts, list(names))
        shared_names = {base.branch_name for base in shared}
        facts = [fact for fact in facts if fact.name not in shared_names]
        left_out += shared
        if not facts:
            raise NoBranchMatched(f"no branch to align: {_left_out_summary([b.branch_name for b in left_out])}")
    diffing = _diff_in_background(repo, {n: targets[r] for n, r in names.items()}, facts) if diff_ahead else None
    plan = make_plan(
        facts,
        list(names),
        config.rules,
        config.dependencies,
        config.stale_days,
        time.time(),
        entries=entries,
        bases=bases,
        cluster_threshold=config.cluster_threshold,
    )
    plan = replace(plan, left_out=left_out)
    requests: dict[str, AlignRequest] = {}
    facts_of = {fact.name: fact for fact in facts}
    for planned in plan.branches:
        target_ref = names[planned.assigned_target]
        orphan = planned.category.value == "orphan"
        requests[planned.branch_name] = AlignRequest(
            refname=planned.refname,
            old_sha=Sha(planned.sha),
            target=target_ref,
            target_sha=targets[target_ref],
            strategy=options.strategy,
            cost=planned.cost,
            ahead=-1 if orphan else planned.ahead,
            behind=-1 if orphan else planned.behind,
            parent=plan.branch(planned.parent).refname if planned.parent is not None else None,
            fork_point=_fork_point(facts_of[planned.branch_name], planned.assigned_target),
        )
    units = [[[requests[name] for name in level] for level in unit.levels] for unit in plan.units]
    checks = from_commands(options.validate) if options.validate else config.checks
    return Prepared(mirror, targets, plan, requests, units, diffing, checks, refused)


def _fork_point(facts: BranchFacts, target: str) -> Sha | None:
    base = facts.on(target).merge_base
    return Sha(base) if base is not None else None


def _plan_targets(entries: Sequence[PlanEntry], plan_file: Path | None) -> list[tuple[str, str]]:
    """A run's targets when only a plan file is given: those its branches are assigned
    to, in the order they first appear (the first one takes ties for unplanned branches),
    each with where the plan file first names it."""
    if not entries:
        raise InputError(f"plan file {str(plan_file)!r} has no branches to take targets from: give --onto")
    first: dict[str, str] = {}
    for entry in entries:
        first.setdefault(entry.assigned_target, f"plan file line {entry.line}: ")
    return list(first.items())


def _planned_ref(name: str, line: int, refs: dict[str, str]) -> str:
    """The branch a plan file names. Plan files are not trusted: they name branches only
    (refs/heads/...); other refs (tags, pull requests) are selected with --branch."""
    ref = branch_ref(name)
    if not ref.startswith(BRANCH_PREFIX):
        raise InputError(f"plan file line {line}: {name!r} is not a branch (select other refs with --branch)")
    if ref not in refs:
        raise InputError(f"plan file line {line}: no branch {name!r} in the repository")
    return ref


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a name git allows but text cannot carry (reports, Redis, JSON)
        return False
    return True


def _unnamed(ref: str, sha: str, target: str) -> BranchResult:
    """The result of a branch whose name is not UTF-8: left alone, and said so."""
    shown = ref.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    message = "its name is not UTF-8 text: palign leaves this branch alone"
    return unaligned(shown, target, Sha(sha), Status.ERROR, "unsupported_branch_name", message)


def run_identity(git_config: dict[str, str], settings: Settings) -> Identity:
    """Who commits a run's rewritten commits (palign's settings, else REPO's git config),
    and when: one pinned time per run."""
    identity = committer_identity(
        git_config.get("user.name"),
        git_config.get("user.email"),
        name=settings.committer_name,
        email=settings.committer_email,
    )
    return replace(identity, when=int(time.time()))


def _resolve_target(refs: dict[str, str], name: str, where: str = "") -> str:
    for candidate in (name, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/remotes/{name}"):
        if candidate.startswith("refs/") and candidate in refs and not candidate.startswith(PALIGN_NAMESPACE):
            return candidate
    close = difflib.get_close_matches(name, [short_name(ref) for ref in refs if ref.startswith(BRANCH_PREFIX)], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownTarget(f"{where}unknown target: {name!r} is not a branch or ref of the repository{hint}")


def select_branches(
    refs: dict[str, str], globs: Sequence[str], exclude: set[str], long_lived: Sequence[str] = ()
) -> list[str]:
    """Branch refs to align: those whose short name (or full ref name, for globs starting
    with refs/) matches a glob, exactly as asked; without globs, every branch but the
    long-lived ones (`long_lived` globs: trunks, maintenance and release lines). Targets
    are never selected."""
    if globs:
        chosen = [
            ref
            for ref in refs
            if ref not in exclude and not ref.startswith(PALIGN_NAMESPACE) and matching_glob(ref, globs) is not None
        ]
        if not chosen:
            raise NoBranchMatched(f"no branch matches {', '.join(repr(g) for g in globs)}")
    else:
        branches = [ref for ref in refs if ref.startswith(BRANCH_PREFIX) and ref not in exclude]
        if not branches:
            raise NoBranchMatched("the repository has no branches besides the target")
        chosen = [ref for ref in branches if matching_glob(ref, long_lived) is None]
        if not chosen:
            raise NoBranchMatched(f"no branch to align: {_left_out_summary([short_name(r) for r in branches])}")
    return sorted(chosen)


def _long_lived(refs: dict[str, str], targets: set[str], globs: Sequence[str]) -> dict[str, str]:
    """The long-lived refs besides the targets (selected or not), each with the glob naming it."""
    found = {}
    for ref in refs:
        if ref not in targets and not ref.startswith(PALIGN_NAMESPACE) and (glob := matching_glob(ref, globs)):
            found[ref] = glob
    return found


def _left_out_summary(names: Sequence[str]) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (
        f"every branch besides the targets is long-lived ([plan] long_lived) or a base others fork from ({shown});"
        " select branches with --branch"
    )


def _gather_facts(
    mirror_path: Path,
    branch_refs: dict[str, str],
    targets: dict[str, Sha],
    long_lived: dict[str, str],
    workers: int,
    on_step: Steps | None = None,
) -> list[BranchFacts]:
    """The planner's facts, in shares over the worker processes for large runs."""
    total = len(branch_refs)

    def advanced(done: int) -> None:
        if on_step is not None:
            on_step("gathering facts", done, total)

    advanced(0)
    if workers < 2 or total < _PARALLEL_FACTS_FROM:
        return gather_facts(
            open_repository(str(mirror_path)), branch_refs, targets, long_lived=long_lived, on_branch=advanced
        )
    refs = list(branch_refs)
    count = max(workers, min(4 * workers, total // _FACTS_SHARE))
    shares = [{ref: branch_refs[ref] for ref in refs[i::count]} for i in range(count)]
    gathered = 0

    def share_done(share_facts: list[BranchFacts]) -> None:
        nonlocal gathered
        gathered += len(share_facts)
        advanced(gathered)

    facts = map_local(
        facts_of_share,
        (str(mirror_path),),
        [(share, branch_refs, dict(targets), long_lived) for share in shares],
        workers=workers,
        on_chunk=share_done,
    )
    order = {ref: i for i, ref in enumerate(refs)}
    return sorted(facts, key=lambda fact: order[fact.refname])


def _diff_in_background(repo: Repository, targets: dict[str, Sha], facts: Sequence[BranchFacts]) -> PendingDiff:
    """Start diffing every commit a run may look at (one git process running beside the
    planner; its result is read before any worker process forks for the alignment).
    `targets` are keyed by short name, as the facts are."""
    tips = [fact.sha for fact in facts]
    commits: list[str] = []
    for name, target_sha in targets.items():
        forks = [(seen.behind, seen.merge_base) for fact in facts if (seen := fact.on(name)).merge_base]
        if forks:
            commits += commits_of_run(repo, target_sha, tips, oldest_fork=max(forks)[1])
    return PendingDiff(repo.path, commits)
