"""A short account of what aligning a branch meant: its own commits, the files its target
changed that it also touches, and one human sentence, for report.md and report.json."""

from __future__ import annotations

from typing import Any

import pygit2

from palign.engine.selection import PatchKeyCache
from palign.model import AlignRequest, BranchResult, Status, short_name

_LISTED = 50  # commits and files listed per branch; the counts say how many in all


class Summaries:
    """Per worker process. Files come from the commits' changes the engine already diffed
    (non-merge commits; a merge's changes are those of the commits it brings), and the
    target's side is gathered once per fork point for all the branches that share it."""

    def __init__(self, repo: pygit2.Repository, cache: PatchKeyCache) -> None:
        self.repo = repo
        self.cache = cache
        self._target_files: dict[tuple[pygit2.Oid, pygit2.Oid], frozenset[str]] = {}

    def _files(self, commits: list[pygit2.Commit]) -> set[str]:
        plain = [c for c in commits if len(c.parent_ids) <= 1]
        self.cache.changes.ensure(self.repo.path, [str(c.id) for c in plain])  # one batch for any not diffed
        return {path for c in plain for path in self.cache.entries(self.repo, c)}

    def _range(self, tip: pygit2.Oid, base: pygit2.Oid, order: pygit2.enums.SortMode) -> pygit2.Walker:
        walker = self.repo.walk(tip, order)
        walker.hide(base)
        return walker

    def of(self, request: AlignRequest, result: BranchResult) -> dict[str, Any]:
        repo = self.repo
        tip = pygit2.Oid(hex=request.old_sha)
        onto = pygit2.Oid(hex=request.onto or request.target_sha)
        if request.onto is None and request.fork_point is not None:
            base: pygit2.Oid | None = pygit2.Oid(hex=request.fork_point)
        else:
            base = repo.merge_base(tip, onto)
        own: list[pygit2.Commit] = []
        overlap: list[str] = []
        if base is not None:
            order = pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE
            own = list(self._range(tip, base, order))
            key = (base, onto)
            if key not in self._target_files:
                side = self.cache.sides.get(onto)  # the rebase's view of the target, when it has one
                if side is not None and side.covers(base):
                    target_side = side.missing_from(base, side.commits)
                else:
                    target_side = list(self._range(onto, base, pygit2.enums.SortMode.NONE))
                self._target_files[key] = frozenset(self._files(target_side))
            mine = self._files(own)
            overlap = sorted(mine & self._target_files[key])
        commits = [
            {"sha": str(c.id), "subject": c.message.split("\n", 1)[0], "outcome": _outcome(result, str(c.id))}
            for c in own
        ]
        onto_name = short_name(request.parent) if request.parent else short_name(request.target)
        return {
            "own_commits": len(commits),
            "commits": commits[:_LISTED],
            "files_both_changed": overlap[:_LISTED],
            "files_both_changed_count": len(overlap),
            "summary": _sentence(result, onto_name, len(overlap)),
        }


def _outcome(result: BranchResult, commit: str) -> str:
    """What the alignment did with one of the branch's own commits."""
    rebased = result.strategy_used is not None and result.strategy_used.value == "rebase"
    if rebased and result.status in (Status.ALIGNED, Status.FAILED_VALIDATION, Status.MERGED):
        # dropped: already upstream, emptied by the target, or a merge commit
        return "replayed" if commit in result.replayed_commits else "skipped"
    if result.status is Status.UP_TO_DATE or (result.status is Status.ALIGNED and not rebased):
        return "kept"
    return "not_aligned"


def _sentence(result: BranchResult, onto: str, overlap: int) -> str:
    both = f"; {overlap} file{'s' if overlap != 1 else ''} changed on both sides" if overlap else ""
    replayed = f"{result.commits_replayed} commit{'s' if result.commits_replayed != 1 else ''}"
    skipped = f", {result.commits_skipped} already in {onto} skipped" if result.commits_skipped else ""
    if result.status is Status.UP_TO_DATE:
        return f"already contains {onto}; nothing to do"
    if result.status is Status.MERGED:
        return f"already merged into {onto}"
    if result.status is Status.CONFLICT:
        paths = sorted({c.path for c in result.conflicts})
        return f"conflicts with {onto} in {', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}{both}"
    if result.status is Status.ALIGNED and result.strategy_used is not None and result.strategy_used.value == "merge":
        return f"merged {onto} in{both}"
    if result.status in (Status.ALIGNED, Status.FAILED_VALIDATION):
        return f"{replayed} replayed onto {onto}{skipped}{both}"
    return result.error_message or result.status.value
