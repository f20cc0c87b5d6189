"""`palign flower` as a real process: with basic auth it lists a distributed run's tasks
(from the workers' events) under their readable names, and refuses the API without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_report
from tests.repos import fleet_repo
from tests.services import FLOWER_LOGIN, Flower, RedisServer, Worker, flower_on, wait_for


@pytest.fixture
def flower(tmp_path: Path, redis_server: RedisServer) -> Iterator[Flower]:
    with flower_on(redis_server.url, tmp_path / "flower") as server:
        yield server


def test_flower_lists_a_runs_tasks_by_readable_name(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker], flower: Flower
) -> None:
    # The API needs the login; a wrong one is refused like none.
    assert flower.get("/api/tasks", auth=None)[0] == 401
    assert flower.get("/api/tasks", auth="ci:wrong")[0] == 401
    assert flower.get("/api/tasks")[0] == 200
    # Events travel over pub/sub and are lost while nobody listens: before any worker runs,
    # the one pattern subscriber is Flower's event receiver.
    client = redis_server.client()
    wait_for(lambda: client.pubsub_numpat() >= 1, 30, "flower to subscribe to the events")

    # The run is enqueued before any worker runs. A task's `task-sent` event names it
    # `palign.align` (Celery does not put the shadow name in it) and is published just
    # after the message: a worker that took the task in between would send its readable
    # `task-received` first, and the late `task-sent` would overwrite the name in Flower.
    # What a worker sends itself (the stack's next level, the chunk's callback) is safe: with
    # late acks and one process, it takes no new task before the sending task has ended.
    repo = fleet_repo(tmp_path / "repo", independent=4, stacks=1, depth=2)
    args = [
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--broker",
        redis_server.url,
        "--report-dir",
        str(tmp_path / "out"),
    ]
    with open(tmp_path / "run.log", "wb") as log:
        producer = subprocess.Popen(
            [sys.executable, "-m", "palign", *args], stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
    try:
        # The chord's header: the stack's first level and the one task of independent branches.
        wait_for(
            lambda: producer.poll() is not None or len(flower.tasks()) == 2,
            30,
            "flower to see the run's first tasks sent",
            interval=0.1,
        )
        worker = start_worker("fl")
        assert producer.wait(timeout=60) == 1, (tmp_path / "run.log").read_text()  # pr/0, stack0/l0 conflict
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    run_id = read_report(tmp_path / "out")["run_id"]
    # The tasks the run had, from Celery's result records: a chain of two levels for the
    # stack, one task for the independent branches, and the chunk's callback.
    ran = sorted(key.removeprefix("celery-task-meta-") for key in client.scan_iter(f"celery-task-meta-{run_id}.*"))
    aligns = [task for task in ran if not task.endswith(".chunk0")]
    assert len(aligns) == 3 and f"{run_id}.chunk0" in ran, ran
    branches = [f"pr/{i}" for i in range(4)] + ["stack0/l0", "stack0/l1"]

    def listed() -> dict[str, dict[str, Any]] | None:
        tasks = flower.tasks()
        wanted = [tasks.get(task_id) for task_id in ran]
        if all(task is not None and task.get("state") == "SUCCESS" for task in wanted):
            return tasks
        return None

    try:
        tasks = wait_for(listed, 20, "flower to list the run's tasks in SUCCESS", interval=0.2)
    except AssertionError:
        pytest.fail(f"flower lists {json.dumps(flower.tasks(), indent=1)}\n{flower.log.read_text()}")
    assert isinstance(tasks, dict)
    shown = set()
    for task_id in aligns:
        name = tasks[task_id]["name"]
        assert name.startswith(f"palign.align[{run_id}] "), name
        named = [branch for branch in branches if branch in name.split("] ", 1)[1].split(", ")]
        assert named, name
        shown.update(named)
        assert tasks[task_id]["worker"] == worker.hostname
    assert {"stack0/l0", "stack0/l1"} <= shown  # each level of the stack is its own task
    assert tasks[f"{run_id}.chunk0"]["name"] == "palign.chunk_done"
    # Flower's task search finds the run's tasks by run id.
    code, body = flower.get(f"/api/tasks?search={run_id}")
    assert code == 200 and set(json.loads(body)) >= set(ran)


def test_a_flower_login_cannot_make_workers_run_anything(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker], flower: Flower
) -> None:
    """Flower sends any task its users ask for; workers refuse every message not sealed
    with their key, whatever it asks for."""
    config = tmp_path / "palign.toml"
    config.write_text('[validate]\ntests = "true"\n')
    worker = start_worker("w", config=config)
    marker = tmp_path / "owned"
    job = {"run_id": "r", "repo": str(tmp_path), "identity": ["M", "m@x", 0], "git_config": {}, "baseline": False,
           "checks": [{"name": "tests", "run": f"touch {marker}"}], "unit": 0, "level": 0, "requests": []}  # fmt: skip
    for task in ("palign.validate", "palign.align"):
        code, body = flower.post(f"/api/task/send-task/{task}", {"args": [[], job]})
        assert code == 200, body  # Flower sent it ...
    wait_for(lambda: worker.log.read_text().count("refused task") >= 2, 60, "the worker to refuse both")
    assert not marker.exists()  # ... and nothing ran
    assert FLOWER_LOGIN not in Path(f"/proc/{flower.proc.pid}/cmdline").read_text()  # its login came from a file
