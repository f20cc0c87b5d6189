"""A target's side of many rebases at once: its commits since a fork point, by patch key,
with which of them each one reaches.

A rebase skips the branch commits whose patch is already in `BRANCH..TARGET`. Walking that
range for every branch costs the target's whole history since the branch forked, again
and again for branches that forked near each other. A worker process instead walks the
target once, from the oldest fork point it has met, and keeps for each commit the set of
those commits it reaches (a bit set). For a branch without merge commits forked at F,
`BRANCH..TARGET` is exactly the target's commits F does not reach: the commits with a
given key are then looked up, not walked to.
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

PathKey = tuple[tuple[str, str, int], ...]  # a commit's paths and modes (selection.PatchKeyCache.key)
# Past this many commits since the oldest fork point, the bit sets would cost more memory
# (n^2/8 bytes) than the walks they spare: branches then walk their own range.
SIDE_LIMIT = 8_000


class TargetSide:
    """`walk(TARGET) ^base`, children before parents, with reachability among them."""

    def __init__(self, base: pygit2.Oid, commits: list[pygit2.Commit]):
        self.base = base
        self.position = {commit.id: index for index, commit in enumerate(commits)}
        self._base_bit = 1 << len(commits)
        reaches = [0] * len(commits)
        for index in range(len(commits) - 1, -1, -1):  # parents come after their children
            bits = 1 << index
            for parent in commits[index].parent_ids:
                found = self.position.get(parent)
                if found is not None:
                    bits |= reaches[found]
                elif parent == base:  # any other parent outside is an ancestor of base
                    bits |= self._base_bit
            reaches[index] = bits
        self._reaches = reaches
        self.commits = commits
        self._by_key: dict[PathKey, list[pygit2.Commit]] | None = None

    def with_key(self, key: PathKey, key_of: Callable[[pygit2.Commit], PathKey]) -> list[pygit2.Commit]:
        """Its non-merge commits whose patch key is `key` (keys computed once, on first use)."""
        if self._by_key is None:
            self._by_key = {}
            for commit in self.commits:
                if len(commit.parent_ids) <= 1:
                    self._by_key.setdefault(key_of(commit), []).append(commit)
        return self._by_key.get(key, [])

    def covers(self, fork_point: pygit2.Oid) -> bool:
        """Whether every commit of `TARGET..` a branch forked at `fork_point` lacks is here:
        `fork_point` is base or reaches it."""
        if fork_point == self.base:
            return True
        index = self.position.get(fork_point)
        return index is not None and bool(self._reaches[index] & self._base_bit)

    def missing_from(self, fork_point: pygit2.Oid, commits: list[pygit2.Commit]) -> list[pygit2.Commit]:
        """Those of `commits` (from this side) that `fork_point` does not reach."""
        if fork_point == self.base:
            return commits
        reached = self._reaches[self.position[fork_point]]
        return [c for c in commits if not reached >> self.position[c.id] & 1]


def side_of(
    repo: pygit2.Repository,
    kept: TargetSide | None,
    target: pygit2.Oid,
    fork_point: pygit2.Oid,
    on_new: Callable[[list[pygit2.Commit]], None],
) -> TargetSide | None:
    """The side of `target` that covers a branch forked at `fork_point`: `kept` (the side
    of the same target kept so far) when it does, else one walked from the merge base of
    its base and `fork_point` (so it covers every branch `kept` covered too). None past
    `SIDE_LIMIT` commits. `on_new` hears the commits of a new side (to diff them in one
    batch)."""
    if kept is not None and kept.covers(fork_point):
        return kept
    base = fork_point if kept is None else repo.merge_base(kept.base, fork_point)
    if base is None:
        return None
    walker = repo.walk(target, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.hide(base)
    commits = []
    for commit in walker:
        commits.append(commit)
        if len(commits) > SIDE_LIMIT:
            return None
    on_new(commits)
    side = TargetSide(base, commits)
    return side if side.covers(fork_point) else None
