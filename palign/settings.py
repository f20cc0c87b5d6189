"""palign's settings: built once at each entry point (a CLI command, a worker, Flower),
from its flags, then the environment, then the defaults, and handed down from there.

This is the only module that reads palign's environment variables. Nothing reads them
at import time: an invalid value breaks only a command that needs it, and a flag given
on the command line wins over the environment.

    PALIGN_CACHE_DIR          mirrors, check results, check folders   (user cache dir)
    PALIGN_SCRATCH_DIR        a run's new objects before they reach REPO (/dev/shm/palign-UID)
    PALIGN_COMMITTER_NAME     committer of rebased commits             (REPO's user.name)
    PALIGN_COMMITTER_EMAIL                                             (REPO's user.email)
    PALIGN_NO_SANDBOX=1       run checks without bubblewrap
    PALIGN_DEBUG=1            a traceback for internal errors
    PALIGN_BROKER_URL         distributed commands' Redis URL          (redis://127.0.0.1:6379/0)
    PALIGN_TASK_TIME_LIMIT    seconds a task may run                   (900)
    PALIGN_VISIBILITY_TIMEOUT seconds before Redis hands an unacknowledged task out again
                                                                       (2 x task limit + 60)
    PALIGN_RUN_TTL            seconds run records live in Redis        (7 days)
    PALIGN_RESTORE_INTERVAL   seconds between sweeps for tasks of vanished workers (30)
    PALIGN_LOCK_WAIT          seconds a task waits for a branch another run holds (30)
    PALIGN_STALL_TIMEOUT      seconds without progress before a waiting producer resends
                              lost work                                (2 x task limit + 120)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from palign.errors import InputError
from palign.redact import redact_url

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
QUEUES = ("align", "validate", "report")  # a worker serves all three unless told otherwise


def debug_requested(environ: Mapping[str, str] | None = None) -> bool:
    """PALIGN_DEBUG: asked before any settings exist (an error may come first)."""
    return bool((os.environ if environ is None else environ).get("PALIGN_DEBUG"))


@dataclass(frozen=True)
class DistributedSettings:
    """What every process of a distributed run must agree on: the producer, each worker,
    Flower."""

    broker_url: str
    # The longest a task may run; tasks are killed (and retried elsewhere) beyond it.
    task_time_limit: int = 900
    # Redis hands an unacknowledged task to another worker after this long: it must exceed
    # the longest task plus its wait in a worker's prefetch, or tasks run twice at once.
    visibility_timeout: int = 2 * 900 + 60
    # How long run records, results and chord state live in Redis.
    run_ttl: int = 7 * 24 * 3600
    # How often a worker looks for tasks whose worker vanished (older than the visibility
    # timeout) and puts them back in their queue.
    restore_interval: int = 30
    # How long a task waits for a branch another run is aligning before reporting it busy.
    lock_wait: int = 30
    # A waiting producer resends the work of branches without a result after this long
    # without progress (longer than a lost task takes to come back by itself).
    stall_timeout: int = 2 * 900 + 120

    @classmethod
    def load(cls, broker_url: str | None, environ: Mapping[str, str]) -> DistributedSettings:
        url = broker_url or environ.get("PALIGN_BROKER_URL") or DEFAULT_BROKER_URL
        check_broker_url(url)
        limit = _seconds(environ, "PALIGN_TASK_TIME_LIMIT", 900)
        return cls(
            broker_url=url,
            task_time_limit=limit,
            # A prefetched task waits behind one running task: twice the limit, plus margin.
            visibility_timeout=_seconds(environ, "PALIGN_VISIBILITY_TIMEOUT", 2 * limit + 60),
            run_ttl=_seconds(environ, "PALIGN_RUN_TTL", 7 * 24 * 3600),
            restore_interval=_seconds(environ, "PALIGN_RESTORE_INTERVAL", 30),
            lock_wait=_seconds(environ, "PALIGN_LOCK_WAIT", 30),
            stall_timeout=_seconds(environ, "PALIGN_STALL_TIMEOUT", 2 * limit + 120),
        )


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    scratch_dir: Path
    committer_name: str | None = None
    committer_email: str | None = None
    sandbox: bool = True  # checks run in bubblewrap's sandbox when it is installed
    # The PATH checks run with (the operator's own).
    check_path: str = "/usr/local/bin:/usr/bin:/bin"
    distributed: DistributedSettings | None = field(default=None)

    @classmethod
    def load(
        cls,
        *,
        broker_url: str | None = None,
        distributed: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from flags (the arguments), then `environ` (default: this process's
        environment), then defaults. `distributed` also reads the broker's settings
        (a command that talks to Redis); `broker_url` is the --broker flag."""
        env = os.environ if environ is None else environ
        cache = Path(env["PALIGN_CACHE_DIR"]) if env.get("PALIGN_CACHE_DIR") else _default_cache_dir()
        return cls(
            cache_dir=cache,
            scratch_dir=Path(env["PALIGN_SCRATCH_DIR"]) if env.get("PALIGN_SCRATCH_DIR") else _default_scratch(cache),
            committer_name=env.get("PALIGN_COMMITTER_NAME") or None,
            committer_email=env.get("PALIGN_COMMITTER_EMAIL") or None,
            sandbox=not env.get("PALIGN_NO_SANDBOX"),
            check_path=env.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
            distributed=DistributedSettings.load(broker_url, env) if distributed or broker_url else None,
        )

    @property
    def broker(self) -> DistributedSettings:
        """The distributed settings of a command that talks to the broker."""
        if self.distributed is None:
            raise InputError("this command needs a broker: give --broker URL")
        return self.distributed


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("palign"))


def _default_scratch(cache: Path) -> Path:
    """Memory-backed storage when the machine has it: a loose object written there costs a
    tenth of what it costs on disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"palign-{os.getuid()}"
    return cache / "scratch"


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"{name} must be a whole number of seconds (got {raw!r})") from None
    if value < 1:
        raise InputError(f"{name} must be at least 1 (got {value})")
    return value


def check_broker_url(url: str) -> None:
    """A redis:// or rediss:// URL with a host, a numeric port and database, if given."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss") or "://" not in url:
        raise InputError(f"broker must be a redis:// or rediss:// URL (got {shown!r})")
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise InputError(f"broker URL has a port that is not a number: {shown!r}") from None
    database = parts.path.strip("/")
    if not parts.hostname or (database and not database.isdigit()):
        raise InputError(f"broker URL needs a host and a numeric database, e.g. redis://host:6379/0 (got {shown!r})")
