"""Which commits `git rebase TARGET` replays, in which order.

git replays `TARGET..BRANCH` oldest first in graph order, drops merge commits, and skips
a commit whose patch-id equals that of a commit in `BRANCH..TARGET` (unless it was empty
to begin with). We decide that in memory where the answer is certain, and ask git where it
is not: `git rev-list --cherry-mark` over the range when it holds merge commits (graph
order), and, when a branch commit changes the same paths by the same whitespace-free sizes
as target commits (likely patch-id matches), git's patch-ids for those pairs alone
(`engine.probe`), context lines and all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygit2

from palign import git
from palign.engine.changes import ChangeIndex
from palign.engine.probe import probe_same_patches
from palign.engine.treeops import Changes
from palign.engine.upstream import PathKey, TargetSide, side_of
from palign.model import ZERO_SHA

SORT = pygit2.enums.SortMode

_WHITESPACE = bytes.maketrans(b"", b"")
SizeKey = tuple[tuple[str, int], ...]
_GITLINK = 0o160000


def _stripped_size(repo: pygit2.Repository, blob_id: str, mode: int) -> int:
    if blob_id == ZERO_SHA or mode == _GITLINK:
        return 0
    data: bytes = repo[blob_id].data  # type: ignore[attr-defined]
    return len(data.translate(_WHITESPACE, b" \t\n\r\v\f"))


@dataclass
class PatchKeyCache:
    """Per-process memo of what commits changed: target commits are diffed once per run
    (the producer fills `changes` before the workers fork), not once per branch."""

    changes: ChangeIndex = field(default_factory=ChangeIndex)
    keys: dict[pygit2.Oid, PathKey] = field(default_factory=dict)
    sizes: dict[pygit2.Oid, SizeKey] = field(default_factory=dict)
    blob_sizes: dict[str, int] = field(default_factory=dict)  # a commit's new blob is the next one's old
    sides: dict[pygit2.Oid, TargetSide] = field(default_factory=dict)  # by target (see engine.upstream)

    def stripped_size(self, repo: pygit2.Repository, blob_id: str, mode: int) -> int:
        found = self.blob_sizes.get(blob_id)
        if found is None:
            found = self.blob_sizes[blob_id] = _stripped_size(repo, blob_id, mode)
        return found

    def side(self, repo: pygit2.Repository, target: pygit2.Oid, fork_point: pygit2.Oid) -> TargetSide | None:
        """The target's side covering a branch forked at `fork_point` (engine.upstream)."""

        def diff(commits: list[pygit2.Commit]) -> None:  # one batch for what the producer did not diff
            self.changes.ensure(repo.path, [str(c.id) for c in commits if len(c.parent_ids) <= 1])

        found = side_of(repo, self.sides.get(target), target, fork_point, diff)
        if found is not None:
            self.sides[target] = found
        return found

    def key(self, repo: pygit2.Repository, commit: pygit2.Commit) -> PathKey:
        """The part of git's header-only patch-id we can compute cheaply: equal patch-ids
        imply equal keys, so different keys prove two commits are not patch-equivalent."""
        found = self.keys.get(commit.id)
        if found is None:
            items = []
            for change in self.changes.get(repo.path, str(commit.id)):
                path = _without_whitespace(change.path)  # patch-ids drop whitespace from paths too
                if change.status == "A":
                    items.append(("A", path, change.new_mode))
                elif change.status == "D":
                    items.append(("D", path, change.old_mode))
                else:
                    items.append(("M", path, 0))
            found = tuple(sorted(items))
            self.keys[commit.id] = found
        return found

    def size_key(self, repo: pygit2.Repository, commit: pygit2.Commit) -> SizeKey:
        """Per path, how much the file grew without its whitespace: equal patch-ids (which
        ignore whitespace) imply equal size keys, and reading blobs costs less than a diff."""
        found = self.sizes.get(commit.id)
        if found is None:
            items = []
            for change in self.changes.get(repo.path, str(commit.id)):
                old = self.stripped_size(repo, change.old_id, change.old_mode)
                new = self.stripped_size(repo, change.new_id, change.new_mode)
                items.append((_without_whitespace(change.path), new - old))
            found = tuple(sorted(items))
            self.sizes[commit.id] = found
        return found

    def entries(self, repo: pygit2.Repository, commit: pygit2.Commit) -> Changes:
        """Path -> new entry (None when deleted) of a non-merge commit against its parent."""
        return {
            c.path: None if c.status == "D" else (pygit2.Oid(hex=c.new_id), c.new_mode)
            for c in self.changes.get(repo.path, str(commit.id))
        }


def _without_whitespace(path: str) -> str:
    return "".join(path.split())


@dataclass(frozen=True)
class Selection:
    commits: list[pygit2.Commit]
    skipped: int  # commits git drops as already upstream (merge commits are not counted)
    used_git: bool


def is_empty(commit: pygit2.Commit) -> bool:
    if not commit.parent_ids:
        return len(commit.tree) == 0
    return commit.tree_id == commit.parents[0].tree_id


def select_commits(
    repo: pygit2.Repository,
    *,
    branch: pygit2.Oid,
    target: pygit2.Oid,
    cache: PatchKeyCache,
    below: pygit2.Oid | None = None,
    fork_point: pygit2.Oid | None = None,
) -> Selection:
    """The commits to replay; `below` is the old tip of the branch this one is stacked on,
    whose commits are not this branch's to replay (`git rebase --onto NEW OLD`).
    `fork_point`, the branch's merge base with the target when known, lets a branch
    without merge commits look the target's side up in the process's `TargetSide`."""
    walker = repo.walk(branch, SORT.TOPOLOGICAL | SORT.REVERSE)
    walker.hide(target)
    if below is not None:
        walker.hide(below)
    in_range = list(walker)
    own = [c for c in in_range if len(c.parent_ids) <= 1]
    cache.changes.ensure(repo.path, [str(c.id) for c in own])
    candidates: dict[PathKey, list[pygit2.Commit]] = {}
    for commit in own:
        if not is_empty(commit):
            candidates.setdefault(cache.key(repo, commit), []).append(commit)
    likely: list[tuple[pygit2.Commit, pygit2.Commit]] = []  # (ours, theirs) whose patch-ids may be equal
    if candidates:
        linear = len(own) == len(in_range) and below is None
        side = cache.side(repo, target, fork_point) if linear and fork_point is not None else None
        if side is not None and fork_point is not None:
            # Linear and forked at fork_point: BRANCH..TARGET is what fork_point does not reach.
            for key, same_paths in candidates.items():
                for theirs in side.missing_from(fork_point, side.with_key(key, lambda c: cache.key(repo, c))):
                    likely += [(ours, theirs) for ours in _maybe_same_patch(repo, cache, theirs, same_paths)]
        else:
            hidden = [branch, *([below] if below else [])]
            upstream = [c for c in _walk(repo, target, hide=hidden) if len(c.parent_ids) <= 1]
            cache.changes.ensure(repo.path, [str(c.id) for c in upstream])
            for theirs in upstream:
                matching = candidates.get(cache.key(repo, theirs))
                if matching:
                    likely += [(ours, theirs) for ours in _maybe_same_patch(repo, cache, theirs, matching)]
    if len(own) < len(in_range):
        # Merge commits in the range: git's graph order (and its patch-ids, if any may match).
        return _select_with_git(repo, branch=branch, target=target, below=below, cherry=bool(likely))
    if likely:
        upstream_patches = probe_same_patches(repo, likely)
        kept = [c for c in in_range if c.id not in upstream_patches]
        return Selection(commits=kept, skipped=len(in_range) - len(kept), used_git=True)
    return Selection(commits=in_range, skipped=0, used_git=False)


def _walk(repo: pygit2.Repository, start: pygit2.Oid, *, hide: list[pygit2.Oid]) -> list[pygit2.Commit]:
    walker = repo.walk(start, SORT.NONE)
    for commit in hide:
        walker.hide(commit)
    return list(walker)


def _maybe_same_patch(
    repo: pygit2.Repository, cache: PatchKeyCache, theirs: pygit2.Commit, ours: list[pygit2.Commit]
) -> list[pygit2.Commit]:
    """Those of `ours` whose patch-id may equal that of `theirs`: the same whitespace-free
    size change per path (necessary, not sufficient). Comparing their added and removed
    lines too costs a diff of each commit, more than git's answer for the pair."""
    their_size = cache.size_key(repo, theirs)
    return [c for c in ours if cache.size_key(repo, c) == their_size]


def _select_with_git(
    repo: pygit2.Repository, *, branch: pygit2.Oid, target: pygit2.Oid, below: pygit2.Oid | None, cherry: bool
) -> Selection:
    """git's own list: `--cherry-mark` marks patches already upstream (`=`)."""
    revisions = ["--cherry-mark", "--right-only", f"{target}...{branch}"] if cherry else [f"^{target}", str(branch)]
    output = git.run_text(
        [
            "--git-dir",
            repo.path,
            "rev-list",
            "--no-merges",
            "--topo-order",
            "--reverse",
            *revisions,
            *([f"^{below}"] if below is not None else []),
        ]
    )
    commits: list[pygit2.Commit] = []
    skipped = 0
    for line in output.split():
        mark, commit = (line[0], repo[line[1:]]) if cherry else ("+", repo[line])
        if mark == "=" and not is_empty(commit):  # type: ignore[arg-type]
            skipped += 1
        else:
            commits.append(commit)  # type: ignore[arg-type]
    return Selection(commits=commits, skipped=skipped, used_git=True)
