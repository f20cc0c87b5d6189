"""What each commit changed, from one batched `git diff-tree --stdin` per batch of commits.

git's tree diff is several times faster than libgit2's on wide directories, and one
process answers hundreds of commits. The producer fills the index for every commit a run
will look at before the worker processes fork, so target commits are diffed once per run;
a worker started another way fills it lazily, one batch per branch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pygit2

from palign import git

SORT = pygit2.enums.SortMode


@dataclass(frozen=True)
class FileChange:
    status: str  # A, D, M or T (no renames: git's patch-ids and merges see adds and deletes)
    path: str
    old_mode: int
    new_mode: int
    old_id: str
    new_id: str


CommitChanges = tuple[FileChange, ...]


@dataclass
class ChangeIndex:
    by_commit: dict[str, CommitChanges] = field(default_factory=dict)

    def ensure(self, git_dir: str, commits: Iterable[str]) -> None:
        missing = [c for c in dict.fromkeys(commits) if c not in self.by_commit]
        if missing:
            self.by_commit.update(_diff_tree(git_dir, missing))

    def get(self, git_dir: str, commit: str) -> CommitChanges:
        found = self.by_commit.get(commit)
        if found is None:
            self.ensure(git_dir, [commit])
            found = self.by_commit[commit]
        return found


_DIFF_TREE = ["diff-tree", "--stdin", "-r", "-z", "--no-renames", "--root", "--always", "--raw"]


class PendingDiff:
    """`git diff-tree` of many commits running in the background (worker processes may
    fork meanwhile)."""

    def __init__(self, git_dir: str, commits: list[str]) -> None:
        self.commits = commits
        self._process = git.Background(["--git-dir", git_dir, *_DIFF_TREE], _lines(commits))

    def result(self) -> dict[str, CommitChanges]:
        return _parse_raw(self._process.result(), self.commits)


def _lines(commits: Iterable[str]) -> bytes:
    return "".join(f"{c}\n" for c in commits).encode()


def _diff_tree(git_dir: str, commits: list[str]) -> dict[str, CommitChanges]:
    return _parse_raw(git.run(["--git-dir", git_dir, *_DIFF_TREE], stdin=_lines(commits)), commits)


def _parse_raw(output: bytes, commits: list[str]) -> dict[str, CommitChanges]:
    result: dict[str, list[FileChange]] = {c: [] for c in commits}
    current: list[FileChange] | None = None
    fields = output.split(b"\0")
    index = 0
    while index < len(fields):
        token = fields[index]
        if token.startswith(b":"):
            old_mode, new_mode, old_id, new_id, status = token[1:].decode().split(" ")
            path = fields[index + 1].decode("utf-8", "surrogateescape")
            assert current is not None
            current.append(FileChange(status[0], path, int(old_mode, 8), int(new_mode, 8), old_id, new_id))
            index += 2
            continue
        token = token.strip()
        if token:
            current = result.setdefault(token.decode(), [])
        index += 1
    return {c: tuple(changes) for c, changes in result.items()}


# Past this many commits the producer stops diffing ahead; workers diff what they need.
PRELOAD_LIMIT = 50_000


def commits_of_run(
    repo: pygit2.Repository, target_sha: str, branches: Iterable[str], *, oldest_fork: str | None = None
) -> list[str]:
    """The non-merge commits rebasing `branches` (shas) onto `target_sha` may diff:
    everything since their common fork point, in one walk (a superset of each branch's own
    range and of the target commits since it forked).

    `oldest_fork`, when the caller knows each branch's merge base with the target (the
    planner's facts), is the oldest of them: libgit2's octopus merge base of hundreds of
    tips costs as much as the whole walk again."""
    tips = [pygit2.Oid(hex=sha) for sha in dict.fromkeys(branches)]
    if not tips:
        return []
    target = pygit2.Oid(hex=target_sha)
    base = pygit2.Oid(hex=oldest_fork) if oldest_fork else repo.merge_base_octopus([target, *tips])
    if base is None:
        return []  # unrelated histories: let each worker diff its own range
    walker = repo.walk(target, SORT.NONE)
    for tip in tips:
        walker.push(tip)
    walker.hide(base)
    commits: list[str] = []
    for commit in walker:
        if len(commit.parent_ids) <= 1:
            commits.append(str(commit.id))
            if len(commits) >= PRELOAD_LIMIT:
                break
    return commits


def touched_between(git_dir: str, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], frozenset[str]]:
    """Paths that differ between each (old, new) commit pair, in one `git diff-tree` run
    (it diffs the first commit of each input line against the others)."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return {}
    output = git.run(
        ["--git-dir", git_dir, "diff-tree", "--stdin", "-r", "-z", "--no-renames", "--always", "--name-only"],
        stdin=_lines(f"{new} {old}" for old, new in wanted),
    )
    # Output, per input line in order: the new commit's id NUL, then its paths NUL each.
    result: dict[tuple[str, str], set[str]] = {pair: set() for pair in wanted}
    position = -1
    for item in output.split(b"\0"):
        text = item.strip().decode("utf-8", "surrogateescape")
        if position + 1 < len(wanted) and text == wanted[position + 1][1]:
            position += 1
        elif item and position >= 0:
            result[wanted[position]].add(item.decode("utf-8", "surrogateescape"))
    return {pair: frozenset(paths) for pair, paths in result.items()}
