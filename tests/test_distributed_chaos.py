"""Faults in a distributed run: a worker killed with SIGKILL or stopped with SIGTERM in
the middle, Redis restarted, a task delivered twice, a branch locked by another run.
Every branch must end in exactly one final state, equal to a local run's verdict, with
no lost commit and no corrupt ref."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from palign.distributed.store import lease_key, lock_key
from tests.conftest import branches_of, comparable, git_out, read_report, refs_snapshot, run_palign
from tests.gitrepo import GitRepo
from tests.repos import fleet_repo
from tests.services import RedisServer, Worker, wait_for

# Independent branches per run: a short form for every test run, a long one on demand
# (`scripts/test -m slow`).
SIZES = [120, pytest.param(960, marks=pytest.mark.slow, id="long")]


def local_verdicts(repo: GitRepo, tmp_path: Path) -> dict[str, tuple[Any, ...]]:
    out = tmp_path / "local-report"
    run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(out))
    return comparable(repo, read_report(out))


def submit(repo: GitRepo, broker: str) -> str:
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", broker, "--no-wait")
    assert result.code == 0, result.stderr
    return result.stdout.strip()


def finished_report(server: RedisServer, run_id: str, timeout: float = 120) -> dict[str, Any]:
    client = server.client()
    wait_for(lambda: client.hget(f"palign:run:{run_id}", "state") == "finished", timeout, f"run {run_id} to finish")
    shown = run_palign("report", run_id, "--broker", server.url, "--format", "json")
    assert shown.code == 0, shown.stderr
    report: dict[str, Any] = json.loads(shown.stdout)
    return report


def assert_complete_and_sound(repo: GitRepo, report: dict[str, Any], expected: dict[str, tuple[Any, ...]]) -> None:
    """Every branch once, in the local run's state and tree; the staged refs are exactly
    the aligned results; REPO's object graph is intact."""
    got = comparable(repo, report)
    assert got == expected, {
        name: (got.get(name), expected.get(name)) for name in expected if got.get(name) != expected[name]
    }
    run_id = report["run_id"]
    staged = git_out(repo.path, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/palign/staged/{run_id}/")
    found = {
        line.split()[0].removeprefix(f"refs/palign/staged/{run_id}/"): line.split()[1] for line in staged.splitlines()
    }
    wanted = {name: b["new_sha"] for name, b in branches_of(report).items() if b["status"] == "aligned"}
    assert found == wanted
    subprocess.run(["git", "-C", str(repo.path), "fsck", "--no-dangling", "--strict"], check=True, capture_output=True)


@pytest.mark.parametrize("independent", SIZES)
def test_a_worker_killed_mid_run_costs_no_branch(
    independent: int,
    tmp_path: Path,
    redis_server: RedisServer,
    start_worker: Callable[..., Worker],
) -> None:
    # Default settings: the victim's tasks come back once its pulse has stopped for the
    # visibility timeout (30 s), not after the task limit.
    repo = fleet_repo(tmp_path / "repo", independent=independent, stacks=3, depth=3)
    expected = local_verdicts(repo, tmp_path)
    victim = start_worker("victim")
    survivor = start_worker("survivor")
    client = redis_server.client()
    out = tmp_path / "out"
    producer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "palign",
            "run",
            str(repo.path),
            "--onto",
            "main",
            "--broker",
            redis_server.url,
            "--report-dir",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = str(wait_for(lambda: next(iter(client.zrange("palign:runs", 0, -1)), None), 60, "the run"))
        wait_for(lambda: int(client.hget(f"palign:run:{run_id}", "done") or 0) > 0, 60, "the first results")
        victim.signal(signal.SIGKILL)  # the worker and its pool processes, in the middle of the run
        victim.proc.wait()
        assert client.hget(f"palign:run:{run_id}", "state") != "finished"
        stdout, stderr = producer.communicate(timeout=300)
    finally:
        producer.kill()
    assert producer.returncode == 1, stderr  # some branches conflict, as in the local run
    report = read_report(out)
    assert_complete_and_sound(repo, report, expected)
    assert int(client.hget(f"palign:run:{run_id}", "done") or 0) == len(expected)  # each branch counted once
    ran = {json.loads(client.get(k) or "{}").get("worker") for k in client.scan_iter(f"celery-task-meta-{run_id}.*")}
    assert survivor.hostname in ran
    assert survivor.proc.poll() is None


@pytest.mark.parametrize("independent", SIZES)
def test_sigterm_is_a_warm_shutdown_and_the_run_completes(
    independent: int, tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=independent, stacks=2, depth=3)
    expected = local_verdicts(repo, tmp_path)
    leaving = start_worker("leaving")
    start_worker("staying")
    client = redis_server.client()
    run_id = submit(repo, redis_server.url)
    wait_for(lambda: int(client.hget(f"palign:run:{run_id}", "done") or 0) > 0, 60, "the first results")
    leaving.proc.send_signal(signal.SIGTERM)  # what Kubernetes or systemd sends
    assert leaving.proc.wait(timeout=60) == 0
    assert "Warm shutdown" in leaving.log.read_text() or "warm shutdown" in leaving.log.read_text().lower()
    report = finished_report(redis_server, run_id)
    assert_complete_and_sound(repo, report, expected)


@pytest.mark.parametrize("independent", SIZES)
def test_redis_restart_with_persistence_loses_nothing(independent: int, tmp_path: Path) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=independent, stacks=2, depth=3)
    expected = local_verdicts(repo, tmp_path)
    server = RedisServer(tmp_path / "redis-aof", persistent=True)
    worker = None
    try:
        worker = Worker(server.url, "steady", tmp_path / "workers" / "steady")
        client = server.client()
        run_id = submit(repo, server.url)
        wait_for(lambda: int(client.hget(f"palign:run:{run_id}", "done") or 0) > 0, 60, "the first results")
        server.stop()
        wait_for(lambda: "Connection to broker lost" in worker.log.read_text(), 60, "the worker to see Redis gone")
        server.start()  # same port, same append-only file
        report = finished_report(server, run_id, timeout=180)
        assert_complete_and_sound(repo, report, expected)
    finally:
        if worker is not None:
            worker.stop(timeout=20)
        server.stop()


def test_a_task_delivered_twice_gives_the_same_result_and_refs(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=10, stacks=1, depth=2)
    start_worker("w", concurrency=2)
    run_id = submit(repo, redis_server.url)
    first = finished_report(redis_server, run_id)
    refs = refs_snapshot(repo.path)
    client = redis_server.client()
    original = json.loads(client.get(f"celery-task-meta-{run_id}.1.0") or "{}")
    args = original["args"]  # sealed by the producer: a plain client could not make them

    from palign.distributed.app import make_app
    from palign.settings import Settings

    app = make_app(Settings.load(broker_url=redis_server.url))
    align = app.tasks["palign.align"]
    # Delivered again after the run: the stored results come back, nothing is written.
    again = align.apply_async(args=args, task_id=f"{run_id}.again").get(timeout=60)
    assert again == original["result"]
    # Delivered again with a branch's result lost: it is aligned again, to the very same
    # commit (a run pins its committer time), and its staging ref is left as it was.
    victim = args[-1]["payload"]["requests"][0]["refname"]
    client.hdel(f"palign:run:{run_id}:results", victim)
    redone = align.apply_async(args=args, task_id=f"{run_id}.redone").get(timeout=60)
    assert [r["new_sha"] for r in redone["payload"][1]] == [r["new_sha"] for r in original["result"]["payload"][1]]
    assert refs_snapshot(repo.path) == refs
    assert branches_of(finished_report(redis_server, run_id)) == branches_of(first)
    # Delivered again while another delivery holds the unit's lease (a worker that froze):
    # it waits until that lease expires, then takes over, with the same result.
    client.hdel(f"palign:run:{run_id}:results", victim)
    unit = args[-1]["payload"]["unit"]
    client.set(lease_key(run_id, unit), f"{run_id} frozen-host:1 token", px=4000)
    started = time.monotonic()
    waited = align.apply_async(args=args, task_id=f"{run_id}.waited").get(timeout=60)
    assert time.monotonic() - started >= 3
    assert [(r["status"], r["new_sha"]) for r in waited["payload"][1]] == [
        (r["status"], r["new_sha"]) for r in redone["payload"][1]
    ]
    assert client.get(lease_key(run_id, unit)) is None  # released when done
    assert refs_snapshot(repo.path) == refs


def test_a_check_longer_than_the_visibility_timeout_runs_once(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """A live worker renews the tasks it holds: a check that runs past the visibility
    timeout is never handed to another worker (it would run twice)."""
    repo = fleet_repo(tmp_path / "repo", independent=2, stacks=0)  # pr/0 conflicts, pr/1 aligns
    config = tmp_path / "palign.toml"
    config.write_text('[validate]\nslow = "sleep 15"\n')
    short = {"PALIGN_VISIBILITY_TIMEOUT": "6"}  # 2.5 visibility timeouts per check
    workers = [start_worker(name, env=short, config=config) for name in ("first", "second")]
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
        "--report-dir",
        str(out),
    )
    assert result.code == 1, result.stderr  # pr/0's conflict
    assert branches_of(read_report(out))["pr/1"]["status"] == "aligned"
    received = [line for w in workers for line in w.log.read_text().splitlines() if "Task palign.validate[" in line]
    assert len([line for line in received if line.endswith(" received")]) == 1, received


def test_a_branch_another_run_is_aligning_is_not_touched(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=4, stacks=0)
    client = redis_server.client()
    url = str(repo.path.resolve())
    client.set(lock_key(url, "refs/heads/pr/1"), "20260101-000000-0ther0", px=120_000)
    start_worker("w", env={"PALIGN_LOCK_WAIT": "1"})
    out = tmp_path / "out"
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--report-dir", str(out))
    assert result.code == 1
    branches = branches_of(read_report(out))
    assert branches["pr/1"]["status"] == "error"
    assert branches["pr/1"]["errors_detected"] == ["branch_busy"]
    assert "20260101-000000-0ther0" in branches["pr/1"]["error_message"]
    assert branches["pr/2"]["status"] == "aligned" and branches["pr/0"]["status"] == "conflict"
    # The lock belongs to the other run: still there, untouched.
    assert client.get(lock_key(url, "refs/heads/pr/1")) == "20260101-000000-0ther0"
