"""What a worker process keeps for the run it serves: its machine's mirror of REPO (in
PALIGN_CACHE_DIR, shared by the processes of the machine under a file lock) and a
scratch store over it, where the run's aligned commits are written before they are
pushed to REPO under refs/palign/staged/<run>/.

A worker never reads the producer's files: it knows REPO only by its URL, and finds
what other workers aligned (a stack's lower branch) in REPO's staging refs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from palign import runtime
from palign.engine.align import AlignContext
from palign.engine.changes import commits_of_run
from palign.engine.objects import Identity
from palign.errors import GitCommandError, InfrastructureError
from palign.model import AlignRequest, BranchResult, Status, pending_ref, staged_ref
from palign.scratch import ScratchStore
from palign.transport import Mirror, parse_location

log = logging.getLogger("palign.worker")
_ZERO = "0" * 40


@dataclass
class Workspace:
    run_id: str
    mirror: Mirror
    scratch: ScratchStore
    context: AlignContext
    copied: set[str] = field(default_factory=set)  # loose objects already copied to a local REPO
    diffed_targets: set[str] = field(default_factory=set)  # targets whose history is diffed already

    def new_objects(self) -> list[str]:
        """Loose objects of the scratch store not copied to REPO yet (hex names)."""
        names = []
        root = self.scratch.path / "objects"
        for fan in os.scandir(root):
            if len(fan.name) == 2 and fan.is_dir():
                names += [fan.name + entry.name for entry in os.scandir(fan.path) if len(entry.name) == 38]
        return [name for name in names if name not in self.copied]

    def close(self) -> None:
        runtime.forget(str(self.scratch.path))
        self.scratch.__exit__(None, None, None)


_current: Workspace | None = None


def workspace_for(run_id: str, repo_url: str, identity: Identity, settings: dict[str, str]) -> Workspace:
    """This process's workspace for `run_id`; the previous run's is removed first."""
    global _current
    if _current is not None and _current.run_id == run_id:
        return _current
    close()
    mirror = Mirror(parse_location(repo_url))
    if not (mirror.path / "HEAD").exists():
        mirror.sync()
    scratch = ScratchStore(mirror.path, f"run-{run_id}", settings=settings).__enter__()
    _current = Workspace(
        run_id, mirror, scratch, runtime.context_for(str(scratch.path), identity, shared=str(mirror.path))
    )
    return _current


def close() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


def ensure_objects(workspace: Workspace, requests: Sequence[AlignRequest], lower: Iterable[BranchResult]) -> None:
    """Make every commit these requests name readable here: fetch REPO when the mirror
    lacks a tip or target, and the run's staged refs when a lower branch of the stack was
    aligned on another machine. Then diff, in one batch, the commits alignment reads."""
    repo = workspace.context.repo
    needed = {r.old_sha for r in requests} | {r.target_sha for r in requests}
    if any(pygit2.Oid(hex=sha) not in repo for sha in needed):
        workspace.mirror.sync()
    lower_tips = [r for r in lower if r.new_sha and pygit2.Oid(hex=r.new_sha) not in repo]
    if lower_tips:
        workspace.mirror.fetch_refs([staged_ref(workspace.run_id, r.branch_name) for r in lower_tips])
    missing = [sha for sha in needed | {r.new_sha for r in lower_tips if r.new_sha} if pygit2.Oid(hex=sha) not in repo]
    if missing:
        raise InfrastructureError(f"REPO no longer has {', '.join(m[:12] for m in missing)}")
    by_target: dict[str, list[pygit2.Oid]] = {}
    for request in requests:
        by_target.setdefault(request.target_sha, []).append(pygit2.Oid(hex=request.old_sha))
    commits: list[str] = []
    for target, tips in by_target.items():
        if target in workspace.diffed_targets:  # the target's side is known: only the branches' own
            commits += _own_commits(repo, pygit2.Oid(hex=target), tips)
        else:
            commits += commits_of_run(repo, pygit2.Oid(hex=target), tips)
            workspace.diffed_targets.add(target)
    workspace.context.cache.changes.ensure(str(workspace.scratch.path), commits)  # skips those known


def _own_commits(repo: pygit2.Repository, target: pygit2.Oid, tips: Sequence[pygit2.Oid]) -> list[str]:
    walker = repo.walk(tips[0], pygit2.enums.SortMode.NONE)
    for tip in tips[1:]:
        walker.push(tip)
    walker.hide(target)
    return [str(c.id) for c in walker if len(c.parent_ids) <= 1]


def publish(
    workspace: Workspace,
    requests: Sequence[AlignRequest],
    results: Sequence[BranchResult],
    lower: Iterable[BranchResult] = (),
    *,
    pending: bool = False,
) -> None:
    """Write the aligned tips to REPO's staging refs (or, with `pending`, where they wait
    for their checks), each created only if absent (see `_create_refs`)."""
    wanted = _written_tips(workspace.run_id, results, pending_ref if pending else staged_ref)
    if not wanted:
        return
    # What REPO has below the new commits: the targets, the old tips, the lower branches'
    # results (a much smaller walk than every ref of a big repository).
    have = sorted(
        ({r.target_sha for r in requests} | {r.old_sha for r in requests} | {b.new_sha for b in lower if b.new_sha})
        - set(wanted.values())
    )
    objects_from: Path | None = workspace.scratch.path
    if workspace.mirror.writes_in_place:
        # REPO is on this machine: copy what this task wrote, then only move refs.
        fresh = workspace.new_objects()
        workspace.mirror.copy_loose_objects(workspace.scratch.path, fresh)
        workspace.copied.update(fresh)
        objects_from = None
    _create_refs(workspace, wanted, objects_from, have)


def _written_tips(run_id: str, results: Sequence[BranchResult], ref_of: Callable[[str, str], str]) -> dict[str, str]:
    """Ref -> new tip of each result that has one to publish (aligned, or merged already)."""
    return {
        ref_of(run_id, r.branch_name): str(r.new_sha)
        for r in results
        if r.status in (Status.ALIGNED, Status.MERGED) and r.new_sha
    }


def _create_refs(
    workspace: Workspace, wanted: dict[str, str], objects_from: Path | None, have: Sequence[str] | None = None
) -> None:
    """Create each ref of REPO in `wanted` (ref -> sha) only if absent, in one transaction.
    A repeated task finds some or all of them written: the same sha is fine (the run pins
    commit times, so a repeat writes the same commits), another sha is an error."""
    specs = [f"{sha}:{ref}" for ref, sha in wanted.items()]
    leases = {ref: _ZERO for ref in wanted}
    try:
        workspace.mirror.push(specs, leases=leases, atomic=True, objects_from=objects_from, have=have)
        return
    except GitCommandError:
        existing = workspace.mirror.remote_refs(*wanted)
    clashes = [ref for ref, sha in wanted.items() if existing.get(ref) not in (None, sha)]
    if clashes:
        raise InfrastructureError(f"refs of this run hold other commits: {', '.join(clashes)}")
    missing = {ref: sha for ref, sha in wanted.items() if ref not in existing}
    if missing:
        _create_refs(workspace, missing, objects_from, have)
    log.info("run %s: %d refs were already written (a repeated task)", workspace.run_id, len(existing))


def ensure_pending(workspace: Workspace, results: Sequence[BranchResult]) -> None:
    """Make the aligned commits waiting for their checks readable here (they may have been
    aligned on another machine)."""
    repo = workspace.context.repo
    missing = [r for r in results if r.new_sha and pygit2.Oid(hex=r.new_sha) not in repo]
    if missing:
        workspace.mirror.fetch_refs([pending_ref(workspace.run_id, r.branch_name) for r in missing])
    lost = [r.branch_name for r in missing if pygit2.Oid(hex=r.new_sha or "0" * 40) not in repo]
    if lost:
        raise InfrastructureError(f"the aligned results of {', '.join(lost)} are not in REPO")


def promote(workspace: Workspace, checked: Sequence[BranchResult]) -> None:
    """After the checks: each passing result gets its staging ref (created only if absent;
    a repeat finds it done). Pending refs stay, so a failing result can be inspected at
    refs/palign/pending/RUN/BRANCH; deleting them here would make concurrent workers
    contend for REPO's packed-refs lock."""
    wanted = _written_tips(workspace.run_id, checked, staged_ref)
    if not wanted:
        return
    # Pushed from the scratch store, which sees this machine's own results as well as the
    # mirror's (a result aligned here may exist nowhere else on this machine).
    _create_refs(workspace, wanted, None if workspace.mirror.writes_in_place else workspace.scratch.path)
