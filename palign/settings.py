"""palign's settings: built once at each entry point (a CLI command, a worker, Flower),
from its flags, then the environment, then the defaults, and handed down from there.

This is the only module that reads palign's environment variables. Nothing reads them
at import time: an invalid value breaks only a command that needs it, and a flag given
on the command line wins over the environment. Secrets can come from files (`..._FILE`),
so they appear in no process listing.

    PALIGN_CACHE_DIR          mirrors, check results, check folders   (user cache dir)
    PALIGN_SCRATCH_DIR        a run's new objects before they reach REPO (/dev/shm/palign-UID)
    PALIGN_COMMITTER_NAME     committer of rebased commits             (REPO's user.name)
    PALIGN_COMMITTER_EMAIL                                             (REPO's user.email)
    PALIGN_GIT_CREDENTIALS_FILE  credentials for REPO's URL, in git's credential-store format
    PALIGN_ALLOW_UNSANDBOXED=1   run checks even where bubblewrap's sandbox does not work
    PALIGN_NO_SANDBOX=1       run checks without bubblewrap at all (implies the above)
    PALIGN_SANDBOX_PATHS      more folders checks may read (colon-separated; the system's
                              and palign's own interpreter are always there)
    PALIGN_DEBUG=1            a traceback for internal errors
  distributed mode:
    PALIGN_BROKER_URL[_FILE]  the Redis URL                            (redis://127.0.0.1:6379/0)
    PALIGN_BROKER_CA_FILE     CA certificates for a rediss:// broker   (the system's)
    PALIGN_SIGNING_KEY[_FILE] the key that seals task messages and records (producers and workers)
    PALIGN_ALLOWED_REPOS      repository URLs a worker serves (globs, comma-separated; a path
                              pattern allows local repositories)      (none)
    PALIGN_WORKER_CONFIG      the worker's palign.toml, where its checks are defined
    PALIGN_TASK_TIME_LIMIT    seconds a task may run                   (900)
    PALIGN_VISIBILITY_TIMEOUT seconds a worker's tasks stay its own after its last pulse
                              (a live worker renews them every sixth of it) (30)
    PALIGN_RUN_TTL            seconds run records live in Redis        (7 days)
    PALIGN_RESTORE_INTERVAL   seconds between sweeps for tasks of vanished workers (5)
    PALIGN_LOCK_WAIT          seconds a task waits for a branch another run holds (30)
    PALIGN_STALL_TIMEOUT      seconds without progress, and with no task at work, before
                              a waiting producer resends work Redis lost  (60)
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
from palign.signing import MIN_KEY_BYTES, Signer

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
QUEUES = ("align", "validate", "report")  # a worker serves all three unless told otherwise


def debug_requested(environ: Mapping[str, str] | None = None) -> bool:
    """PALIGN_DEBUG: asked before any settings exist (an error may come first)."""
    return bool((os.environ if environ is None else environ).get("PALIGN_DEBUG"))


@dataclass(frozen=True)
class DistributedSettings:
    """What every process of a distributed run must agree on: the producer, each worker,
    Flower."""

    broker_url: str = field(repr=False)  # may hold a password
    # The key that seals what crosses Redis (None: this command may only read states).
    signing_key: bytes | None = field(default=None, repr=False)
    # CA certificates that sign a rediss:// broker's certificate (None: the system's).
    ca_file: Path | None = None
    # The longest a task may run; tasks are killed (and retried elsewhere) beyond it.
    task_time_limit: int = 900
    # Redis hands a task to another worker when the worker that took it has not renewed it
    # for this long: a live worker renews its tasks every `heartbeat_interval` (see
    # palign.distributed.worker), so this bounds how long a dead worker's tasks wait.
    visibility_timeout: int = 30
    # How long run records, results and chord state live in Redis.
    run_ttl: int = 7 * 24 * 3600
    # How often a worker looks for tasks whose worker vanished (not renewed within the
    # visibility timeout) and puts them back in their queue.
    restore_interval: int = 5
    # How long a task waits for a branch another run is aligning before reporting it busy.
    lock_wait: int = 30
    # A waiting producer resends the work of branches without a result after this long
    # without progress while no task works on the run (work Redis lost, kombu #7950).
    stall_timeout: int = 60

    @property
    def heartbeat_interval(self) -> float:
        """How often a live worker renews its registration and its tasks: six times per
        visibility timeout, so a few late renewals never hand a live worker's task out."""
        return max(1.0, self.visibility_timeout / 6)

    @classmethod
    def load(cls, broker_url: str | None, environ: Mapping[str, str]) -> DistributedSettings:
        url = broker_url or _secret(environ, "PALIGN_BROKER_URL") or DEFAULT_BROKER_URL
        check_broker_url(url)
        limit = _seconds(environ, "PALIGN_TASK_TIME_LIMIT", 900)
        key = _secret(environ, "PALIGN_SIGNING_KEY")
        if key is not None and len(key.encode()) < MIN_KEY_BYTES:
            raise InputError(f"the signing key needs at least {MIN_KEY_BYTES} bytes (PALIGN_SIGNING_KEY[_FILE])")
        ca_file = environ.get("PALIGN_BROKER_CA_FILE")
        visibility = _seconds(environ, "PALIGN_VISIBILITY_TIMEOUT", 30)
        if visibility < 6:
            raise InputError(f"PALIGN_VISIBILITY_TIMEOUT must be at least 6 seconds (got {visibility})")
        return cls(
            broker_url=url,
            signing_key=key.encode() if key is not None else None,
            ca_file=Path(ca_file) if ca_file else None,
            task_time_limit=limit,
            visibility_timeout=visibility,
            run_ttl=_seconds(environ, "PALIGN_RUN_TTL", 7 * 24 * 3600),
            restore_interval=_seconds(environ, "PALIGN_RESTORE_INTERVAL", 5),
            lock_wait=_seconds(environ, "PALIGN_LOCK_WAIT", 30),
            stall_timeout=_seconds(environ, "PALIGN_STALL_TIMEOUT", 60),
        )

    @property
    def shown_broker(self) -> str:
        return redact_url(self.broker_url)

    def signer(self) -> Signer:
        """What seals and opens task messages and records; refused without a key."""
        if self.signing_key is None:
            raise InputError(
                "distributed runs need a signing key, the same on producers and workers: "
                "set PALIGN_SIGNING_KEY_FILE (see the README's Security section)"
            )
        return Signer(self.signing_key)


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    scratch_dir: Path
    committer_name: str | None = None
    committer_email: str | None = None
    sandbox: bool = True  # checks run in bubblewrap's sandbox
    allow_unsandboxed: bool = False  # ... and still run where the sandbox does not work
    sandbox_paths: tuple[Path, ...] = ()  # more folders checks may read
    # The PATH checks run with (the operator's own).
    check_path: str = "/usr/local/bin:/usr/bin:/bin"
    git_credentials_file: Path | None = None  # credentials for REPO (git's credential-store format)
    allowed_repos: tuple[str, ...] = ()  # what a worker serves (globs on URLs or paths)
    worker_config: Path | None = None  # the worker's palign.toml (its checks)
    distributed: DistributedSettings | None = field(default=None)

    @classmethod
    def load(
        cls,
        *,
        broker_url: str | None = None,
        distributed: bool = False,
        allowed_repos: tuple[str, ...] = (),
        worker_config: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from flags (the arguments), then `environ` (default: this process's
        environment), then defaults. `distributed` also reads the broker's settings
        (a command that talks to Redis); `broker_url` is the --broker flag."""
        env = os.environ if environ is None else environ
        cache = Path(env["PALIGN_CACHE_DIR"]) if env.get("PALIGN_CACHE_DIR") else _default_cache_dir()
        no_sandbox = bool(env.get("PALIGN_NO_SANDBOX"))
        credentials = env.get("PALIGN_GIT_CREDENTIALS_FILE")
        config = worker_config or (Path(env["PALIGN_WORKER_CONFIG"]) if env.get("PALIGN_WORKER_CONFIG") else None)
        return cls(
            cache_dir=cache,
            scratch_dir=Path(env["PALIGN_SCRATCH_DIR"]) if env.get("PALIGN_SCRATCH_DIR") else _default_scratch(cache),
            committer_name=env.get("PALIGN_COMMITTER_NAME") or None,
            committer_email=env.get("PALIGN_COMMITTER_EMAIL") or None,
            sandbox=not no_sandbox,
            allow_unsandboxed=no_sandbox or bool(env.get("PALIGN_ALLOW_UNSANDBOXED")),
            sandbox_paths=tuple(Path(p) for p in env.get("PALIGN_SANDBOX_PATHS", "").split(":") if p),
            check_path=env.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
            git_credentials_file=Path(credentials) if credentials else None,
            allowed_repos=allowed_repos
            or tuple(p.strip() for p in env.get("PALIGN_ALLOWED_REPOS", "").split(",") if p.strip()),
            worker_config=config,
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


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    """`NAME_FILE` (a file holding the secret: a mounted secret, say), else `NAME`."""
    path = environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"{name}_FILE: cannot read {path}: {error}") from None
    return environ.get(name) or None


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
