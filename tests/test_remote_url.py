"""A repository reached through a URL (git:// served by `git daemon` on loopback): the
mirror fetches it, results go back with `git push` (atomic, with leases)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import git_out, read_report, run_palign


def test_run_apply_and_rollback_over_a_url(served_repo: tuple[Path, str], tmp_path: Path) -> None:
    bare, url = served_repo
    result = run_palign(
        "run", url, "--onto", "main", "--branch", "feature/clean-0*", "--report-dir", str(tmp_path / "r")
    )
    assert result.code == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "r")
    run_id = report["run_id"]
    branches = {b["branch_name"]: b for b in report["orchestration_results"]["main"]["branches"]}
    for name, branch in branches.items():
        assert git_out(bare, "rev-parse", f"refs/palign/backup/{run_id}/{name}").strip() == branch["old_sha"]
        assert git_out(bare, "rev-parse", f"refs/palign/staged/{run_id}/{name}").strip() == branch["new_sha"]
    moved = "feature/clean-01"
    subprocess.run(["git", "-C", str(bare), "update-ref", f"refs/heads/{moved}", "main~2"], check=True)
    applied = run_palign("apply", url, run_id)
    assert applied.code == 1 and f"stale     {moved}" in applied.stdout, applied.stdout + applied.stderr
    for name, branch in branches.items():
        if name != moved:
            assert git_out(bare, "rev-parse", f"refs/heads/{name}").strip() == branch["new_sha"]
    rolled = run_palign("rollback", url, run_id)
    assert rolled.code == 0, rolled.stdout + rolled.stderr
    for name, branch in branches.items():
        if name != moved:
            assert git_out(bare, "rev-parse", f"refs/heads/{name}").strip() == branch["old_sha"]


def test_apply_from_another_machine_with_an_empty_cache(
    served_repo: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = served_repo
    result = run_palign(
        "run", url, "--onto", "main", "--branch", "docs/*", "--branch", "stack/*", "--report-dir", str(tmp_path / "r")
    )
    assert result.code == 0, result.stdout + result.stderr
    run_id = read_report(tmp_path / "r")["run_id"]
    monkeypatch.setenv("PALIGN_CACHE_DIR", str(tmp_path / "another-cache"))
    applied = run_palign("apply", url, run_id)
    assert applied.code == 0, applied.stdout + applied.stderr
    assert "6 applied" in applied.stdout  # three stacks of two; the docs branches were up to date


def test_a_repository_the_server_does_not_have_is_bad_input(served_repo: tuple[Path, str], tmp_path: Path) -> None:
    """The server answers, but has no such repository: exit 2 (not an outage), one line."""
    _, url = served_repo
    missing = url.rsplit("/", 1)[0] + "/no-such-repository.git"
    result = run_palign("run", missing, "--onto", "main", cwd=tmp_path)
    assert result.code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read repository" in lines[0], result.stderr
