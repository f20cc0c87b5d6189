"""A short account of what aligning a branch meant: its own commits, the files its target
changed that it also touches, and one human sentence, for report.md and report.json."""

from __future__ import annotations

from typing import Any

import pygit2

from palign.model import AlignRequest, BranchResult, Status, short_name

_LISTED = 50  # commits and files listed per branch; the counts say how many in all


class Summaries:
    """Per worker process: the files a target changed since a fork point are diffed once
    for all the branches that share it."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self._target_files: dict[tuple[pygit2.Oid, pygit2.Oid], frozenset[str]] = {}

    def _files(self, old: pygit2.Oid, new: pygit2.Oid) -> frozenset[str]:
        diff = self.repo[old].peel(pygit2.Tree).diff_to_tree(self.repo[new].peel(pygit2.Tree))
        return frozenset(path for d in diff.deltas for path in {d.old_file.path, d.new_file.path})

    def of(self, request: AlignRequest, result: BranchResult) -> dict[str, Any]:
        repo = self.repo
        tip = pygit2.Oid(hex=request.old_sha)
        onto = pygit2.Oid(hex=request.onto or request.target_sha)
        base = repo.merge_base(tip, onto)
        commits: list[dict[str, str]] = []
        overlap: list[str] = []
        if base is not None:
            walker = repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
            walker.hide(base)
            commits = [
                {"sha": str(c.id), "subject": c.message.split("\n", 1)[0], "outcome": _outcome(result, str(c.id))}
                for c in walker
            ]
            key = (base, onto)
            if key not in self._target_files:
                self._target_files[key] = self._files(base, onto)
            overlap = sorted(self._files(base, tip) & self._target_files[key])
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
