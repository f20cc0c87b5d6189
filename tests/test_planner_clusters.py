"""Clusters of branches touching the same files: the link rule, transitivity, ids, and
the prefix-filtered index giving exactly what comparing all pairs gives."""

from __future__ import annotations

import random

import pytest

from palign.planner.clusters import similar
from palign.planner.plan import cluster


def _brute_force(touched: dict[str, frozenset[str]], threshold: float) -> set[frozenset[str]]:
    groups = {name: {name} for name in touched}
    names = sorted(touched)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if similar(touched[a], touched[b], threshold) and groups[a] is not groups[b]:
                merged = groups[a] | groups[b]
                for name in merged:
                    groups[name] = merged
    return {frozenset(g) for g in groups.values()}


def _groups(ids: dict[str, str]) -> set[frozenset[str]]:
    by_id: dict[str, set[str]] = {}
    for name, cid in ids.items():
        by_id.setdefault(cid, set()).add(name)
    return {frozenset(g) for g in by_id.values()}


def test_clusters_are_transitive_and_every_branch_gets_an_id() -> None:
    touched = {
        "a": frozenset({"x", "y"}),
        "b": frozenset({"y", "z"}),
        "c": frozenset({"z", "w"}),  # shares nothing with a, joined through b
        "d": frozenset({"lonely"}),
        "e": frozenset(),
        "f": frozenset({"q"}),
        "g": frozenset({"q", "r"}),
    }
    assert cluster(touched) == {"a": "c1", "b": "c1", "c": "c1", "f": "c2", "g": "c2", "d": "c3", "e": "c4"}


def test_one_shared_path_is_not_enough_below_the_threshold() -> None:
    a = frozenset({"CHANGELOG", *(f"a{i}" for i in range(9))})
    b = frozenset({"CHANGELOG", *(f"b{i}" for i in range(9))})
    assert cluster({"a": a, "b": b}) == {"a": "c1", "b": "c2"}
    assert cluster({"a": a, "b": b}, threshold=0.0) == {"a": "c1", "b": "c1"}


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.7, 1.0])
def test_clusters_equal_all_pairs_and_are_deterministic(threshold: float) -> None:
    rng = random.Random(threshold)
    pool = [f"src/{i}.py" for i in range(60)] + ["CHANGELOG", "setup.py"]
    touched = {f"br{i:03d}": frozenset(rng.sample(pool, rng.randint(0, 8))) for i in range(150)}
    ids = cluster(touched, threshold)
    assert _groups(ids) == _brute_force(touched, threshold)
    shuffled = list(touched.items())
    rng.shuffle(shuffled)
    assert cluster(dict(shuffled), threshold) == ids


def test_clusters_scale_with_hot_and_shared_paths() -> None:
    """1,000 branches x 50 paths, a few paths touched by everyone, many near-duplicates."""
    hot = [f"hot{i}" for i in range(5)]
    touched = {f"b{i:04d}": frozenset(hot + [f"mod{i % 40}/{j}" for j in range(45)]) for i in range(1000)}
    ids = cluster(touched)
    assert len(set(ids.values())) == 40


def test_cluster_threshold_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        cluster({}, 1.5)
