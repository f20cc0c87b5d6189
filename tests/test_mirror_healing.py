"""The mirror cache heals: a run on a REPO re-created at the same path (a CI job's fresh
clone), or garbage-collected after a rollback, or whose mirror lost objects, succeeds
with the same verdicts, without anyone deleting the cache; runs sharing a mirror while
it heals stay safe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from palign.demo import build_demo_repository
from tests.conftest import comparable, git_out, read_report, run_palign
from tests.gitrepo import GitRepo


def recreate(upstream: Path, path: Path) -> GitRepo:
    """A fresh clone of `upstream` with all its branches, at `path` (removed first)."""
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    fetch = ["fetch", "-q", "--update-head-ok", str(upstream), "+refs/heads/*:refs/heads/*"]
    subprocess.run(["git", "-C", str(path), *fetch], check=True)
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-f", "main"], check=True)
    return GitRepo(path)


def aligned_run(repo: GitRepo, out: Path, *extra: str) -> dict[str, Any]:
    result = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(out), *extra)
    assert result.code == 1, result.stderr  # the demo has conflicting branches
    return read_report(out)


def applied_and_rolled_back(repo: GitRepo, tmp_path: Path) -> dict[str, tuple[Any, ...]]:
    """A run applied to REPO and rolled back: the mirror has seen the aligned commits."""
    report = aligned_run(repo, tmp_path / "first", "--apply")
    rolled = run_palign("rollback", str(repo.path), report["run_id"])
    assert rolled.code == 0, rolled.stderr
    return comparable(repo, report)


def test_a_run_on_a_recreated_repo_with_an_existing_cache_succeeds(tmp_path: Path) -> None:
    upstream, path = tmp_path / "upstream", tmp_path / "repo"
    build_demo_repository(upstream)
    first = applied_and_rolled_back(recreate(upstream, path), tmp_path)
    repo = recreate(upstream, path)  # the aligned commits existed only in the old REPO
    again = aligned_run(repo, tmp_path / "again")
    assert comparable(repo, again) == first


def test_a_run_after_gc_removed_commits_the_mirror_had_seen_succeeds(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    build_demo_repository(upstream)
    repo = recreate(upstream, tmp_path / "repo")
    first = applied_and_rolled_back(repo, tmp_path)
    # The user drops palign's refs and collects garbage: the aligned commits are gone.
    refs = git_out(repo.path, "for-each-ref", "--format=delete %(refname)", "refs/palign/")
    subprocess.run(["git", "-C", str(repo.path), "update-ref", "--stdin"], input=refs, text=True, check=True)
    git_out(repo.path, "reflog", "expire", "--expire=now", "--all")
    git_out(repo.path, "gc", "-q", "--prune=now")
    again = aligned_run(repo, tmp_path / "again")
    assert comparable(repo, again) == first


def test_a_mirror_that_lost_its_objects_is_built_again_once_with_a_log_line(
    tmp_path: Path, served_repo: tuple[Path, str]
) -> None:
    bare, url = served_repo
    out = tmp_path / "first"
    first = run_palign("run", url, "--onto", "main", "--report-dir", str(out))
    assert first.code == 1, first.stderr
    mirrors = list((Path(os.environ["PALIGN_CACHE_DIR"]) / "mirrors").glob("demo*.git"))
    assert len(mirrors) == 1
    for pack in (mirrors[0] / "objects" / "pack").glob("*.pack"):  # a disk error, a bad copy
        pack.chmod(0o644)
        data = bytearray(pack.read_bytes())
        for offset in range(200, len(data) - 100, 97):
            data[offset] ^= 0xFF
        pack.write_bytes(bytes(data))
    again = run_palign("run", url, "--onto", "main", "--report-dir", str(tmp_path / "again"))
    assert again.code == 1, again.stderr
    assert again.stderr.count("building it again") == 1, again.stderr
    repo = GitRepo(bare)
    assert comparable(repo, read_report(tmp_path / "again")) == comparable(repo, read_report(out))
    assert not list(mirrors[0].parent.glob("*.broken-*"))  # the broken mirror is gone


def test_runs_sharing_a_mirror_while_it_heals_both_succeed(tmp_path: Path) -> None:
    upstream, path = tmp_path / "upstream", tmp_path / "repo"
    build_demo_repository(upstream)
    first = applied_and_rolled_back(recreate(upstream, path), tmp_path)
    repo = recreate(upstream, path)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "palign", "run", str(path), "--onto", "main", "--report-dir", str(tmp_path / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for name in ("one", "two")
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 1, stderr
    for name in ("one", "two"):
        assert comparable(repo, read_report(tmp_path / name)) == first
    assert (
        json.loads((tmp_path / "one" / "report.json").read_text())["run_id"]
        != json.loads((tmp_path / "two" / "report.json").read_text())["run_id"]
    )
