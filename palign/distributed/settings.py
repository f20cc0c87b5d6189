"""Distributed-mode settings, read from the environment (no I/O beyond that).

Every process of a run must agree on these: the producer, each worker, Flower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from palign.errors import InputError

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
QUEUES = ("align", "validate", "report")
DEFAULT_PRIORITY = 5  # Redis: 0 runs first, 9 last


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be a whole number of seconds (got {raw!r})") from None
    if value < 1:
        raise InputError(f"{name} must be at least 1 (got {value})")
    return value


@dataclass(frozen=True)
class DistributedSettings:
    broker_url: str
    # The longest a task may run; tasks are killed (and retried elsewhere) beyond it.
    task_time_limit: int
    # Redis hands an unacknowledged task to another worker after this long: it must exceed
    # the longest task plus its wait in a worker's prefetch, or tasks run twice at once.
    visibility_timeout: int
    # How long run records, results and chord state live in Redis.
    run_ttl: int
    # How often a worker looks for tasks whose worker vanished (older than the visibility
    # timeout) and puts them back in their queue.
    restore_interval: int
    # How long a task waits for a branch another run is aligning before reporting it busy.
    lock_wait: int
    # A waiting producer resends the work of branches without a result after this long
    # without progress (longer than a lost task takes to come back by itself).
    stall_timeout: int

    @classmethod
    def from_env(cls, broker_url: str | None = None) -> DistributedSettings:
        url = broker_url or os.environ.get("PALIGN_BROKER_URL") or DEFAULT_BROKER_URL
        check_broker_url(url)
        limit = _seconds("PALIGN_TASK_TIME_LIMIT", 900)
        return cls(
            broker_url=url,
            task_time_limit=limit,
            # A prefetched task waits behind one running task: twice the limit, plus margin.
            visibility_timeout=_seconds("PALIGN_VISIBILITY_TIMEOUT", 2 * limit + 60),
            run_ttl=_seconds("PALIGN_RUN_TTL", 7 * 24 * 3600),
            restore_interval=_seconds("PALIGN_RESTORE_INTERVAL", 30),
            lock_wait=_seconds("PALIGN_LOCK_WAIT", 30),
            stall_timeout=_seconds("PALIGN_STALL_TIMEOUT", 2 * limit + 120),
        )


def check_broker_url(url: str) -> None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss"):
        raise InputError(f"broker must be a redis:// or rediss:// URL (got {redact(url)!r})")


def redact(url: str) -> str:
    """The URL without its password, for messages and records."""
    if "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.split("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
