"""`palign run`, `apply` and `rollback` end to end on real repositories, through the real CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from palign.report import SCHEMA_PATH
from tests.conftest import branches_of, git_out, read_report, refs_snapshot, run_palign
from tests.services import free_port


def test_run_stages_results_keeps_backups_and_matches_schema(demo_repo: Path, tmp_path: Path) -> None:
    before = {line.split()[1]: line.split()[0] for line in refs_snapshot(demo_repo).splitlines()}
    result = run_palign("run", str(demo_repo), "--onto", "main", "--workers", "2", "--report-dir", str(tmp_path / "r"))
    assert result.code == 1, result.stderr  # the demo has conflicting branches
    report = read_report(tmp_path / "r")
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    run_id = report["run_id"]
    branches = branches_of(report)
    assert len(branches) == 40
    statuses = {b["status"] for b in branches.values()}
    assert statuses == {"aligned", "up_to_date", "merged", "conflict"}
    after = {line.split()[1]: line.split()[0] for line in refs_snapshot(demo_repo).splitlines()}
    for name, branch in branches.items():
        ref = f"refs/heads/{name}"
        assert after[ref] == before[ref], "branches must not move without --apply"
        assert after[f"refs/palign/backup/{run_id}/{name}"] == before[ref]
        staged = after.get(f"refs/palign/staged/{run_id}/{name}")
        if branch["status"] in ("aligned", "merged"):
            assert staged == branch["new_sha"]
            main = git_out(demo_repo, "rev-parse", "main").strip()
            assert git_out(demo_repo, "merge-base", "--is-ancestor", main, staged) == ""
        else:
            assert staged is None
    for branch in branches.values():
        if branch["status"] == "conflict":
            assert branch["conflicts"] and branch["new_sha"] is None
    assert "conflict" in (tmp_path / "r" / "report.md").read_text()
    assert f"run {run_id}: 40 branches" in result.stdout


def test_apply_moves_only_unmoved_branches_and_rollback_restores(demo_repo: Path, tmp_path: Path) -> None:
    result = run_palign(
        "run", str(demo_repo), "--onto", "main", "--branch", "feature/*", "--report-dir", str(tmp_path / "r")
    )
    assert result.code == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "r")
    run_id = report["run_id"]
    branches = branches_of(report)
    original = {name: b["old_sha"] for name, b in branches.items()}
    # Someone pushes to one branch after the run planned it: it must be left alone.
    moved = "feature/clean-03"
    subprocess.run(["git", "-C", str(demo_repo), "update-ref", f"refs/heads/{moved}", "main~1"], check=True)
    moved_to = git_out(demo_repo, "rev-parse", moved).strip()

    applied = run_palign("apply", str(demo_repo), run_id)
    assert applied.code == 1, applied.stdout + applied.stderr
    assert f"stale     {moved}" in applied.stdout
    for name, branch in branches.items():
        current = git_out(demo_repo, "rev-parse", f"refs/heads/{name}").strip()
        if name == moved:
            assert current == moved_to
        else:
            assert current == branch["new_sha"]

    rolled = run_palign("rollback", str(demo_repo), run_id)
    assert rolled.code == 0, rolled.stdout + rolled.stderr
    for name in branches:
        current = git_out(demo_repo, "rev-parse", f"refs/heads/{name}").strip()
        assert current == (moved_to if name == moved else original[name])
    assert git_out(demo_repo, "for-each-ref", f"refs/palign/applied/{run_id}/") == ""


def test_run_with_apply_moves_branches_atomically(demo_repo: Path, tmp_path: Path) -> None:
    result = run_palign(
        "run",
        str(demo_repo),
        "--onto",
        "main",
        "--branch",
        "stack/*",
        "--branch",
        "docs/*",
        "--apply",
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert result.code == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "r")
    assert report["applied"] is True
    for name, branch in branches_of(report).items():
        assert git_out(demo_repo, "rev-parse", f"refs/heads/{name}").strip() == branch["new_sha"]
        assert branch["applied"] == (branch["status"] != "up_to_date")
    assert "palign rollback" in result.stdout


def test_repository_hooks_never_run(demo_repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    hooks = demo_repo / ".git" / "hooks"
    for hook in ("pre-receive", "update", "post-receive", "reference-transaction", "post-update", "pre-push"):
        path = hooks / hook
        path.write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        path.chmod(0o755)
    result = run_palign(
        "run",
        str(demo_repo),
        "--onto",
        "main",
        "--branch",
        "feature/clean-0*",
        "--apply",
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert result.code == 0, result.stdout + result.stderr
    run_id = read_report(tmp_path / "r")["run_id"]
    assert run_palign("rollback", str(demo_repo), run_id).code == 0
    assert not marker.exists(), marker.read_text()


def test_option_like_branch_name_is_a_name(demo_repo: Path, tmp_path: Path) -> None:
    tip = git_out(demo_repo, "rev-parse", "feature/clean-01").strip()
    subprocess.run(["git", "-C", str(demo_repo), "update-ref", "refs/heads/--output=owned", tip], check=True)
    result = run_palign(
        "run",
        str(demo_repo),
        "--onto",
        "main",
        "--branch",
        "--output=*",
        "--report-dir",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert result.code == 0, result.stdout + result.stderr
    branches = branches_of(read_report(tmp_path / "r"))
    assert branches["--output=owned"]["status"] == "aligned"
    assert not (tmp_path / "owned").exists()
    run_id = read_report(tmp_path / "r")["run_id"]
    assert git_out(demo_repo, "rev-parse", f"refs/palign/staged/{run_id}/--output=owned").strip()


def test_file_url_works_like_a_path(demo_repo: Path, tmp_path: Path) -> None:
    result = run_palign(
        "run", f"file://{demo_repo}", "--onto", "main", "--branch", "docs/*", "--report-dir", str(tmp_path / "r")
    )
    assert result.code == 0, result.stdout + result.stderr
    assert {b["status"] for b in branches_of(read_report(tmp_path / "r")).values()} == {"up_to_date"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{missing}", "--onto", "main"], "repository not found"),
        (["run", "{repo}", "--onto", "nope"], "unknown target"),
        (["run", "{repo}", "--onto", "main", "--branch", "zzz/*"], "no branch matches"),
        (["run", "{repo}", "--onto", "main", "--strategy", "squash"], "squash"),
        (["run", "{repo}", "--onto", "main", "--workers", "-1"], "--workers"),
        (["run", "file:///nonexistent/repo.git", "--onto", "main"], "repository not found"),
        (["run", "ext::sh -c touch% {marker}", "--onto", "main"], "transport refused"),
        (["run", "fd::3", "--onto", "main"], "transport refused"),
        (["run", "ftp://example.invalid/x.git", "--onto", "main"], "transport refused"),
        (["apply", "{repo}", "20990101-000000-abcdef"], "unknown run id"),
        (["rollback", "{repo}", "--nope"], "no such option '--nope'"),
        (["run", "{repo}"], "--onto"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    demo_repo: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    marker = tmp_path / "marker"
    values = {"repo": str(demo_repo), "missing": str(tmp_path / "missing"), "marker": str(marker)}
    before = refs_snapshot(demo_repo)
    result = run_palign(*[a.format(**values) for a in args], cwd=tmp_path)
    assert result.code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("palign: error:"), result.stderr
    assert message.lower() in lines[0].lower()
    assert "Traceback" not in result.stderr
    assert refs_snapshot(demo_repo) == before
    assert not (tmp_path / "palign-report").exists()
    assert not marker.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/nothing.git", "git://127.0.0.1:{port}/nothing.git"])
def test_an_unreachable_repository_is_infrastructure_exit_3(tmp_path: Path, url: str) -> None:
    """Nothing listens on the port: the network is in the way, not the user's input."""
    result = run_palign("run", url.format(port=free_port()), "--onto", "main", cwd=tmp_path)
    assert result.code == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("palign: error: cannot read repository"), result.stderr
    assert not (tmp_path / "palign-report").exists()


def test_demo_prints_summary_andread_report(tmp_path: Path) -> None:
    result = run_palign("demo", "--dir", str(tmp_path / "d"), "--workers", "2")
    assert result.code == 0, result.stderr
    assert "40 branches" in result.stdout
    report_path = tmp_path / "d" / "report" / "report.json"
    assert f"report: {report_path}" in result.stdout
    counts = json.loads(report_path.read_text())["overall_summary"]["status_counts"]
    assert counts == {"aligned": 28, "up_to_date": 4, "merged": 2, "conflict": 6}


def test_pull_request_refs_are_selected_by_full_ref_glob(demo_repo: Path, tmp_path: Path) -> None:
    for number, branch in ((1, "feature/clean-01"), (2, "fix/conflict-0")):
        tip = git_out(demo_repo, "rev-parse", branch).strip()
        subprocess.run(["git", "-C", str(demo_repo), "update-ref", f"refs/pull/{number}/head", tip], check=True)
    result = run_palign(
        "run", str(demo_repo), "--onto", "main", "--branch", "refs/pull/*/head", "--report-dir", str(tmp_path / "r")
    )
    assert result.code == 1, result.stdout + result.stderr  # pull 2 conflicts
    report = read_report(tmp_path / "r")
    branches = branches_of(report)
    assert {name: b["status"] for name, b in branches.items()} == {
        "refs/pull/1/head": "aligned",
        "refs/pull/2/head": "conflict",
    }
    run_id = report["run_id"]
    staged = git_out(demo_repo, "rev-parse", f"refs/palign/staged/{run_id}/refs/pull/1/head").strip()
    assert staged == branches["refs/pull/1/head"]["new_sha"]
