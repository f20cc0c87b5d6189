"""Which commits `git rebase TARGET` replays, in which order.

git replays `TARGET..BRANCH` oldest first in graph order, drops merge commits, and skips
a commit whose patch-id equals that of a commit in `BRANCH..TARGET` (unless it was empty
to begin with). We decide that in memory and ask `git rev-list --cherry-mark` only when
the answer could differ: the range holds merge commits (graph order), or a branch commit
changes the same paths with the same added and removed lines as some target commit (a
likely patch-id match, which git then confirms or not, context lines and all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygit2

from palign import git
from palign.engine.changes import ChangeIndex
from palign.engine.treeops import Changes, tree_diff
from palign.model import ZERO_SHA

SORT = pygit2.enums.SortMode

PathKey = tuple[tuple[str, str, int], ...]
LineKey = tuple[tuple[str, tuple[bytes, ...]], ...] | None  # None: binary, only git can tell
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
    lines: dict[pygit2.Oid, LineKey] = field(default_factory=dict)
    sizes: dict[pygit2.Oid, SizeKey] = field(default_factory=dict)
    blob_sizes: dict[str, int] = field(default_factory=dict)  # a commit's new blob is the next one's old

    def stripped_size(self, repo: pygit2.Repository, blob_id: str, mode: int) -> int:
        found = self.blob_sizes.get(blob_id)
        if found is None:
            found = self.blob_sizes[blob_id] = _stripped_size(repo, blob_id, mode)
        return found

    def changed_lines(self, repo: pygit2.Repository, commit: pygit2.Commit) -> LineKey:
        found = self.lines.get(commit.id)
        if found is None:
            found = _line_key(repo, commit)
            self.lines[commit.id] = found
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


def _line_key(repo: pygit2.Repository, commit: pygit2.Commit) -> LineKey:
    """Added and removed lines per path, whitespace removed as patch-ids do: if these
    differ, the patch-ids differ."""
    diff = tree_diff(commit.parents[0].tree if commit.parents else None, commit.tree, context_lines=0)
    files = []
    for patch in diff:
        assert patch is not None
        if patch.delta.is_binary:
            return None
        changed = tuple(
            line.origin.encode() + line.raw_content.translate(_WHITESPACE, b" \t\n\r\v\f")
            for hunk in patch.hunks
            for line in hunk.lines
            if line.origin in "+-"
        )
        files.append((_without_whitespace(patch.delta.new_file.path), changed))
    return tuple(sorted(files))


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
) -> Selection:
    """The commits to replay; `below` is the old tip of the branch this one is stacked on,
    whose commits are not this branch's to replay (`git rebase --onto NEW OLD`)."""
    walker = repo.walk(branch, SORT.TOPOLOGICAL | SORT.REVERSE)
    walker.hide(target)
    if below is not None:
        walker.hide(below)
    in_range = list(walker)
    own = [c for c in in_range if len(c.parent_ids) <= 1]
    upstream = [c for c in _walk(repo, target, hide=branch) if len(c.parent_ids) <= 1]
    cache.changes.ensure(repo.path, [str(c.id) for c in own + upstream])
    candidates: dict[PathKey, list[pygit2.Commit]] = {}
    for commit in own:
        if not is_empty(commit):
            candidates.setdefault(cache.key(repo, commit), []).append(commit)
    if candidates:
        for theirs in upstream:
            same_paths = candidates.get(cache.key(repo, theirs))
            if same_paths and _maybe_same_patch(repo, cache, theirs, same_paths):
                return _select_with_git(repo, branch=branch, target=target, below=below, cherry=True)
    if len(own) < len(in_range):
        # Merge commits in the range: only git's graph order is needed, no patch-ids.
        return _select_with_git(repo, branch=branch, target=target, below=below, cherry=False)
    return Selection(commits=in_range, skipped=0, used_git=False)


def _walk(repo: pygit2.Repository, start: pygit2.Oid, *, hide: pygit2.Oid) -> list[pygit2.Commit]:
    walker = repo.walk(start, SORT.NONE)
    walker.hide(hide)
    return list(walker)


def _maybe_same_patch(
    repo: pygit2.Repository, cache: PatchKeyCache, theirs: pygit2.Commit, ours: list[pygit2.Commit]
) -> bool:
    their_size = cache.size_key(repo, theirs)
    ours = [c for c in ours if cache.size_key(repo, c) == their_size]
    if not ours:
        return False
    their_lines = cache.changed_lines(repo, theirs)
    return any(their_lines is None or cache.changed_lines(repo, c) in (None, their_lines) for c in ours)


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
