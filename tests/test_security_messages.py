"""Attacks through Redis, tried as an attacker would: someone who can write to Redis (or
send tasks through Flower) but holds no signing key. Nothing they send runs; nothing they
plant is believed."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from palign.signing import Signer
from palign.validation.cache import check_key
from palign.validation.checks import Check
from tests.conftest import SIGNING_KEY, branches_of, read_report, run_palign
from tests.repos import IMPORT_USE, fleet_repo, renaming_repo
from tests.services import RedisServer, Worker, wait_for


def plain_client(broker: str) -> Celery:
    """A Celery client that knows only the Redis URL: no palign, no key."""
    app = Celery("attacker", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def checks_config(tmp_path: Path, **checks: str) -> Path:
    config = tmp_path / "palign.toml"
    config.write_text("[validate]\n" + "".join(f"{name} = {json.dumps(run)}\n" for name, run in checks.items()))
    return config


def refusals(worker: Worker) -> int:
    return worker.log.read_text(errors="replace").count("refused task")


def test_a_message_without_the_key_runs_nothing(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=2, stacks=0)
    marker = tmp_path / "owned"
    worker = start_worker("w", config=checks_config(tmp_path, tests="true"))
    attacker = plain_client(redis_server.url)
    job = {
        "run_id": "20260101-000000-abcdef",
        "repo": str(repo.path),
        "identity": ["Mallory", "m@example.com", 0],
        "git_config": {},
        "checks": [{"name": "tests", "run": f"touch {marker}", "timeout": 10, "retries": 0}],  # the old format
        "baseline": False,
        "unit": 0,
        "level": 0,
        "requests": [],
    }
    sent = [
        attacker.send_task("palign.validate", args=[[], job], queue="validate"),
        attacker.send_task("palign.align", args=[[], job], queue="align"),
        # A seal that was never made with the key, and one made with another key.
        attacker.send_task("palign.align", args=[[], {"kind": "job", "payload": job, "mac": "0" * 64}], queue="align"),
        attacker.send_task(
            "palign.align",
            args=[Signer(b"not the workers' key at all").seal("results", ["r", []]), job],
            queue="align",
        ),
        attacker.send_task(
            "palign.chunk_done", args=[{"kind": "chunk", "payload": ["r", 0], "mac": "1" * 64}], queue="report"
        ),
    ]
    wait_for(lambda: refusals(worker) >= len(sent), 60, "the worker to refuse every forged message")
    assert not marker.exists()
    assert "refused task" in worker.log.read_text() and "does not verify" in worker.log.read_text()
    assert not redis_server.client().keys("palign:run:*")  # nothing was recorded for the named run


def test_an_altered_message_and_forbidden_git_settings_are_refused(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """A genuine message with its payload altered, and one sealed with the key but asking
    for git settings no message may carry (a transport, a URL rewrite to `ext::`)."""
    repo = fleet_repo(tmp_path / "repo", independent=2, stacks=0)
    marker = tmp_path / "owned"
    worker = start_worker("w")
    done = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url)
    assert done.code == 1, done.stderr  # one of the two conflicts
    client = redis_server.client()
    meta = next(json.loads(client.get(k) or "{}") for k in client.scan_iter("celery-task-meta-*.0.0"))
    lower, sealed_job = meta["args"]
    attacker = plain_client(redis_server.url)

    altered = json.loads(json.dumps(sealed_job))
    altered["payload"]["git_config"] = {"core.sshCommand": f"touch {marker}"}
    signer = Signer(SIGNING_KEY.encode())  # even a holder of the key cannot ask for these
    evil = dict(sealed_job["payload"])
    evil["git_config"] = {
        "protocol.ext.allow": "always",
        f"url.ext::sh -c touch% {marker}.insteadOf": evil["repo"],
    }
    before = refusals(worker)
    attacker.send_task("palign.align", args=[lower, altered], queue="align")
    attacker.send_task("palign.align", args=[lower, signer.seal("job", evil)], queue="align")
    wait_for(lambda: refusals(worker) >= before + 2, 60, "the worker to refuse both messages")
    assert not marker.exists()
    log = worker.log.read_text()
    assert "does not verify" in log and "git setting not allowed in a task" in log


def test_a_planted_check_result_is_not_believed(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = renaming_repo(tmp_path / "repo")
    config = checks_config(tmp_path, imports=IMPORT_USE)
    start_worker("w", config=config)
    first = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--config", str(config),
                       "--report-dir", str(tmp_path / "one"))  # fmt: skip
    assert first.code == 1, first.stderr
    failing = branches_of(read_report(tmp_path / "one"))["feature"]
    assert failing["status"] == "failed_validation"
    # "Passed", for the very tree that fails: planted bare, and sealed with another key.
    key = check_key(failing["validation"]["tree"], Check("imports", IMPORT_USE).ref().digest)
    passed = {"name": "imports", "command": IMPORT_USE, "passed": True, "exit_code": 0, "duration_seconds": 0.1,
              "output_tail": "", "attempts": 1, "timed_out": False, "sandbox": True}  # fmt: skip
    client = redis_server.client()
    for planted in (passed, Signer(b"someone else's key, long enough").seal("check", [key, passed])):
        client.set(f"palign:check:{key}", json.dumps(planted))
        run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--config",
                   str(config), "--report-dir", str(tmp_path / "again"))  # fmt: skip
        branch = branches_of(read_report(tmp_path / "again"))["feature"]
        assert branch["status"] == "failed_validation", branch
        assert branch["validation"]["checks"][0]["cached"] is False


def test_a_check_the_worker_is_not_configured_with_is_not_run(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    """The producer names checks; a worker runs only its own: a name it lacks, or the same
    name for another command, ends the branch as an error, and runs nothing."""
    repo = renaming_repo(tmp_path / "repo")
    marker = tmp_path / "ran"
    producer = checks_config(tmp_path, imports=f"touch {marker}")
    worker_side = tmp_path / "worker"
    worker_side.mkdir()
    start_worker("w", config=checks_config(worker_side, imports=IMPORT_USE))
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--config",
                        str(producer), "--report-dir", str(tmp_path / "out"))  # fmt: skip
    assert result.code == 1, result.stderr
    docs = branches_of(read_report(tmp_path / "out"))["docs"]
    assert docs["status"] == "error" and docs["errors_detected"] == ["check_not_configured"]
    assert "differs from the one the run asked for" in docs["error_message"]
    assert not marker.exists()


def test_a_producer_whose_key_no_worker_shares_is_refused_before_anything_is_written(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=2, stacks=0)
    start_worker("w", env={"PALIGN_SIGNING_KEY": "the workers' key, which differs"})
    client = redis_server.client()
    wait_for(lambda: client.keys("palign:worker:*"), 30, "the worker to register")
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "no live worker shares this producer's signing key" in result.stderr
    assert not client.keys("palign:run:*")


@pytest.mark.parametrize("missing", ["producer", "worker"])
def test_distributed_mode_needs_a_signing_key(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=2, stacks=0)
    monkeypatch.delenv("PALIGN_SIGNING_KEY")
    if missing == "producer":
        result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, cwd=tmp_path)
    else:
        result = run_palign("worker", "--broker", redis_server.url, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "signing key" in result.stderr and "PALIGN_SIGNING_KEY_FILE" in result.stderr
    assert not (tmp_path / "palign-report").exists()


def _value(client: Any, key: str) -> Any:
    kind = client.type(key)
    if kind == "string":
        return client.get(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return sorted(client.smembers(key))
    if kind == "zset":
        return client.zrange(key, 0, -1)
    if kind == "stream":
        return client.xrange(key)
    return None


def _scan(client: Any, needle: str) -> list[str]:
    """Keys of every kind whose name or value holds `needle`."""
    keys = client.scan_iter("*")
    return [key for key in keys if needle in key or needle in json.dumps(_value(client, key), default=str)]


def test_the_signing_key_never_reaches_redis(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=3, stacks=1, depth=2)
    start_worker("w")
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url)
    assert result.code == 1, result.stderr
    client = redis_server.client()
    assert _scan(client, "refs/heads/pr/1")  # the scan sees what is there
    assert not _scan(client, SIGNING_KEY)


def test_a_worker_serves_only_the_repositories_it_allows(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = fleet_repo(tmp_path / "repo", independent=2, stacks=0)
    start_worker("w", env={"PALIGN_ALLOWED_REPOS": "https://git.example.com/org/*"})
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--report-dir",
                        str(tmp_path / "out"))  # fmt: skip
    assert result.code == 1, result.stderr
    branches = branches_of(read_report(tmp_path / "out"))
    assert {b["errors_detected"][0] for b in branches.values()} == {"repository_not_allowed"}
    assert not repo.out("for-each-ref", "refs/palign/staged/")  # nothing written for it


def test_a_planted_local_check_result_is_not_believed(tmp_path: Path) -> None:
    """The local cache of check results is sealed with a key of this machine's own."""
    repo = renaming_repo(tmp_path / "repo")
    first = run_palign("run", str(repo.path), "--onto", "main", "--branch", "feature", "--validate", IMPORT_USE,
                       "--report-dir", str(tmp_path / "one"))  # fmt: skip
    failing = branches_of(read_report(tmp_path / "one"))["feature"]
    assert first.code == 1 and failing["status"] == "failed_validation"
    key = check_key(failing["validation"]["tree"], Check("validate-1", IMPORT_USE).ref().digest)
    planted = Path(os.environ["PALIGN_CACHE_DIR"]) / "checks" / key[:2] / f"{key}.json"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(json.dumps({"name": "validate-1", "command": IMPORT_USE, "passed": True, "exit_code": 0}))
    run_palign("run", str(repo.path), "--onto", "main", "--branch", "feature", "--validate", IMPORT_USE,
               "--report-dir", str(tmp_path / "two"))  # fmt: skip
    again = branches_of(read_report(tmp_path / "two"))["feature"]
    assert again["status"] == "failed_validation" and again["validation"]["checks"][0]["cached"] is False
