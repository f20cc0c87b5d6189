"""A worker process's life, driven by Celery's signals (palign's one seam into them): its
settings and the checks of its own configuration, its own connection to the run store
(never shared across a fork), its registration with producers (renewed with each
heartbeat), and the removal of its workspace when it stops.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from typing import Any

from celery.signals import heartbeat_sent, worker_process_init, worker_process_shutdown, worker_ready

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
_processes = 0
_node = ""


def attach(settings: Settings) -> None:
    """The settings this process's tasks run with, and the signal handlers (connected
    once per process, however many apps are made)."""
    global _settings
    _settings = settings
    worker_process_init.connect(_fresh_process, weak=False, dispatch_uid="palign.fresh_process")
    worker_ready.connect(_announce, weak=False, dispatch_uid="palign.announce")
    heartbeat_sent.connect(_heartbeat, weak=False, dispatch_uid="palign.heartbeat")
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


def _announce(sender: Any = None, **_: Any) -> None:
    """Tell producers how many processes this worker runs: they size tasks by it."""
    global _processes, _node
    controller = getattr(sender, "controller", None)
    _processes = int(getattr(controller, "max_concurrency", None) or getattr(controller, "concurrency", 1) or 1)
    _node = str(getattr(sender, "hostname", "") or f"{os.getpid()}@{socket.gethostname()}")
    _heartbeat()


def _heartbeat(**_: Any) -> None:
    if _processes:
        try:
            store().register_worker(_node, _processes)
        except BrokerUnavailable:
            log.warning("cannot register this worker in Redis; producers will assume fewer processes")


def _leave(**_: Any) -> None:
    workspace.close()
