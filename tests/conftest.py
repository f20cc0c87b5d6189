"""Shared fixtures: hermetic git, real repositories in temporary folders, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from palign.demo import build_demo_repository
from palign.report import SCHEMA_PATH
from tests.gitrepo import GitRepo
from tests.services import RedisServer, Worker, free_port, wait_for

SIGNING_KEY = "palign tests: a key shared by producers and workers"


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No user or system git config, a fixed identity, and a private palign cache and
    scratch root (in memory where the machine has it, as palign's default)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("PALIGN_CACHE_DIR", str(home / "cache"))
    shm = Path("/dev/shm")
    memory = shm.is_dir() and os.access(shm, os.W_OK)
    scratch = Path(tempfile.mkdtemp(prefix="palign-test-", dir=shm if memory else home))
    monkeypatch.setenv("PALIGN_SCRATCH_DIR", str(scratch / "scratch"))
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "Tester")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "tester@example.com")
    monkeypatch.setenv("PALIGN_COMMITTER_NAME", "Tester")
    monkeypatch.setenv("PALIGN_COMMITTER_EMAIL", "tester@example.com")
    # Producers and workers of the distributed tests seal and open with the same key.
    monkeypatch.setenv("PALIGN_SIGNING_KEY", SIGNING_KEY)
    yield
    shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_palign(*args: str, cwd: Path | None = None) -> CliResult:
    """The real console entry point in a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "palign", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=300,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def refs_snapshot(repo: Path) -> str:
    return git_out(repo, "for-each-ref", "--format=%(objectname) %(refname)")


def read_report(directory: Path) -> dict[str, Any]:
    """report.json of a run in `directory`, checked against the report's JSON Schema."""
    data: dict[str, Any] = json.loads((directory / "report.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    return data


def branches_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["branch_name"]: b for target in report["orchestration_results"].values() for b in target["branches"]}


def comparable(repo: GitRepo, report: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What must not depend on the executor: verdict, tree, counts, plan facts."""
    return {
        name: (
            b["status"],
            repo.tree(b["new_sha"]) if b["new_sha"] else None,
            b["commits_replayed"],
            b["commits_skipped"],
            b["category"],
            b["stacked_on"],
            b["errors_detected"],
        )
        for name, b in branches_of(report).items()
    }


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    """`palign demo`'s sample repository: 40 branches onto main (clean, conflicting, up to
    date, merged, stacked)."""
    repo = tmp_path / "repo"
    build_demo_repository(repo)
    return repo


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, stopped by its pid afterwards."""
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[..., Worker]]:
    """Start `palign worker` processes (each a 'machine' with its own cache); all are
    stopped at the end of the test."""
    started: list[Worker] = []

    def start(
        name: str,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        queues: str | None = None,
        config: Path | None = None,
    ) -> Worker:
        directory = tmp_path / "workers" / name
        worker = Worker(
            redis_server.url, name, directory, concurrency=concurrency, env=env, queues=queues, config=config
        )
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop(timeout=20)


@pytest.fixture
def served_repo(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The demo repository, bare, served read-write by `git daemon` on a free loopback port."""
    work = tmp_path / "work"
    build_demo_repository(work)
    bare = tmp_path / "served" / "demo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "config", "daemon.receivepack", "true"], check=True)
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={tmp_path / 'served'}",
            str(tmp_path / "served"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listening(port), 10, "git daemon to listen")
        yield bare, f"git://127.0.0.1:{port}/demo.git"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
