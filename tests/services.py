"""Real services for the distributed tests: redis-server on a free loopback port and
palign worker processes, each stopped by its pid (its process group) at the end."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_family(pid: int) -> set[int]:
    """`pid` and its children (a worker's main process and its pool)."""
    found = {pid}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A private redis-server; `persistent` keeps an append-only file, so a restart keeps
    the queues (as a production broker should)."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test installs it)"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
        args += ["--maxmemory-policy", "noeviction", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), 10, "redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes its append-only file and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


class Worker:
    """`palign worker` in its own process group, with its own mirror cache (a machine)."""

    def __init__(
        self,
        broker: str,
        name: str,
        directory: Path,
        *,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        queues: str | None = None,
        config: Path | None = None,
    ):
        self.name = name
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{name}.log"
        environment = os.environ.copy()
        environment.update(PALIGN_CACHE_DIR=str(directory / "cache"), PALIGN_BROKER_URL=broker)
        # The tests' repositories: in temporary folders, or served on loopback.
        environment["PALIGN_ALLOWED_REPOS"] = f"{tempfile.gettempdir()}/*,git://127.0.0.1:*,http://127.0.0.1:*"
        environment.update(env or {})
        args = [sys.executable, "-m", "palign", "worker", "-c", str(concurrency), "-n", f"{name}@%h"]
        args += ["-Q", queues] if queues else []
        args += ["--config", str(config)] if config else []
        # A worker started again (the same machine, after a crash) adds to its log.
        start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
        try:
            wait_for(
                lambda: b" ready." in self.log.read_bytes()[start:] or self.proc.poll() is not None,
                60,
                f"worker {name}",
            )
            assert self.proc.poll() is None, self.log.read_text()
        except BaseException:
            self.stop(timeout=10)  # a worker that never became ready is stopped too
            raise

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        self.signal(signal.SIGKILL)  # pool processes left behind, if any
        return self.proc.returncode


FLOWER_LOGIN = "ci:ci"


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


class Flower:
    """`palign flower --basic-auth-file FILE` in its own process group, stopped by its pid;
    without `broker`, it takes the broker from the environment (PALIGN_BROKER_URL_FILE)."""

    def __init__(self, broker: str | None, login_file: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        args = [sys.executable, "-m", "palign", "flower", *(("--broker", broker) if broker else ())]
        args += ["--address", "127.0.0.1", "--port", str(self.port), "--basic-auth-file", str(login_file)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True
            )

    def get(self, path: str, *, auth: str | None = FLOWER_LOGIN) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if auth is not None:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:  # not listening yet
            return 0, b""

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Authorization", "Basic " + base64.b64encode(FLOWER_LOGIN.encode()).decode())
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def tasks(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = self.api("/api/tasks")
        return found

    def api(self, path: str) -> Any:
        code, body = self.get(path)
        assert code == 200, (path, code, body[:500])
        return json.loads(body)

    def stop(self) -> None:
        stop_group(self.proc)


@contextlib.contextmanager
def flower_on(broker: str | None, directory: Path) -> Iterator[Flower]:
    directory.mkdir(parents=True, exist_ok=True)
    login_file = directory / "flower-login"
    login_file.write_text(FLOWER_LOGIN + "\n")
    login_file.chmod(0o600)
    server = Flower(broker, login_file, directory / "flower.log")
    try:
        wait_for(
            lambda: server.get("/healthcheck", auth=None)[0] == 200 or server.proc.poll() is not None,
            60,
            "flower's /healthcheck",
            interval=0.1,
        )
        assert server.proc.poll() is None, server.log.read_text()
        assert server.get("/api/tasks", auth=None)[0] == 401  # the login from the file is required
        yield server
    finally:
        server.stop()
