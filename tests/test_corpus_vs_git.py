"""`palign run` on a pull-request-like repository of 100+ branches gives, for every
branch, the verdict and tree of a sequential `git rebase` / `git merge` loop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_align  # noqa: E402
import corpus  # noqa: E402


@pytest.fixture(scope="module")
def pr_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "repo"
    corpus.build_corpus(path, branches=104, target_commits=120, seed=3, files_source="generated")
    return path


@pytest.mark.parametrize("strategy", ["rebase", "merge"])
def test_every_branch_matches_git(pr_corpus: Path, tmp_path: Path, strategy: str) -> None:
    branches = bench_align.list_branches(pr_corpus, "pr/*")
    assert len(branches) >= 100
    target = bench_align.list_branches(pr_corpus, "main")["main"]
    loop = bench_align.run_git_loop(pr_corpus, target, branches, strategy, tmp_path / "git")
    run = bench_align.run_palign(
        pr_corpus,
        "main",
        "pr/*",
        strategy,
        2,
        tmp_path / "report",
        env={**__import__("os").environ, "PALIGN_CACHE_DIR": str(tmp_path / "cache")},
    )
    bench_align.compare(run, loop, pr_corpus, "main")
    assert run.mismatches == []
    assert sum(run.verdicts.values()) == len(branches)
    # The corpus is made to hold every kind of outcome.
    assert "conflict" in run.verdicts and "aligned" in run.verdicts
