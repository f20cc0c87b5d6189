"""A worker process's life, driven by Celery's signals (palign's one seam into them): its
settings and the checks of its own configuration, its own connection to the run store
(never shared across a fork), its pulse, and the removal of its workspace when it stops.

The pulse is how a dead worker is noticed within seconds: a thread of the worker's main
process that, every few seconds, renews the worker's registration (what producers size
tasks by) and the tasks it holds (`RunStore.renew_deliveries`). When a worker dies,
freezes or loses Redis, both stop: its tasks' time in kombu's unacked index ages past
the visibility timeout (30 s by default), and the next sweep of any live worker puts
them back in their queue. A live worker's long task is renewed for as long as it runs.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from palign.config import load as load_config
from palign.distributed import workspace
from palign.distributed.store import RunStore
from palign.errors import BrokerUnavailable, InputError
from palign.settings import Settings
from palign.validation.checks import Check

log = logging.getLogger("palign.worker")

_settings: Settings | None = None
_store: RunStore | None = None
_checks: dict[str, Check] | None = None
_pulse: Pulse | None = None


def attach(settings: Settings) -> None:
    """The settings this process's tasks run with, and the signal handlers (connected
    once per process, however many apps are made)."""
    global _settings
    _settings = settings
    worker_process_init.connect(_fresh_process, weak=False, dispatch_uid="palign.fresh_process")
    worker_ready.connect(_announce, weak=False, dispatch_uid="palign.announce")
    worker_shutdown.connect(_stop_pulse, weak=False, dispatch_uid="palign.stop_pulse")
    worker_process_shutdown.connect(_leave, weak=False, dispatch_uid="palign.leave")


def settings() -> Settings:
    if _settings is None:
        raise InputError("palign's tasks run only in an app made by palign.distributed.app.make_app")
    return _settings


def store() -> RunStore:
    """This process's connection to the run store."""
    global _store
    if _store is None:
        _store = RunStore.of(settings().broker)
    return _store


def process_name() -> str:
    """This process, as leases and logs name it: HOST:PID."""
    return f"{socket.gethostname()}:{os.getpid()}"


def configured_checks() -> dict[str, Check]:
    """The checks this worker may run, by name: its own palign.toml's [validate]
    (`--config`, or PALIGN_WORKER_CONFIG); a task names them, never defines them."""
    global _checks
    if _checks is None:
        path = settings().worker_config
        _checks = {check.name: check for check in load_config(path).checks} if path is not None else {}
    return _checks


def _fresh_process(**_: Any) -> None:
    # A forked pool process must not share the parent's Redis connections.
    global _store
    _store = None
    # What the worker imported before forking stays out of this process's garbage collections.
    gc.freeze()


class Pulse:
    """The worker's registration and its held tasks, renewed every `interval` seconds by a
    thread of its main process (a busy event loop or a long task never delays it)."""

    def __init__(self, runs: RunStore, node: str, processes: int, interval: float, ttl: int) -> None:
        self.runs = runs
        self.node = node
        self.processes = processes
        self.interval = interval
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="palign-pulse", daemon=True)
        self._warned = False

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        # Every task this worker holds: running, waiting for a process, or waiting for its
        # retry's countdown (a copy: Celery's thread changes the dict meanwhile).
        tags = [str(r.message.delivery_tag) for r in list(worker_state.requests.values()) if r.message is not None]
        try:
            self.runs.register_worker(self.node, self.processes, self.ttl)
            self.runs.renew_deliveries(tags)
            if self._warned:
                log.info("Redis is reachable again; this worker's tasks are its own again")
                self._warned = False
        except BrokerUnavailable as error:
            if not self._warned:
                log.warning("cannot renew this worker's tasks in Redis (%s): other workers take them over", error)
                self._warned = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a bug here must not silence the pulse for good
                log.exception("the worker's pulse failed; trying again")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.runs.unregister_worker(self.node)
        except BrokerUnavailable:
            pass  # it expires by itself


def _announce(sender: Any = None, **_: Any) -> None:
    """Start the pulse: producers learn how many processes this worker runs (they size
    tasks by it), and the tasks it takes stay its own while it lives."""
    global _pulse
    controller = getattr(sender, "controller", None)
    processes = int(getattr(controller, "max_concurrency", None) or getattr(controller, "concurrency", 1) or 1)
    node = str(getattr(sender, "hostname", "") or f"{os.getpid()}@{socket.gethostname()}")
    broker = settings().broker
    _pulse = Pulse(store(), node, processes, broker.heartbeat_interval, broker.visibility_timeout)
    _pulse.start()


def _stop_pulse(**_: Any) -> None:
    global _pulse
    if _pulse is not None:
        _pulse.stop()
        _pulse = None


def _leave(**_: Any) -> None:
    workspace.close()
