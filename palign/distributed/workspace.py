"""What a worker process keeps for the run it serves: its machine's mirror of REPO (in
the cache, shared by the processes of the machine under a file lock) and a scratch store
over it, where the run's aligned commits are written before they are pushed to REPO
under refs/palign/pending/ or refs/palign/staged/ (see `palign.refs`).

A worker never reads the producer's files: it knows REPO only by its URL, and finds
what other workers aligned (a stack's lower branch) in REPO's run refs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from palign import refs
from palign.engine.align import AlignContext
from palign.engine.changes import commits_of_run
from palign.engine.repository import missing, own_commits
from palign.engine.scratch import ScratchStore
from palign.errors import InfrastructureError
from palign.executor import unit
from palign.model import AlignRequest, BranchResult
from palign.records import RunSpec
from palign.settings import Settings
from palign.transport import Mirror, mirror_of

log = logging.getLogger("palign.worker")


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
        unit.forget(str(self.scratch.path))
        self.scratch.__exit__(None, None, None)


_current: Workspace | None = None


def workspace_for(spec: RunSpec, settings: Settings) -> Workspace:
    """This process's workspace for the run; the previous run's is removed first."""
    global _current
    if _current is not None and _current.run_id == spec.run_id:
        return _current
    close()
    mirror = mirror_of(spec.repo, settings)
    if not (mirror.path / "HEAD").exists():
        mirror.sync()
    else:
        mirror.note_use()
    scratch = ScratchStore(
        mirror.path, f"run-{spec.run_id}", root=settings.scratch_dir, git_config=spec.git_config
    ).__enter__()
    context = unit.context_for(str(scratch.path), spec.identity, shared=str(mirror.path))
    _current = Workspace(spec.run_id, mirror, scratch, context)
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
    if missing(repo, needed):
        workspace.mirror.sync()
    lower_tips = [r for r in lower if r.new_sha and missing(repo, [r.new_sha])]
    if lower_tips:
        refs.fetch_run_refs(workspace.mirror, refs.Kind.STAGED, workspace.run_id, [r.branch_name for r in lower_tips])
    lost = missing(repo, needed | {r.new_sha for r in lower_tips if r.new_sha})
    if lost:
        raise InfrastructureError(f"REPO no longer has {', '.join(m[:12] for m in lost)}")
    by_target: dict[str, list[str]] = {}
    for request in requests:
        by_target.setdefault(request.target_sha, []).append(request.old_sha)
    commits: list[str] = []
    for target, tips in by_target.items():
        if target in workspace.diffed_targets:  # the target's side is known: only the branches' own
            commits += own_commits(repo, target, tips)
        else:
            commits += commits_of_run(repo, target, tips)
            workspace.diffed_targets.add(target)
    workspace.context.cache.changes.ensure(str(workspace.scratch.path), commits)  # skips those known


def publish(
    workspace: Workspace,
    requests: Sequence[AlignRequest],
    results: Sequence[BranchResult],
    lower: Iterable[BranchResult] = (),
    *,
    pending: bool = False,
) -> None:
    """Write the aligned tips to REPO's staging refs (or, with `pending`, where they wait
    for their checks), each created only if absent."""
    wanted = refs.tips_to_publish(refs.Kind.PENDING if pending else refs.Kind.STAGED, workspace.run_id, results)
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
    _create(workspace, wanted, objects_from, have)


def _create(
    workspace: Workspace, wanted: dict[str, str], objects_from: Path | None, have: Sequence[str] | None = None
) -> None:
    already = refs.create_once(workspace.mirror, wanted, objects_from=objects_from, have=have)
    if already:
        log.info("run %s: %d refs were already written (a repeated task)", workspace.run_id, already)


def ensure_pending(workspace: Workspace, results: Sequence[BranchResult]) -> None:
    """Make the aligned commits waiting for their checks readable here (they may have been
    aligned on another machine)."""
    repo = workspace.context.repo
    absent = [r for r in results if r.new_sha and missing(repo, [r.new_sha])]
    if absent:
        refs.fetch_run_refs(workspace.mirror, refs.Kind.PENDING, workspace.run_id, [r.branch_name for r in absent])
    lost = [r.branch_name for r in absent if r.new_sha and missing(repo, [r.new_sha])]
    if lost:
        raise InfrastructureError(f"the aligned results of {', '.join(lost)} are not in REPO")


def promote(workspace: Workspace, checked: Sequence[BranchResult]) -> None:
    """After the checks: each passing result gets its staging ref (created only if absent;
    a repeat finds it done). Pending refs stay, so a failing result can be inspected at
    refs/palign/pending/RUN/BRANCH; deleting them here would make concurrent workers
    contend for REPO's packed-refs lock."""
    wanted = refs.tips_to_publish(refs.Kind.STAGED, workspace.run_id, checked)
    if not wanted:
        return
    # Pushed from the scratch store, which sees this machine's own results as well as the
    # mirror's (a result aligned here may exist nowhere else on this machine).
    _create(workspace, wanted, None if workspace.mirror.writes_in_place else workspace.scratch.path)
