"""A first-time user's mistakes, through the real CLI: each is refused with one clear line
(exit 2) before anything is written, or the output says what it means."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.conftest import git_out, refs_snapshot, run_palign
from tests.gitrepo import GitRepo


def palign_refs(repo: Path) -> str:
    return git_out(repo, "for-each-ref", "refs/palign/")


def assert_refused_before_writing(result_code: int, stderr: str, repo: Path, before: str) -> None:
    """Exit 2, one line on stderr, no traceback, and REPO exactly as it was."""
    assert result_code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert refs_snapshot(repo) == before
    assert palign_refs(repo) == ""


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[targets]\n"hotfix/*" = "main"\n\n[plann]\nstale_days = 30\n',
            "palign.toml line 4: unknown section [plann]; did you mean [plan]?",
        ),
        (
            "[plan]\ncluster_threshold = 0.3\nstale_day = 30\n",
            "palign.toml line 3: unknown key 'stale_day' in [plan]; did you mean 'stale_days'?",
        ),
        (
            "stale_days = 30\n",
            "palign.toml line 1: unknown key 'stale_days' outside any section; it belongs under [plan]",
        ),
    ],
    ids=["section", "plan-key", "top-level-key"],
)
def test_misspelled_config_names_are_refused_with_their_line(
    demo_repo: Path, tmp_path: Path, toml: str, expected: str
) -> None:
    (tmp_path / "palign.toml").write_text(toml)
    before = refs_snapshot(demo_repo)
    result = run_palign("run", str(demo_repo), "--onto", "main", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert_refused_before_writing(result.code, result.stderr, demo_repo, before)
    assert expected in result.stderr
    assert not (tmp_path / "r").exists()


def test_targets_rule_for_a_target_the_run_does_not_align_onto_is_refused(demo_repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text('[targets]\n"feature/*" = "main"\n"fix/*" = "mian"\n')
    before = refs_snapshot(demo_repo)
    result = run_palign("run", str(demo_repo), "--onto", "main", "--config", str(config))
    assert_refused_before_writing(result.code, result.stderr, demo_repo, before)
    assert f"{config} line 3: [targets] rule 'fix/*' = 'mian'" in result.stderr
    assert "(--onto: main); did you mean 'main'?" in result.stderr


@pytest.mark.parametrize("report_dir", ["/proc/nope", "{tmp}/a-file/report"], ids=["proc", "under-a-file"])
def test_report_dir_that_cannot_be_created_is_refused_before_anything_is_written(
    demo_repo: Path, tmp_path: Path, report_dir: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    report_dir = report_dir.format(tmp=tmp_path)
    before = refs_snapshot(demo_repo)
    result = run_palign("run", str(demo_repo), "--onto", "main", "--report-dir", report_dir)
    assert_refused_before_writing(result.code, result.stderr, demo_repo, before)
    assert f"report folder cannot be created: {report_dir}" in result.stderr


@pytest.mark.parametrize(
    "option",
    [("--priority", "3"), ("--timeout", "5"), ("--no-wait",), ("--circuit-breaker", "5,50%")],
    ids=lambda option: option[0],
)
def test_options_of_distributed_runs_are_refused_without_a_broker(demo_repo: Path, option: tuple[str, ...]) -> None:
    before = refs_snapshot(demo_repo)
    result = run_palign("run", str(demo_repo), "--onto", "main", *option)
    assert_refused_before_writing(result.code, result.stderr, demo_repo, before)
    assert f"{option[0]} only applies to a run on Celery workers: add --broker URL or --distributed" in result.stderr


def test_no_help_shows_a_doubled_percent_sign() -> None:
    from palign.cli.main import main  # the commands as registered, so a new one is covered too

    for command in ["", *main.commands]:
        result = run_palign(*([command] if command else []), "--help")
        assert result.code == 0, result.stderr
        assert "%%" not in result.stdout, f"palign {command} --help: {result.stdout}"
    assert "PERCENT % of those finished, e.g. 5,50%;" in " ".join(run_palign("run", "--help").stdout.split())


def test_plan_lists_clusters_in_numeric_order(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("README", "readme\n")
    repo.commit("base")
    for n in range(12):  # each touches its own file: twelve clusters, c1 (b00) ... c12 (b11)
        repo.new_branch(f"b{n:02d}", "main")
        repo.write(f"f{n}.txt", f"{n}\n")
        repo.commit(f"b{n:02d}")
    result = run_palign("plan", str(repo.path), "--onto", "main", "--no-forecast")
    assert result.code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    assert [row[0] for row in rows] == [f"b{n:02d}" for n in range(12)]
    assert [row[-2] for row in rows] == [f"c{n}" for n in range(1, 13)]


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("README", "readme\n")
    repo.commit("base")
    repo.new_branch("only", "main")
    repo.write("only.txt", "only\n")
    repo.commit("only")
    planned = run_palign("plan", str(repo.path), "--onto", "main")
    assert planned.code == 0, planned.stderr
    assert planned.stdout.splitlines()[-1] == "1 branch in 1 unit of work (0 stacks)"
    ran = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "r"))
    assert ran.code == 0, ran.stderr
    assert ": 1 branch in " in ran.stdout.splitlines()[0]
    assert "- 1 branch: 1 successful, 0 not;" in (tmp_path / "r" / "report.md").read_text()


def test_unknown_target_suggests_the_closest_branch(demo_repo: Path) -> None:
    before = refs_snapshot(demo_repo)
    result = run_palign("run", str(demo_repo), "--onto", "mian")
    assert_refused_before_writing(result.code, result.stderr, demo_repo, before)
    assert "unknown target: 'mian' is not a branch or ref of the repository; did you mean 'main'?" in result.stderr


def test_demo_ends_with_next_commands_that_work(tmp_path: Path) -> None:
    demo = run_palign("demo", "--dir", str(tmp_path / "demo"), "--workers", "2")
    assert demo.code == 0, demo.stderr
    lines = demo.stdout.splitlines()
    steps = lines[lines.index("try next:") + 1 :]
    assert len(steps) == 3
    commands = [shlex.split(step.split("  #")[0]) for step in steps]
    assert [command[:2] for command in commands] == [["palign", "plan"], ["palign", "apply"], ["palign", "rollback"]]
    assert all(command[2] == str(tmp_path / "demo" / "repo") for command in commands)
    repo = tmp_path / "demo" / "repo"
    tips = git_out(repo, "for-each-ref", "refs/heads/")
    planned = run_palign(*commands[0][1:])
    assert planned.code == 0, planned.stderr
    assert "40 branches in" in planned.stdout
    applied = run_palign(*commands[1][1:])
    assert applied.code == 0, applied.stderr
    assert "30 applied, 0 stale, 0 refused" in applied.stdout  # aligned and merged
    assert git_out(repo, "for-each-ref", "refs/heads/") != tips
    rolled = run_palign(*commands[2][1:])
    assert rolled.code == 0, rolled.stderr
    assert git_out(repo, "for-each-ref", "refs/heads/") == tips
