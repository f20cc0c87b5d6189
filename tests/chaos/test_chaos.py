"""Chaos: a distributed run of more than 1,000 branches, with palign's default settings,
through the faults a fleet meets: workers killed with SIGKILL (whole, or one pool
process) and started again, a worker frozen past the visibility timeout and woken, a
worker cut from Redis for a while, Redis restarted (with its append-only file). After
each run: every branch in exactly one final state, equal to a fault-free run's; every
branch of REPO at its old or its aligned commit; backups intact; `git fsck --strict`
clean. Each fault's cost is printed (`-s` shows it).

The short form is one run with each fault once; the long form (`-m slow`) runs rounds
with random faults for PALIGN_CHAOS_MINUTES (30) minutes and prints what it survived.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.fleet import Fault, Fleet
from tests.conftest import branches_of, comparable, git_out, read_report, run_palign
from tests.gitrepo import GitRepo
from tests.repos import large_fleet_repo
from tests.services import wait_for

INDEPENDENT, STACKS, DEPTH = 1000, 20, 3
# Every branch passes it; it makes a task last long enough for faults to meet it.
CHECK = "sleep 0.25"

Schedule = list[tuple[float, Callable[[Fleet, str], None]]]


def _kill(fleet: Fleet, run_id: str) -> None:
    fleet.kill(run_id, fleet.busiest(run_id, sorted(fleet.workers)))


def _kill_child(fleet: Fleet, run_id: str) -> None:
    fleet.kill_child(run_id, fleet.busiest(run_id, sorted(fleet.workers)))


def _freeze(fleet: Fleet, run_id: str) -> None:
    fleet.freeze(run_id, fleet.busiest(run_id, sorted(set(fleet.workers) - fleet._stopped)))


def _cut(fleet: Fleet, run_id: str) -> None:
    fleet.cut(run_id, fleet.busiest(run_id, sorted(set(fleet.workers) - fleet._stopped)))


def _restart_redis(fleet: Fleet, run_id: str) -> None:
    fleet.restart_redis(run_id)


@pytest.fixture
def template(tmp_path: Path) -> tuple[Path, dict[str, tuple[Any, ...]]]:
    """The repository every round copies, and a fault-free (local) run's verdicts on it:
    the check passes everywhere, so it changes no verdict."""
    repo = large_fleet_repo(tmp_path / "template", independent=INDEPENDENT, stacks=STACKS, depth=DEPTH)
    out = tmp_path / "fault-free"
    result = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(out))
    assert result.code == 1, result.stderr  # some branches conflict
    return repo.path, comparable(repo, read_report(out))


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    config = tmp_path / "palign.toml"
    config.write_text(f'[validate]\nslow = "{CHECK}"\n')
    started = Fleet(tmp_path / "fleet", 3, config)
    try:
        yield started
    finally:
        started.close()


def run_round(fleet: Fleet, template: Path, directory: Path, schedule: Schedule) -> tuple[str, float, list[Fault]]:
    """One run on a fresh copy of the template, the faults of `schedule` (seconds after
    the run starts) injected while it runs; returns its id, duration and faults."""
    repo = directory / "repo"
    shutil.copytree(template, repo, symlinks=True)
    client = fleet.redis.client()
    known = set(client.zrange("palign:runs", 0, -1))
    args = ["run", str(repo), "--onto", "main", "--broker", fleet.url, "--config", str(fleet.config), "--apply"]
    producer = subprocess.Popen(
        [sys.executable, "-m", "palign", *args, "--report-dir", str(directory / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    first = len(fleet.faults)
    try:
        new_run = lambda: next(iter(set(client.zrange("palign:runs", 0, -1)) - known), None)  # noqa: E731
        run_id = str(wait_for(new_run, 120, "the run"))
        started = time.monotonic()
        for at, fault in schedule:
            while time.monotonic() - started < at and producer.poll() is None:
                time.sleep(0.1)
            if producer.poll() is not None:
                break
            fault(fleet, run_id)
        stdout, stderr = producer.communicate(timeout=900)
        took = time.monotonic() - started
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
        fleet.settle()
    assert producer.returncode == 1, f"{stdout}\n{stderr}"  # some branches conflict, as in the fault-free run
    return run_id, took, fleet.faults[first:]


def assert_survived(fleet: Fleet, repo: Path, report: dict[str, Any], expected: dict[str, tuple[Any, ...]]) -> None:
    run_id = report["run_id"]
    got = comparable(GitRepo(repo), report)
    differing = {name: (got.get(name), want) for name, want in expected.items() if got.get(name) != want}
    assert got == expected, differing
    client = fleet.redis.client()
    assert int(client.hget(f"palign:run:{run_id}", "done") or 0) == len(expected)  # each branch counted once
    refs = dict(
        reversed(line.split(" ", 1))  # type: ignore[misc]
        for line in git_out(repo, "for-each-ref", "--format=%(objectname) %(refname)").splitlines()
    )
    for name, branch in branches_of(report).items():
        aligned = branch["status"] == "aligned"
        # Applied when aligned (the run asked for it), untouched otherwise.
        assert refs[f"refs/heads/{name}"] == (branch["new_sha"] if aligned else branch["old_sha"]), name
        assert branch["applied"] == aligned, name
        assert refs[f"refs/palign/backup/{run_id}/{name}"] == branch["old_sha"], name
        assert refs.get(f"refs/palign/staged/{run_id}/{name}") == (branch["new_sha"] if aligned else None), name
    subprocess.run(["git", "-C", str(repo), "fsck", "--no-dangling", "--strict"], check=True, capture_output=True)


def show(title: str, took: float, faults: list[Fault], run_started: float) -> None:
    print(f"\n{title}: {took:.0f} s")
    for fault in faults:
        print(fault.line(run_started))


def test_a_large_run_survives_each_fault_with_default_settings(
    tmp_path: Path, fleet: Fleet, template: tuple[Path, dict[str, tuple[Any, ...]]]
) -> None:
    path, expected = template
    schedule: Schedule = [
        (5, _kill),
        (15, _freeze),
        (25, _cut),
        (40, _restart_redis),
        (50, _kill_child),
        (60, _kill),
    ]
    run_id, took, faults = run_round(fleet, path, tmp_path / "round", schedule)
    report = read_report(tmp_path / "round" / "out")
    assert report["run_id"] == run_id
    assert_survived(fleet, tmp_path / "round" / "repo", report, expected)
    show(f"run {run_id}, {len(expected)} branches", took, faults, faults[0].started - 5 if faults else 0)
    assert len(faults) == len(schedule), "the run ended before every fault met it"
    costs = [f.cost for f in faults if f.held]
    assert all(cost is not None and cost < 120 for cost in costs), [f.line(0) for f in faults]


@pytest.mark.slow
def test_rounds_of_random_faults_for_as_long_as_asked(
    tmp_path: Path, fleet: Fleet, template: tuple[Path, dict[str, tuple[Any, ...]]]
) -> None:
    path, expected = template
    minutes = float(os.environ.get("PALIGN_CHAOS_MINUTES", "30"))
    deadline = time.monotonic() + minutes * 60
    kinds = [_kill, _kill, _kill, _kill_child, _kill_child, _freeze, _cut]
    survived: list[Fault] = []
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        at, schedule = 0.0, []
        for _ in range(random.randint(4, 8)):
            at += random.uniform(5, 20)
            schedule.append((at, random.choice(kinds)))
        schedule.insert(random.randrange(len(schedule)), (random.uniform(5, at), _restart_redis))
        schedule.sort(key=lambda item: item[0])
        directory = tmp_path / f"round{rounds}"
        run_id, took, faults = run_round(fleet, path, directory, schedule)
        assert_survived(fleet, directory / "repo", read_report(directory / "out"), expected)
        show(f"round {rounds}: run {run_id}", took, faults, faults[0].started if faults else 0)
        survived += faults
        shutil.rmtree(directory / "repo")  # disk stays bounded however long it runs
    by_kind: dict[str, list[float]] = {}
    for fault in survived:
        if fault.cost is not None and fault.held:
            by_kind.setdefault(fault.kind, []).append(fault.cost)
    print(f"\nsurvived {len(survived)} faults in {rounds} runs of {len(expected)} branches, {minutes:.0f} minutes:")
    for kind, costs in sorted(by_kind.items()):
        median = sorted(costs)[len(costs) // 2]
        print(f"  {kind:<14} x{len(costs):<3} cost median {median:.1f} s, max {max(costs):.1f} s")
