"""`palign run --broker`: the plan runs as a Celery canvas on real `palign worker`
processes through a real redis-server; the report must equal a local run's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from palign.report import SCHEMA_PATH
from tests.conftest import branches_of, comparable, git_out, read_report, refs_snapshot, run_palign
from tests.gitrepo import GitRepo
from tests.repos import IMPORT_USE, fleet_repo, renaming_repo
from tests.services import RedisServer, Worker, free_port, wait_for


def task_workers(server: RedisServer, run_id: str) -> dict[str, str]:
    """Task id -> the worker that ran it, from Celery's result records."""
    client = server.client()
    found = {}
    for key in client.scan_iter(f"celery-task-meta-{run_id}.*"):
        meta = json.loads(client.get(key) or "{}")
        if meta.get("status") == "SUCCESS":
            found[key.removeprefix("celery-task-meta-")] = meta.get("worker")
    return found


def test_two_worker_machines_give_the_local_report_with_stacks(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    # Eight stacks of four levels: 24 hand-overs between levels, enough that some cross
    # machines even when one worker is slowed by a loaded host.
    repo = fleet_repo(tmp_path / "repo", stacks=8, depth=4)
    local = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "local"))
    assert local.code == 1, local.stderr  # some conflict
    first, second = start_worker("alpha"), start_worker("beta")
    result = run_palign(
        "run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--report-dir", str(tmp_path / "dist")
    )
    assert result.code == 1, result.stderr
    dist, mine = read_report(tmp_path / "dist"), read_report(tmp_path / "local")
    assert dist["overall_summary"]["executor"] == "celery"
    assert comparable(repo, dist) == comparable(repo, mine)
    statuses = {b["status"] for b in branches_of(dist).values()}
    assert {"aligned", "conflict", "blocked"} <= statuses
    # Every aligned branch is staged in REPO by the worker that aligned it.
    run_id = dist["run_id"]
    for name, branch in branches_of(dist).items():
        staged = git_out(repo.path, "for-each-ref", "--format=%(objectname)", f"refs/palign/staged/{run_id}/{name}")
        assert staged.strip() == (branch["new_sha"] if branch["status"] == "aligned" else ""), name
        assert git_out(repo.path, "rev-parse", f"refs/palign/backup/{run_id}/{name}").strip() == branch["old_sha"]
    # Both machines worked, each from its own mirror cache; some stack crossed machines
    # (a level aligned on one, the level above on the other, found in REPO's staging refs).
    ran = task_workers(redis_server, run_id)
    assert set(ran.values()) == {first.hostname, second.hostname}
    assert (tmp_path / "workers" / "alpha" / "cache" / "mirrors").is_dir()
    assert (tmp_path / "workers" / "beta" / "cache" / "mirrors").is_dir()
    crossed = [
        unit
        for unit in {task.split(".")[1] for task in ran}
        if len({ran[t] for t in ran if t.split(".")[1] == unit}) > 1
    ]
    assert crossed, ran
    # `palign apply` publishes a distributed run like a local one.
    applied = run_palign("apply", str(repo.path), run_id)
    assert applied.code == 0, applied.stderr
    assert repo.rev("pr/1") == branches_of(dist)["pr/1"]["new_sha"]


def test_no_wait_status_cancel_and_report(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=40, stacks=1)
    submitted = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--no-wait")
    assert submitted.code == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    status = run_palign("status", run_id, "--broker", redis_server.url, "--json")
    assert json.loads(status.stdout)["state"] == "queued"
    assert "repo" not in json.loads(status.stdout)  # may carry credentials
    early = run_palign("report", run_id, "--broker", redis_server.url)
    assert early.code == 2 and "no report yet" in early.stderr
    cancelled = run_palign("cancel", run_id, "--broker", redis_server.url)
    assert cancelled.code == 0 and "cancelling" in cancelled.stdout
    start_worker("late")  # the queued tasks run now, and stop before each branch
    wait_for(
        lambda: (
            json.loads(run_palign("status", run_id, "--broker", redis_server.url, "--json").stdout)["state"]
            == "cancelled"
        ),
        60,
        "the run to end cancelled",
    )
    shown = run_palign("report", run_id, "--broker", redis_server.url, "--format", "json")
    assert shown.code == 0, shown.stderr
    report = json.loads(shown.stdout)
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    assert report["overall_summary"]["cancelled"] is True
    assert {b["status"] for b in branches_of(report).values()} == {"cancelled"}
    assert len(branches_of(report)) == 43
    # Nothing was staged: no branch was aligned after the cancel.
    assert f"refs/palign/staged/{run_id}/" not in refs_snapshot(repo.path)
    markdown = run_palign("report", run_id, "--broker", redis_server.url)
    assert "**cancelled**" in markdown.stdout


def test_circuit_breaker_stops_a_run_of_failures(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("shared.txt", "one\ntwo\nthree\n")
    repo.commit("base")
    for i in range(60):
        repo.new_branch(f"pr/{i:02d}", "main")
        repo.write("shared.txt", f"one\npr {i}\nthree\n")
        repo.commit(f"pr {i}")
    repo.checkout("main")
    repo.write("shared.txt", "one\nmain\nthree\n")
    repo.commit("main reformats everything")
    start_worker("solo")
    result = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--broker",
        redis_server.url,
        "--circuit-breaker",
        "5,50%",
        "--report-dir",
        str(tmp_path / "out"),
    )
    assert result.code == 1, result.stderr
    assert "circuit breaker triggered" in result.stdout
    report = read_report(tmp_path / "out")
    assert report["overall_summary"]["circuit_breaker_triggered"] is True
    counts = report["overall_summary"]["status_counts"]
    assert counts.get("conflict", 0) >= 5
    assert counts.get("skipped", 0) > 0
    assert sum(counts.values()) == 60  # every branch in exactly one final state


def test_bad_broker_input_writes_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=3, stacks=0)
    before = refs_snapshot(repo.path)
    work = tmp_path / "work"  # where a report folder would appear
    work.mkdir()
    wrong = run_palign("run", str(repo.path), "--onto", "main", "--broker", "amqp://localhost//", cwd=work)
    assert wrong.code == 2 and wrong.stderr.count("\n") == 1 and "redis://" in wrong.stderr
    closed = f"redis://127.0.0.1:{free_port()}/0"
    down = run_palign("run", str(repo.path), "--onto", "main", "--broker", closed, cwd=work)
    assert down.code == 3 and down.stderr.count("\n") == 1 and "cannot reach the broker" in down.stderr
    alone = run_palign("run", str(repo.path), "--onto", "main", "--no-wait", cwd=work)
    assert alone.code == 2 and "--broker" in alone.stderr
    unknown = run_palign("status", "20260101-000000-abcdef", "--broker", redis_server.url, cwd=work)
    assert unknown.code == 2 and "unknown run id" in unknown.stderr
    assert refs_snapshot(repo.path) == before
    assert list(work.iterdir()) == []  # no report folder, nothing else


@pytest.mark.parametrize("strategy", ["merge"])
def test_priority_and_strategy_reach_the_workers(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker], strategy: str
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=6, stacks=1, depth=2)
    submitted = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--broker",
        redis_server.url,
        "--no-wait",
        "--priority",
        "2",
        "--strategy",
        strategy,
    )
    assert submitted.code == 0, submitted.stderr
    client = redis_server.client()
    assert client.llen("align:2") > 0 and client.llen("align") == 0  # readable priority lists
    start_worker("w")
    run_id = submitted.stdout.strip()
    wait_for(lambda: client.hget(f"palign:run:{run_id}", "state") == "finished", 60, "the run")
    report = json.loads(run_palign("report", run_id, "--broker", redis_server.url, "--format", "json").stdout)
    assert report["strategy"] == strategy
    assert {b["strategy"] for b in branches_of(report).values() if b["status"] == "aligned"} == {"merge"}


def test_checks_gate_publishing_on_workers_too(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = renaming_repo(tmp_path / "repo")
    before, docs_before = repo.rev("feature"), repo.rev("docs")
    # The run names its checks; each worker runs those of its own configuration.
    config = tmp_path / "palign.toml"
    config.write_text(f"[validate]\nimports = {json.dumps(IMPORT_USE)}\n")
    aligner = start_worker("aligner", queues="align,report")
    checker = start_worker("checker", queues="validate", config=config)
    out = tmp_path / "out"
    result = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--broker",
        redis_server.url,
        "--config",
        str(config),
        "--apply",
        "--report-dir",
        str(out),
    )
    assert result.code == 1, result.stderr
    branches = branches_of(read_report(out))
    assert branches["feature"]["status"] == "failed_validation"
    assert "AttributeError" in branches["feature"]["validation"]["checks"][0]["output_tail"]
    assert branches["docs"]["status"] == "aligned" and branches["docs"]["applied"] is True
    assert repo.rev("feature") == before and repo.rev("docs") == branches["docs"]["new_sha"]
    # Checks ran as tasks of their own on the validate queue, on the worker serving it.
    ran = task_workers(redis_server, read_report(out)["run_id"])
    assert {w for t, w in ran.items() if t.endswith(".v")} == {checker.hostname}
    assert {w for t, w in ran.items() if not t.endswith(".v") and ".chunk" not in t} == {aligner.hostname}
    # The failing result stays inspectable under refs/palign/pending/; only the passing one is staged.
    run_id = read_report(out)["run_id"]
    pending = git_out(repo.path, "for-each-ref", "--format=%(refname:lstrip=4)", f"refs/palign/pending/{run_id}/")
    assert pending.split() == ["docs", "feature"]
    staged = git_out(repo.path, "for-each-ref", "--format=%(refname:lstrip=4)", f"refs/palign/staged/{run_id}/")
    assert staged.split() == ["docs"]
    # The results are shared in Redis: the same trees are not checked again, on any worker.
    assert redis_server.client().keys("palign:check:*")
    repo.git("update-ref", "refs/heads/docs", docs_before)  # as before the apply: aligned again, same tree
    again = tmp_path / "again"
    run_palign(
        "run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--config", str(config),
        "--report-dir", str(again),
    )  # fmt: skip
    assert branches_of(read_report(again))["docs"]["validation"]["checks"][0]["cached"] is True
    assert branches_of(read_report(again))["feature"]["validation"]["checks"][0]["cached"] is False  # failures rerun


def test_workers_reach_repo_only_by_its_url(
    served_repo: tuple[Path, str], tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """REPO served by `git daemon` on loopback: workers with their own caches fetch it,
    push their results, and promote checked results, all through git:// URLs."""
    bare, url = served_repo
    repo = GitRepo(bare)
    local = run_palign("run", url, "--onto", "main", "--report-dir", str(tmp_path / "local"))
    assert local.code in (0, 1), local.stderr
    config = tmp_path / "palign.toml"
    config.write_text('[validate]\nlisting = "ls > /dev/null"\n')
    start_worker("east", config=config)
    start_worker("west", config=config)
    result = run_palign(
        "run",
        url,
        "--onto",
        "main",
        "--broker",
        redis_server.url,
        "--config",
        str(config),
        "--report-dir",
        str(tmp_path / "dist"),
    )
    assert result.code == local.code, result.stderr
    dist = read_report(tmp_path / "dist")
    mine = read_report(tmp_path / "local")
    strip = {name: value[:2] + value[4:] for name, value in comparable(repo, dist).items()}
    assert strip == {name: value[:2] + value[4:] for name, value in comparable(repo, mine).items()}
    run_id = dist["run_id"]
    staged = git_out(
        bare, "for-each-ref", "--format=%(refname:lstrip=4) %(objectname)", f"refs/palign/staged/{run_id}/"
    )
    wanted = {name: b["new_sha"] for name, b in branches_of(dist).items() if b["status"] in ("aligned", "merged")}
    assert dict(line.split() for line in staged.splitlines()) == wanted
