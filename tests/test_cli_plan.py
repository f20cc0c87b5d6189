"""`palign plan`, plan files and several targets, end to end through the CLI."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from palign.planner.planfile import SCHEMA_PATH
from tests.conftest import branches_of, git_out, read_report, refs_snapshot, run_palign
from tests.gitrepo import GitRepo, hermetic_env
from tests.repos import large_fleet_repo


def test_plan_writes_nothing_and_forecasts_like_the_run(demo_repo: Path, tmp_path: Path) -> None:
    before = refs_snapshot(demo_repo)
    planned = run_palign("plan", str(demo_repo), "--onto", "main", "--json")
    assert planned.code == 0, planned.stderr
    assert refs_snapshot(demo_repo) == before
    plan = json.loads(planned.stdout)
    jsonschema.validate(plan, json.loads(SCHEMA_PATH.read_text()))
    forecasts = {b["branch_name"]: b["forecast"] for b in plan["branches"]}
    stacked = {b["branch_name"]: b["depends_on"] for b in plan["branches"] if b.get("depends_on")}
    assert stacked == {f"stack/{s}/part-2": [f"stack/{s}/part-1"] for s in range(3)}

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(planned.stdout)
    ran = run_palign(
        "run", str(demo_repo), "--onto", "main", "--plan", str(plan_file), "--report-dir", str(tmp_path / "r")
    )
    assert ran.code == 1, ran.stderr  # the demo has conflicts
    report = read_report(tmp_path / "r")
    statuses = {b["branch_name"]: b["status"] for t in report["orchestration_results"].values() for b in t["branches"]}
    assert statuses == forecasts
    # Stacks: part-2 sits on part-1's aligned commit.
    branches = {b["branch_name"]: b for t in report["orchestration_results"].values() for b in t["branches"]}
    for s in range(3):
        top, below = branches[f"stack/{s}/part-2"], branches[f"stack/{s}/part-1"]
        assert git_out(demo_repo, "rev-parse", f"{top['new_sha']}~1").strip() == below["new_sha"]


def test_plan_table_names_every_branch(demo_repo: Path) -> None:
    result = run_palign("plan", str(demo_repo), "--onto", "main", "--no-forecast")
    assert result.code == 0, result.stderr
    assert "40 branches in" in result.stdout and "3 stacks" in result.stdout
    assert "stack/0/part-1" in result.stdout


def test_malformed_plan_file_is_an_input_error(demo_repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text(
        '{"branches": [\n  {"branch_name": "feature/clean-01", "assigned_target": "main",\n'
        '   "confidence": 7, "tags": [], "cluster_id": "c1"}\n]}\n'
    )
    result = run_palign("run", str(demo_repo), "--onto", "main", "--plan", str(bad))
    assert result.code == 2
    assert "line 3" in result.stderr and "confidence" in result.stderr  # the line of the bad field
    assert len(result.stderr.strip().splitlines()) == 1


def _two_targets_repo(path: Path) -> GitRepo:
    """fix/on-release forked from release/1.x, feature/on-main from main; both targets moved."""
    repo = GitRepo.init(path)
    repo.write("a.txt", "a\n")
    repo.commit("base")
    repo.new_branch("release/1.x")
    repo.write("release.txt", "1.0\n")
    repo.commit("release 1.0")
    repo.new_branch("fix/on-release")
    repo.write("fix.txt", "fix\n")
    repo.commit("fix for the release")
    repo.checkout("main")
    repo.new_branch("feature/on-main")
    repo.write("feature.txt", "feature\n")
    repo.commit("feature")
    for target, change in (("main", "main.txt"), ("release/1.x", "release.txt")):
        repo.checkout(target)
        repo.write(change, "moved\n")
        repo.commit(f"{target} moves")
    return repo


def test_several_targets_each_branch_onto_the_one_it_forked_from(tmp_path: Path) -> None:
    repo = _two_targets_repo(tmp_path / "repo")
    result = run_palign(
        "run", str(repo.path), "--onto", "main", "--onto", "release/1.x", "--report-dir", str(tmp_path / "r")
    )
    assert result.code == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "r")
    grouped = {t: [b["branch_name"] for b in v["branches"]] for t, v in report["orchestration_results"].items()}
    assert grouped == {"main": ["feature/on-main"], "release/1.x": ["fix/on-release"]}
    fix = report["orchestration_results"]["release/1.x"]["branches"][0]
    assert (
        subprocess.run(
            ["git", "-C", str(repo.path), "merge-base", "--is-ancestor", "release/1.x", fix["new_sha"]]
        ).returncode
        == 0
    )


def test_declared_cycle_is_an_input_error(demo_repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "palign.toml"
    config.write_text(
        '[dependencies]\n"feature/clean-01" = "feature/clean-02"\n"feature/clean-02" = "feature/clean-01"\n'
    )
    result = run_palign("run", str(demo_repo), "--onto", "main", "--config", str(config))
    assert result.code == 2
    assert "feature/clean-01" in result.stderr and "feature/clean-02" in result.stderr


def test_conflicts_finds_pairs_that_conflict_with_each_other(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("shared.txt", "one\ntwo\nthree\n")
    repo.write("other.txt", "x\n")
    repo.commit("base")
    for name, content in (("a", "one\nA\nthree\n"), ("b", "one\nB\nthree\n"), ("c", None)):
        repo.new_branch(name, "main")
        if content is None:
            repo.write("other.txt", "y\n")  # touches nothing the others touch
        else:
            repo.write("shared.txt", content)
        repo.commit(f"{name} edits")
    repo.new_branch("d", "main")
    repo.write("shared.txt", "zero\none\ntwo\nthree\n")  # same file, another hunk: merges cleanly
    repo.commit("d edits")
    result = run_palign("conflicts", str(repo.path), "--onto", "main", "--json", "--workers", "2")
    assert result.code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["pairs_checked"] == 3  # a, b and d share shared.txt; c shares nothing
    assert found["groups"] == [["a", "b"]]
    assert [(p["left"], p["right"], p["paths"]) for p in found["conflicts"]] == [("a", "b", ["shared.txt"])]


def test_conflicts_counts_branches_with_no_common_history_apart(tmp_path: Path) -> None:
    """An orphan branch shares paths with the others but no history with the target: git
    refuses to merge it, so it and its pairs are counted, not reported as conflicts (nor
    as an internal error)."""
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("shared.txt", "one\ntwo\n")
    repo.commit("base")
    repo.new_branch("a", "main")
    repo.write("shared.txt", "one\nA\n")
    repo.commit("a edits")
    repo.git("checkout", "-q", "--orphan", "lonely")
    repo.write("shared.txt", "lonely\n")
    repo.commit("a history of its own")
    repo.checkout("main")
    result = run_palign("conflicts", str(repo.path), "--onto", "main", "--json", "--workers", "2")
    assert result.code == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["pairs_checked"] == 1 and found["pairs_unrelated"] == 1
    assert found["conflicts"] == [] and found["groups"] == []
    assert found["unrelated_to_target"] == ["lonely"] and found["conflicts_with_target"] == []
    shown = run_palign("conflicts", str(repo.path), "--onto", "main")
    assert "1 pair has no history in common" in shown.stdout, shown.stdout + shown.stderr
    assert "1 branch has no history in common with main, git does not merge it: lonely" in shown.stdout


def test_run_infers_a_six_level_stack_and_blocks_above_a_conflict(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("shared.txt", "original\n")
    repo.commit("base")
    previous = "main"
    for level in range(6):
        repo.new_branch(f"stack/{level}", previous)
        if level == 3:
            repo.write("shared.txt", "level 3 rewrites the shared line\n")  # conflicts with main
        else:
            repo.write(f"level{level}.txt", f"{level}\n")
        repo.commit(f"level {level}")
        previous = f"stack/{level}"
    repo.checkout("main")
    repo.write("shared.txt", "main rewrites the shared line\n")
    repo.commit("main moves")
    result = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "r"))
    assert result.code == 1, result.stdout + result.stderr
    report = read_report(tmp_path / "r")
    branches = {b["branch_name"]: b for b in report["orchestration_results"]["main"]["branches"]}
    assert [branches[f"stack/{level}"]["status"] for level in range(6)] == [
        "aligned",
        "aligned",
        "aligned",
        "conflict",
        "blocked",
        "blocked",
    ]
    assert "stack/3" in branches["stack/4"]["error_message"]
    assert branches["stack/4"]["stacked_on"] == "stack/3" and branches["stack/0"]["stacked_on"] is None
    # The test history has pinned (old) dates: every branch lacks main's commit and is long untouched.
    assert {(b["category"], b["stale"]) for b in branches.values()} == {("diverged", True)}
    assert all(b["cluster_id"] for b in branches.values())
    for level in (1, 2):  # each level sits on the aligned level below and replays only its own commit
        assert branches[f"stack/{level}"]["commits_replayed"] == 1
        below = branches[f"stack/{level - 1}"]["new_sha"]
        assert git_out(repo.path, "rev-parse", f"{branches[f'stack/{level}']['new_sha']}~1").strip() == below


def test_facts_gathered_in_shares_give_the_same_plan(demo_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from palign import prepare
    from palign.planner.planfile import write_plan
    from palign.settings import Settings

    options = prepare.RunOptions(repo=str(demo_repo), targets=["main"], workers=2)
    alone = write_plan(prepare.prepare(options, Settings.load()).plan)
    monkeypatch.setattr(prepare, "_PARALLEL_FACTS_FROM", 1)  # as for a large run: shares over 2 processes
    shared = write_plan(prepare.prepare(options, Settings.load()).plan)
    assert shared == alone
    assert json.loads(shared)["branches"]


def _stale_and_recent_repo(path: Path) -> GitRepo:
    """old-diverged and old-behind have pinned (2023) dates; recent-diverged a commit of today."""
    repo = GitRepo.init(path)
    repo.write("a.txt", "a\n")
    repo.commit("base")
    repo.new_branch("old-behind")
    repo.new_branch("old-diverged", "main")
    repo.write("old.txt", "old\n")
    repo.commit("an old change")
    repo.new_branch("recent-diverged", "main")
    repo.write("recent.txt", "recent\n")
    today = f"{int(time.time())} +0000"
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "a change of today", env=hermetic_env({"GIT_COMMITTER_DATE": today}))
    repo.checkout("main")
    repo.write("main.txt", "moves\n")
    repo.commit("main moves")
    return repo


CHOSEN = ("--branch", "old-*", "--branch", "recent-*")


def test_an_old_branch_keeps_its_category_and_is_marked_stale(tmp_path: Path) -> None:
    repo = _stale_and_recent_repo(tmp_path / "repo")
    # Chosen by name: without --branch, old-behind (a base the others fork at) is left out.
    expected = {
        "old-diverged": ("diverged", True),
        "old-behind": ("behind", True),
        "recent-diverged": ("diverged", False),
    }
    planned = run_palign("plan", str(repo.path), "--onto", "main", *CHOSEN, "--json", "--no-forecast")
    assert planned.code == 0, planned.stderr
    plan = json.loads(planned.stdout)
    jsonschema.validate(plan, json.loads(SCHEMA_PATH.read_text()))
    assert {b["branch_name"]: (b["category"], b["stale"]) for b in plan["branches"]} == expected

    table = run_palign("plan", str(repo.path), "--onto", "main", *CHOSEN, "--no-forecast")
    assert table.code == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:-1]}
    header = table.stdout.splitlines()[0].split()
    assert header[3:6] == ["from", "category", "stale"]
    assert {name: (row[4], row[5]) for name, row in rows.items()} == {
        name: (category, "yes" if stale else "-") for name, (category, stale) in expected.items()
    }

    ran = run_palign("run", str(repo.path), "--onto", "main", *CHOSEN, "--report-dir", str(tmp_path / "r"))
    assert ran.code == 0, ran.stdout + ran.stderr
    branches = branches_of(read_report(tmp_path / "r"))
    assert {name: (b["category"], b["stale"]) for name, b in branches.items()} == expected


def test_a_plan_file_of_an_older_palign_with_category_stale_still_runs(tmp_path: Path) -> None:
    repo = _stale_and_recent_repo(tmp_path / "repo")
    planned = run_palign("plan", str(repo.path), "--onto", "main", "--json", "--no-forecast")
    assert planned.code == 0, planned.stderr
    old = json.loads(planned.stdout)
    for branch in old["branches"]:  # as palign wrote it before staleness became a field of its own
        del branch["stale"]
        if branch["branch_name"] == "old-diverged":
            branch["category"] = "stale"
    jsonschema.validate(old, json.loads(SCHEMA_PATH.read_text()))
    plan_file = tmp_path / "old-plan.json"
    plan_file.write_text(json.dumps(old))
    ran = run_palign(
        "run", str(repo.path), "--onto", "main", "--plan", str(plan_file), "--report-dir", str(tmp_path / "r")
    )
    assert ran.code == 0, ran.stdout + ran.stderr
    branches = branches_of(read_report(tmp_path / "r"))
    assert (branches["old-diverged"]["category"], branches["old-diverged"]["stale"]) == ("diverged", True)
    assert branches["old-diverged"]["status"] == "aligned"


def test_a_plan_file_gives_the_targets_when_no_onto_is_given(tmp_path: Path) -> None:
    repo = _two_targets_repo(tmp_path / "repo")
    planned = run_palign("plan", str(repo.path), "--onto", "main", "--onto", "release/1.x", "--json", "--no-forecast")
    assert planned.code == 0, planned.stderr
    plan = json.loads(planned.stdout)
    required = ("branch_name", "assigned_target", "confidence", "tags", "cluster_id")
    plan["branches"] = [{k: b[k] for k in required} for b in plan["branches"]]  # as another tool writes it
    del plan["targets"], plan["units"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    result = run_palign("run", str(repo.path), "--plan", str(plan_file), "--report-dir", str(tmp_path / "r"))
    assert result.code == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "r")
    grouped = {t: [b["branch_name"] for b in v["branches"]] for t, v in report["orchestration_results"].items()}
    assert grouped == {"main": ["feature/on-main"], "release/1.x": ["fix/on-release"]}
    for target, branches in report["orchestration_results"].items():
        new_sha = branches["branches"][0]["new_sha"]
        assert repo.is_ancestor(target, new_sha) and branches["target_sha"] == repo.rev(target)


def test_run_needs_onto_or_a_plan_file(tmp_path: Path) -> None:
    repo = _two_targets_repo(tmp_path / "repo")
    result = run_palign("run", str(repo.path), "--report-dir", str(tmp_path / "r"))
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == "palign: error: give --onto TARGET, or --plan FILE whose branches name their targets\n"
    assert not (tmp_path / "r").exists()


def test_a_plan_file_naming_an_unknown_target_is_refused_with_its_line(tmp_path: Path) -> None:
    repo = _two_targets_repo(tmp_path / "repo")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(
        '{"branches": [\n'
        '  {"branch_name": "feature/on-main", "assigned_target": "main", "confidence": 1, "tags": [],'
        ' "cluster_id": 1},\n'
        '  {"branch_name": "fix/on-release", "assigned_target": "release/9.x", "confidence": 1, "tags": [],'
        ' "cluster_id": 2}\n]}\n'
    )
    before = refs_snapshot(repo.path)
    result = run_palign("run", str(repo.path), "--plan", str(plan_file), "--report-dir", str(tmp_path / "r"))
    assert result.code == 2, result.stdout + result.stderr
    assert result.stderr.startswith("palign: error: plan file line 3: unknown target: 'release/9.x'")
    assert len(result.stderr.splitlines()) == 1
    assert refs_snapshot(repo.path) == before


def _on_a_terminal(*args: str) -> tuple[int, str, list[str]]:
    """palign as a user at a terminal runs it: stderr on a pseudo-terminal, stdout piped
    (`palign plan --json > plan.json`). Returns the exit code, stdout and the lines drawn
    on the terminal (each redraw of the bar a line, colours stripped)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTY_", "NO_COLOR", "FORCE_COLOR"))}
    env.update(TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "palign", *args], stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    drawn: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: palign has exited and the terminal is closed
                return
            if not data:
                return
            drawn.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=60)
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(drawn).decode("utf-8", "replace"))
    return proc.returncode, stdout.decode(), [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_plan_shows_its_progress_on_a_terminal_and_keeps_json_on_stdout(tmp_path: Path) -> None:
    repo = large_fleet_repo(tmp_path / "repo", independent=200, stacks=20, depth=3)  # 260 branches
    args = ("plan", str(repo.path), "--onto", "main", "--json", "--workers", "2")
    code, stdout, drawn = _on_a_terminal(*args)
    assert code == 0, drawn
    assert len(json.loads(stdout)["branches"]) == 260
    steps = [re.sub(r"[^a-z ].*", "", line).strip() for line in drawn]  # the words before the bar
    assert list(dict.fromkeys(steps)) == ["syncing the mirror", "gathering facts", "forecasting"], drawn
    for step in ("gathering facts", "forecasting"):
        counts = [re.findall(r"\d+/\d+ branches", line) for line in drawn if line.startswith(step)]
        assert counts[0] == ["0/260 branches"] and counts[-1] == ["260/260 branches"], drawn

    piped = run_palign(*args)  # not a terminal: not a word on stderr
    assert (piped.code, piped.stderr) == (0, "")
    assert json.loads(piped.stdout) == json.loads(stdout)


def test_run_shows_the_facts_then_the_alignment_on_a_terminal(tmp_path: Path) -> None:
    repo = large_fleet_repo(tmp_path / "repo", independent=30, stacks=2, depth=2)  # 34 branches
    code, stdout, drawn = _on_a_terminal("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "r"))
    assert code == 1, drawn  # every third branch conflicts
    assert "report:" in stdout
    steps = [re.sub(r"[^a-z ].*", "", line).strip() for line in drawn]
    assert list(dict.fromkeys(steps)) == ["syncing the mirror", "gathering facts", "aligning"], drawn
    assert re.findall(r"\d+/\d+ branches", drawn[-1]) == ["34/34 branches"], drawn
