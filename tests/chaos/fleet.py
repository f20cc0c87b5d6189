"""A fleet for the chaos tests: a persistent Redis, palign workers that each reach it
through their own cuttable proxy, and the faults a fleet meets (a machine killed, a pool
process OOM-killed, a VM frozen, a network partition, Redis restarted). Each fault
measures what it cost: the seconds from the fault until the work the victim held is
going on again elsewhere (another worker holds its lease), is done (the level it was
working on has its results, whoever recorded them), or the victim itself is back (woken,
or reconnected) where nobody took its work over meanwhile. Waiting in the queue after that
is the run's ordinary pace, not the fault's."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from palign.distributed.finish import unfinished
from palign.distributed.store import RunStore
from palign.errors import BrokerUnavailable
from palign.settings import Settings
from tests.chaos.proxy import TcpProxy
from tests.services import RedisServer, Worker, process_family, wait_for

T = TypeVar("T")
F = TypeVar("F")

# With the default settings, a worker's tasks stay its own this long after its last pulse.
VISIBILITY_TIMEOUT = Settings.load(environ={}, distributed=True).broker.visibility_timeout


@dataclass
class Fault:
    kind: str
    victim: str
    started: float  # time.monotonic()
    held: int = 0  # units of the run the victim was working on
    cost: float | None = None  # seconds until that work went on again (None: not yet)
    back: bool = False  # a frozen or cut-off victim is running again

    def line(self, run_started: float) -> str:
        cost = "-" if self.cost is None else f"{self.cost:5.1f} s"
        at = self.started - run_started
        return f"  {at:6.1f} s  {self.kind:<14} {self.victim:<6} held {self.held:>2} units  cost {cost}"


@dataclass
class Fleet:
    root: Path
    size: int
    config: Path | None = None
    redis: RedisServer = field(init=False)
    workers: dict[str, Worker] = field(default_factory=dict)
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopped: set[str] = field(default_factory=set)  # frozen workers, to wake before stopping
    starting: set[str] = field(default_factory=set)  # killed workers being started again

    def __post_init__(self) -> None:
        self.redis = RedisServer(self.root / "redis", persistent=True)
        try:
            for number in range(self.size):
                self.start(f"w{number}")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return self.redis.url

    def store(self) -> RunStore:
        return RunStore.of(Settings.load(broker_url=self.url).broker)

    def start(self, name: str) -> Worker:
        proxy = self.proxies.get(name) or TcpProxy(self.redis.port)
        self.proxies[name] = proxy
        worker = Worker(proxy.url(), name, self.root / "workers" / name, config=self.config)
        self.workers[name] = worker
        return worker

    def pids(self, name: str) -> set[int]:
        """The worker's main process and its pool processes."""
        return process_family(self.workers[name].proc.pid)

    # --- what a worker holds ------------------------------------------------------------

    def held_units(self, run_id: str, pids: set[int]) -> set[int]:
        holders = _quietly(lambda: self.store().lease_holders(run_id), {})
        return {unit for unit, holder in holders.items() if _pid(holder) in pids}

    def busiest(self, run_id: str, candidates: list[str], patience: float = 10) -> str:
        """A worker that holds work now (the fault then costs something), or that comes to
        hold some within `patience` seconds, else any."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            holding = [name for name in candidates if self.held_units(run_id, self.pids(name))]
            if holding:
                return random.choice(holding)
            time.sleep(0.2)
        return random.choice(candidates)

    def _levels(self, run_id: str) -> dict[int, int] | None:
        """Each unfinished unit's first level without results."""
        return _quietly(lambda: unfinished(self.store(), run_id).first_missing, None)

    def _steps_done(self, run_id: str, unit: int, level: int) -> int | None:
        """How many of a level's tasks (its align, then its checks) have succeeded, as
        Celery's result backend says: with checks, a level's results are recorded only by
        its `palign.validate` task, which may wait long in its queue after the align."""
        client = self.redis.client()

        def read() -> int:
            found = client.mget([f"celery-task-meta-{run_id}.{unit}.{level}{step}" for step in ("", ".v")])
            return sum(1 for meta in found if meta and json.loads(meta).get("status") == "SUCCESS")

        return _quietly(read, None)

    def _measure(self, fault: Fault, run_id: str, units: dict[int, int], pids: set[int]) -> None:
        """The fault's cost: until every unit the victim held has moved on (a task of the
        level it was at has succeeded since, or the unit passed that level or ended), or is
        held by another worker."""
        fault.held = len(units)
        steps = {u: self._steps_done(run_id, u, level) for u, level in units.items()}
        while True:
            levels = self._levels(run_id)
            holders = _quietly(lambda: self.store().lease_holders(run_id), None)
            if levels is not None and holders is not None:
                stepped = {u for u in units if (self._steps_done(run_id, u, units[u]) or 0) > (steps[u] or 0)}
                if fault.back or all(u in stepped or _recovered(u, units[u], levels, holders, pids) for u in units):
                    fault.cost = time.monotonic() - fault.started
                    return
            if time.monotonic() - fault.started > 600:
                return
            time.sleep(0.2)

    def _background(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _worker_fault(self, kind: str, run_id: str, victim: str) -> tuple[Fault, set[int], dict[int, int]]:
        pids = self.pids(victim)
        levels = self._levels(run_id) or {}
        units = {unit: levels.get(unit, -1) for unit in self.held_units(run_id, pids)}
        fault = Fault(kind, victim, time.monotonic())
        self.faults.append(fault)
        self._background(lambda: self._measure(fault, run_id, units, pids))
        return fault, pids, units

    # --- faults -------------------------------------------------------------------------

    def kill(self, run_id: str, victim: str, *, wait: bool = True) -> None:
        """kill -9 a whole worker (a machine lost), then start it again (`wait`: before
        returning; else in the background, while it is in `starting`)."""
        self._worker_fault("kill -9", run_id, victim)
        worker = self.workers[victim]
        worker.signal(signal.SIGKILL)
        worker.proc.wait()
        if wait:
            self.start(victim)
            return
        self.starting.add(victim)

        def start_again() -> None:
            try:
                self.start(victim)
            finally:
                self.starting.discard(victim)

        self._background(start_again)

    def kill_child(self, run_id: str, victim: str) -> None:
        """kill -9 one pool process of a worker (the kernel's OOM killer); Celery starts another."""
        pids = self.pids(victim) - {self.workers[victim].proc.pid}
        holding = [pid for pid in pids if self.held_units(run_id, {pid})]
        self._worker_fault("kill -9 child", run_id, victim)
        if holding or pids:
            os.kill(random.choice(holding or sorted(pids)), signal.SIGKILL)

    def freeze(self, run_id: str, victim: str, seconds: float = VISIBILITY_TIMEOUT + 15) -> None:
        """SIGSTOP a worker past the limit (a VM paused, a laptop asleep), then SIGCONT it."""
        fault, _, _ = self._worker_fault("freeze", run_id, victim)
        self.workers[victim].signal(signal.SIGSTOP)
        self._stopped.add(victim)

        def wake() -> None:
            time.sleep(seconds)
            self.workers[victim].signal(signal.SIGCONT)
            self._stopped.discard(victim)
            fault.back = True

        self._background(wake)

    def cut(self, run_id: str, victim: str, seconds: float = VISIBILITY_TIMEOUT + 15) -> None:
        """Take a worker's connections to Redis away for a while (a network partition)."""
        fault, _, _ = self._worker_fault("cut from Redis", run_id, victim)
        self.proxies[victim].cut()

        def heal() -> None:
            time.sleep(seconds)
            self.proxies[victim].restore()
            fault.back = True

        self._background(heal)

    def restart_redis(self, run_id: str) -> None:
        """Stop Redis (it writes its append-only file) and start it again on the same port;
        the cost is the time until the run records a result again."""
        client = self.redis.client()
        done = int(client.hget(f"palign:run:{run_id}", "done") or 0)
        fault = Fault("Redis restart", "redis", time.monotonic())
        self.faults.append(fault)
        self.redis.stop()
        time.sleep(1)
        self.redis.start()

        def measure() -> None:
            wait_for(
                lambda: (
                    _quietly(lambda: int(client.hget(f"palign:run:{run_id}", "done") or 0), 0) > done
                    or _quietly(lambda: client.hget(f"palign:run:{run_id}", "state") == "finished", False)
                ),
                600,
                "progress after the Redis restart",
                interval=0.2,
            )
            fault.cost = time.monotonic() - fault.started

        self._background(measure)

    def settle(self) -> None:
        """Every frozen worker woken, every cut healed, every measurement ended."""
        for thread in self._threads:
            thread.join(timeout=660)
        self._threads.clear()

    def close(self) -> None:
        for name in list(self._stopped):
            self.workers[name].signal(signal.SIGCONT)
        for proxy in self.proxies.values():
            proxy.restore()
        for worker in self.workers.values():
            worker.stop(timeout=20)
        for proxy in self.proxies.values():
            proxy.close()
        self.redis.stop()


def _recovered(unit: int, level: int, levels: dict[int, int], holders: dict[int, str], pids: set[int]) -> bool:
    """Has the unit moved past `level` (or ended), or does a process other than `pids` hold it?"""
    moved = levels.get(unit, 1 << 30) > level
    return moved or (unit in holders and _pid(holders[unit]) not in pids)


def _pid(holder: str) -> int:
    tail = holder.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _quietly(read: Callable[[], T], fallback: F) -> T | F:
    """A read of Redis that may meet it restarting."""
    try:
        return read()
    except (BrokerUnavailable, OSError, ValueError):
        return fallback
    except Exception as error:  # redis-py's own errors
        if type(error).__module__.startswith("redis"):
            return fallback
        raise
