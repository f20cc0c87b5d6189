"""Group branches that change the same files, so users see who contends for which code.

The rule: two branches are linked when they share at least one touched path AND the
Jaccard similarity of their touched paths is >= `threshold`; clusters are the connected
components of those links (union-find, so linking is transitive). Sharing one path alone
is not enough: a CHANGELOG or lock file touched by every branch would otherwise put the
whole repository in one cluster.

Speed comes from the prefix filter of set-similarity joins (Bayardo et al., "Scaling up
all pairs similarity search"): order each branch's paths rarest first; two sets with
Jaccard >= t must share a path among the first `n - ceil(t * n) + 1` paths of each. Only
those prefixes are indexed (path -> branches), so paths nearly every branch touches are
rarely looked at. Index entries are grouped by current component, and a component
already joined is never checked again, so 1,000 near-identical branches cost little too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

_EPSILON = 1e-9  # float slack: 0.7 * 10 must count as 7, not 7.000000000000001


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving
            item = parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _prefix_length(size: int, threshold: float) -> int:
    return max(1, min(size, size - math.ceil(threshold * size - _EPSILON) + 1))


def similar(a: frozenset[str], b: frozenset[str], threshold: float) -> bool:
    """The link rule: at least one shared path and Jaccard(a, b) >= threshold."""
    shared = len(a & b)
    if shared == 0:
        return False
    return shared >= threshold * (len(a) + len(b) - shared) - _EPSILON


def _regroup(groups: dict[int, list[int]], uf: _UnionFind) -> dict[int, list[int]]:
    """Re-key one index entry by current component roots, merging groups that joined."""
    merged: dict[int, list[int]] = {}
    for root, members in groups.items():
        current = uf.find(root)
        have = merged.get(current)
        if have is None:
            merged[current] = members
        elif len(have) >= len(members):
            have.extend(members)
        else:
            members.extend(have)
            merged[current] = members
    return merged


def cluster(touched: Mapping[str, frozenset[str]], threshold: float = 0.2) -> dict[str, str]:
    """Cluster id (`c1`, `c2`, ...) of every branch: largest cluster first, then by the
    smallest branch name in it; branches linked to nothing get their own id."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"cluster threshold must be between 0 and 1 (got {threshold})")
    names = sorted(touched)
    frequency = Counter(path for name in names for path in touched[name])
    uf = _UnionFind(len(names))
    index: dict[str, dict[int, list[int]]] = {}
    for i, name in enumerate(names):
        paths = touched[name]
        if not paths:
            continue
        ordered = sorted(paths, key=lambda p: (frequency[p], p))
        for path in ordered[: _prefix_length(len(ordered), threshold)]:
            groups = _regroup(index.get(path, {}), uf)
            for root, members in groups.items():
                if uf.find(root) == uf.find(i):
                    continue
                for j in members:
                    if similar(paths, touched[names[j]], threshold):
                        uf.union(i, j)
                        break
            groups.setdefault(uf.find(i), []).append(i)
            index[path] = groups
    components: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        components.setdefault(uf.find(i), []).append(name)
    ordered_components = sorted(components.values(), key=lambda members: (-len(members), members[0]))
    return {name: f"c{number}" for number, members in enumerate(ordered_components, 1) for name in members}


def components(links: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The groups of names these links connect (transitively): each group sorted, the
    largest first, then by their first name."""
    pairs = list(links)
    names = sorted({name for pair in pairs for name in pair})
    index = {name: i for i, name in enumerate(names)}
    uf = _UnionFind(len(names))
    for left, right in pairs:
        uf.union(index[left], index[right])
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(uf.find(index[name]), []).append(name)
    return sorted(groups.values(), key=lambda group: (-len(group), group))
