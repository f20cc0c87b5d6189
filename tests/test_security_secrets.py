"""Secrets stay where the operator put them.

A password in REPO's URL (`http://bot:PASSWORD@host/repo.git`) reaches git through a
credential helper and nothing else: no command line palign starts, no Redis key or value,
no Flower page, no report, log, cache folder name or mirror config holds it, on the
producer or on the workers (whose login comes from a credential-store file). A broker
behind TLS with an ACL user and no default user serves a whole run, its URL and CA read
from files.

Every scan is shown to find what it looks for: the run id, known to be in each place
scanned, is found there by the same scanner, so no scan passes because it read nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import SIGNING_KEY, branches_of, comparable, git_out, read_report, run_palign
from tests.gitserver import GitHttpServer
from tests.repos import fleet_repo
from tests.services import RedisServer, Worker, flower_on, free_port, stop_group, wait_for
from tests.tls import TlsRedisServer, make_certificates

# ---- finding a secret in text, however it was encoded --------------------------------

_BASE64: tuple[tuple[re.Pattern[str], Callable[[str], bytes]], ...] = (
    (re.compile(r"[A-Za-z0-9+/]{16,}={0,2}"), base64.b64decode),
    (re.compile(r"[A-Za-z0-9_-]{16,}={0,2}"), base64.urlsafe_b64decode),
)


def readings(text: str, depth: int = 2) -> Iterator[tuple[str, str]]:
    """`text` as it is, percent-decoded, and each base64 token in it decoded (Celery's
    message bodies, an Authorization header), down to `depth` levels: (how, text)."""
    yield "plain", text
    decoded = unquote(text)
    if decoded != text:
        yield "percent-decoded", decoded
    if depth == 0:
        return
    for pattern, decode in _BASE64:
        for token in set(pattern.findall(text)):
            padded = token.rstrip("=") + "=" * (-len(token.rstrip("=")) % 4)
            try:
                raw = decode(padded)
            except (binascii.Error, ValueError):
                continue
            for how, inner in readings(raw.decode("utf-8", "replace"), depth - 1):
                yield f"base64 ({how})", inner


def found(needle: str, text: str) -> set[str]:
    """How `needle` is in `text` (empty: it is not)."""
    return {how for how, reading in readings(text) if needle in reading}


def scan(needles: dict[str, str], places: dict[str, str]) -> dict[str, dict[str, set[str]]]:
    """For each named needle, the places holding it, each with how (every place is read
    once, in each of its readings)."""
    hits: dict[str, dict[str, set[str]]] = {label: {} for label in needles}
    for place, text in places.items():
        for how, reading in readings(text):
            for label, needle in needles.items():
                if needle in reading:
                    hits[label].setdefault(place, set()).add(how)
    return hits


# ---- what processes show: /proc/PID/cmdline, read while a run goes ----------------------


class CommandLines:
    """Every process's command line, read from /proc by a thread every few milliseconds
    until the `with` block ends: `seen` holds each distinct (pid, argv)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.seen: set[tuple[int, tuple[str, ...]]] = set()
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="cmdline-poller", daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.sweep()
            self._stop.wait(self.interval)
        self.sweep()

    def sweep(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                raw = Path("/proc", name, "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if raw:
                self.seen.add((int(name), tuple(raw.decode("utf-8", "surrogateescape").rstrip("\0").split("\0"))))
        self.sweeps += 1

    def holding(self, needle: str, *, besides: Iterable[tuple[str, ...]] = ()) -> list[tuple[int, tuple[str, ...]]]:
        """Command lines holding `needle` in any reading, but those in `besides` (what the
        test typed, which the typed command's forked children share)."""
        typed = set(besides)
        return sorted((pid, argv) for pid, argv in self.seen if argv not in typed and found(needle, " ".join(argv)))


def group_command_lines(pgid: int) -> dict[int, str]:
    """pid -> command line of the live processes in process group `pgid`."""
    lines = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path("/proc", name, "stat").read_text()
            raw = Path("/proc", name, "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
        if int(fields[2]) == pgid:
            lines[int(name)] = raw.replace(b"\0", b" ").decode("utf-8", "replace")
    return lines


# ---- what Redis holds ----------------------------------------------------------------------


def redis_contents(port: int, client_options: dict[str, Any] | None = None) -> dict[str, str]:
    """Every key of every database -> the key's name and its values, read by its type."""
    options = dict(client_options or {})
    # Typed loosely (as palign's store is): redis-py's stubs cannot tell bytes from str.
    first: Any = redis.Redis(host="127.0.0.1", port=port, **options)
    databases = [int(name.removeprefix("db")) for name in first.info("keyspace")]
    first.close()
    contents: dict[str, str] = {}
    for database in databases:
        client: Any = redis.Redis(host="127.0.0.1", port=port, db=database, **options)
        try:
            for raw_key in client.scan_iter(count=1000):
                key = raw_key.decode("utf-8", "replace")
                kind = client.type(raw_key).decode()
                values: list[bytes] = []
                if kind == "string":
                    values = [client.get(raw_key) or b""]
                elif kind == "hash":
                    values = [part for item in client.hgetall(raw_key).items() for part in item]
                elif kind == "list":
                    values = client.lrange(raw_key, 0, -1)
                elif kind == "set":
                    values = list(client.smembers(raw_key))
                elif kind == "zset":
                    values = client.zrange(raw_key, 0, -1)
                elif kind == "stream":
                    for entry_id, fields in client.xrange(raw_key, "-", "+"):
                        values += [entry_id, *(part for item in fields.items() for part in item)]
                elif kind == "none":  # expired between SCAN and TYPE
                    continue
                else:
                    raise AssertionError(f"key {key!r} has type {kind!r}, which this scan cannot read")
                text = "\n".join(v.decode("utf-8", "replace") for v in values)
                contents[f"redis db{database} {kind} {key}"] = f"{key}\n{text}"
        finally:
            client.close()
    return contents


class RedisMonitor:
    """`redis-cli monitor` in its own process: every command Redis runs (values that live
    only for a moment included: task messages taken from a queue, pub/sub events), to a
    file."""

    def __init__(self, port: int, output: Path) -> None:
        self.port, self.output = port, output
        with open(output, "wb") as out:
            self.proc = subprocess.Popen(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "monitor"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.mark("monitor started")
        except BaseException:
            self.stop()
            raise

    def mark(self, text: str) -> None:
        """Send `ECHO text` and wait until the monitor has written it: what Redis ran before
        is in the file."""
        marker = f"{text} {uuid.uuid4().hex}"
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            wait_for(lambda: client.echo(marker) and marker in self.output.read_text(errors="replace"), 20, text)
        finally:
            client.close()

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        stop_group(self.proc)


# ---- files ---------------------------------------------------------------------------------


def file_names_and_texts(*roots: Path, limit: int = 4 << 20) -> tuple[dict[str, str], dict[str, str]]:
    """Under `roots`: each path (relative to its root, every component) and the text of
    each regular file up to `limit` bytes (git's objects are compressed: their text is
    only searched as it is)."""
    names: dict[str, str] = {}
    texts: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            names[str(path)] = str(path.relative_to(root))
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= limit:
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return names, texts


def mirrors_under(cache: Path) -> list[Path]:
    return sorted(path for path in (cache / "mirrors").glob("*.git") if (path / "HEAD").exists())


def mirror_configs(cache: Path) -> dict[str, str]:
    """`git config --list` in each mirror of a cache (the global config with it)."""
    return {
        f"git config --list in {mirror}": subprocess.run(
            ["git", "--git-dir", str(mirror), "config", "--list", "--show-origin"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for mirror in mirrors_under(cache)
    }


def served_repository(root: Path, name: str, work: Path) -> Path:
    """A bare clone of the fleet repository (independent branches, one conflicting stack)
    under the server's root."""
    repo = fleet_repo(work, independent=6, stacks=2, depth=2)
    bare = root / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    return bare


# ---- 1. a password in REPO's URL ------------------------------------------------------------


def test_no_secret_leaves_the_producer_local_and_distributed(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    root = tmp_path / "served"
    bare = served_repository(root, "repo", tmp_path / "work")
    secrets_dir = tmp_path / "secrets"  # the operator's files: no scan below reads them
    secrets_dir.mkdir(mode=0o700)
    client = redis_server.client()
    with GitHttpServer(root, "bot", password, log=tmp_path / "gitserver.log") as server:
        url = server.url_with_login("repo")
        assert password in url and server.url("repo") == url.replace(f"bot:{password}@", "")
        # Every palign process gets its own scratch folder, so that it can be searched too.
        scratch = tmp_path / "scratch"
        producer_env = {**os.environ, "PALIGN_SCRATCH_DIR": str(scratch / "producer")}

        def produce(name: str, *extra: str) -> tuple[int, str, str, tuple[str, ...], CommandLines]:
            """`palign run URL --onto main ... --report-dir NAME`, every process's command
            line read while it runs."""
            args: tuple[str, ...] = (sys.executable, "-m", "palign", "run", url, "--onto", "main", "--workers", "2")
            args += (*extra, "--report-dir", str(tmp_path / name))
            out, err = tmp_path / f"{name}.stdout", tmp_path / f"{name}.stderr"
            with CommandLines() as lines, open(out, "wb") as stdout, open(err, "wb") as stderr:
                proc = subprocess.Popen(
                    list(args), stdout=stdout, stderr=stderr, env=producer_env, start_new_session=True
                )
                try:
                    wait_for(lambda: proc.poll() is not None, 300, f"the {name} run to end", interval=0.05)
                finally:
                    if proc.poll() is None:
                        stop_group(proc)  # the producer, its pool and its git processes
            return proc.returncode, out.read_text(), err.read_text(), args, lines

        # ---- local: the producer's own pool aligns; fetch and push over HTTP with the login.
        code, out1, err1, args1, lines1 = produce("r1")
        assert code in (0, 1), out1 + err1
        run1 = read_report(tmp_path / "r1")["run_id"]
        assert "aligned" in {b["status"] for b in branches_of(read_report(tmp_path / "r1")).values()}, out1

        # ---- distributed: Flower, then two workers whose login is a credential-store file.
        credentials = secrets_dir / "git-credentials"
        credentials.write_text(f"http://bot:{password}@127.0.0.1:{server.port}\n")
        credentials.chmod(0o600)
        monitor = RedisMonitor(redis_server.port, tmp_path / "redis-monitor.log")
        try:
            with flower_on(redis_server.url, tmp_path / "flower") as flower:
                # Events are pub/sub: Flower must listen before the first task is sent.
                wait_for(lambda: client.pubsub_numpat() >= 1, 30, "flower to subscribe to the events")
                env = {"PALIGN_GIT_CREDENTIALS_FILE": str(credentials)}
                workers = [
                    start_worker(name, env={**env, "PALIGN_SCRATCH_DIR": str(scratch / name)})
                    for name in ("east", "west")
                ]
                code, out2, err2, args2, lines2 = produce("r2", "--broker", redis_server.url)
                assert code in (0, 1), out2 + err2
                dist = read_report(tmp_path / "r2")
                run2 = dist["run_id"]
                assert dist["overall_summary"]["executor"] == "celery"
                aligned = {n: b["new_sha"] for n, b in branches_of(dist).items() if b["status"] == "aligned"}
                assert aligned, out2
                staged = git_out(
                    bare, "for-each-ref", "--format=%(refname:lstrip=4) %(objectname)", f"refs/palign/staged/{run2}/"
                )
                assert dict(line.split() for line in staged.splitlines()) == aligned
                # ... by the workers, each from its own mirror.
                ran_on = {
                    json.loads(client.get(key) or "{}").get("worker")
                    for key in client.scan_iter(f"celery-task-meta-{run2}.*")
                }
                assert ran_on and ran_on <= {w.hostname for w in workers}, ran_on
                assert all(mirrors_under(w.directory / "cache") for w in workers)

                def flower_knows_the_run() -> dict[str, Any] | None:
                    tasks: dict[str, Any] = flower.api("/api/tasks")
                    mine = [t for task_id, t in tasks.items() if task_id.startswith(f"{run2}.")]
                    return tasks if mine and all(t.get("state") == "SUCCESS" for t in mine) else None

                flower_tasks = wait_for(flower_knows_the_run, 30, "flower to list the run's tasks", interval=0.2)
                flower_workers = flower.api("/api/workers?refresh=1")
                assert {w.hostname for w in workers} <= set(flower_workers), flower_workers
            status = run_palign("status", run2, "--broker", redis_server.url, "--json")
            assert status.code == 0 and json.loads(status.stdout)["state"] == "finished", status.stdout + status.stderr
            shown = run_palign("report", run2, "--broker", redis_server.url, "--format", "json")
            assert shown.code == 0, shown.stderr
            monitor.mark("scans begin")
        finally:
            monitor.stop()
    client.close()

    # ---- every place a secret could end in, each known to hold the run id (the canary).
    names, texts = file_names_and_texts(Path(os.environ["HOME"]), scratch, *(w.directory for w in workers))
    palign_refs = git_out(bare, "for-each-ref", "--format=%(refname)", "refs/palign/")
    reports = {f"{n}/{f}": (tmp_path / n / f).read_text() for n in ("r1", "r2") for f in ("report.json", "report.md")}
    redis_now = redis_contents(redis_server.port)
    configs = {
        **mirror_configs(Path(os.environ["PALIGN_CACHE_DIR"])),
        **{k: v for w in workers for k, v in mirror_configs(w.directory / "cache").items()},
    }
    worker_logs = {f"log of worker {w.name}": w.log.read_text(errors="replace") for w in workers}
    outputs = {"r1 output": out1 + err1, "r2 output": out2 + err2}
    commands = {"palign status --json": status.stdout + status.stderr, "palign report": shown.stdout + shown.stderr}
    places: dict[str, str] = {
        **reports,
        **outputs,
        **commands,
        "flower /api/tasks": json.dumps(flower_tasks),
        "flower /api/workers": json.dumps(flower_workers),
        "flower log": (tmp_path / "flower" / "flower.log").read_text(errors="replace"),
        "redis monitor (every command Redis ran)": monitor.text(),
        **redis_now,
        **worker_logs,
        **{f"file name {path}": name for path, name in names.items()},
        **{f"file {path}": text for path, text in texts.items()},
        **configs,
        "refs/palign in REPO": palign_refs,
    }
    hits = scan({"password": password, "signing key": SIGNING_KEY, "run1": run1, "run2": run2}, places)

    def show(found_in: dict[str, set[str]]) -> str:
        return json.dumps({place: sorted(how) for place, how in found_in.items()}, indent=1)

    assert not hits["password"], f"the password is in: {show(hits['password'])}"
    assert not hits["signing key"], f"the signing key is in: {show(hits['signing key'])}"
    # No command line but the one typed (and its forks) holds the password; none holds the key.
    leaking = lines1.holding(password, besides=[args1]) + lines2.holding(password, besides=[args2])
    assert not leaking, f"command lines with the password: {leaking}"
    assert not lines1.holding(SIGNING_KEY) + lines2.holding(SIGNING_KEY)

    # ---- the canaries: each scan finds what is there.
    for label, name in (("run1", "r1"), ("run2", "r2")):
        assert {f"{name}/report.json", f"{name}/report.md", f"{name} output"} <= set(hits[label]), show(hits[label])
    assert {*commands, "flower /api/tasks", *worker_logs, "refs/palign in REPO"} <= set(hits["run2"])
    assert all(w.hostname in places["flower /api/workers"] for w in workers)
    assert f"redis db0 hash palign:run:{run2}" in hits["run2"], sorted(redis_now)
    # Celery's messages hold their arguments in base64: the scan reads those too.
    monitored = hits["run2"]["redis monitor (every command Redis ran)"]
    assert "plain" in monitored and any(how.startswith("base64") for how in monitored), monitored
    assert [n for n in names.values() if n.startswith("cache/mirrors/repo.git-")], sorted(names.values())
    assert len(configs) == 3 and all("gc.auto=0" in text for text in configs.values()), configs
    # The command lines were read while git talked to the server: palign's git processes
    # were seen (naming the served URL, without its login), and each producer, whose
    # command line holds the password as typed.
    for args, lines in ((args1, lines1), (args2, lines2)):
        assert lines.sweeps > 10 and [argv for _, argv in lines.seen if argv == args], "the producer was never seen"
        talking = [argv for _, argv in lines.seen if argv[0].startswith("git") and server.url("repo") in argv]
        assert talking, sorted({argv[:3] for _, argv in lines.seen})


# ---- 2. a TLS broker, an ACL user, secrets in files ------------------------------------------


def test_a_tls_broker_with_an_acl_user_runs_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker_password = "brk-" + uuid.uuid4().hex
    inspector_password = "insp-" + uuid.uuid4().hex

    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    acl = [
        "user default off",
        # palign's user: every key and channel, every command but the dangerous ones
        # (FLUSHALL, KEYS, CONFIG, MONITOR, DEBUG, SHUTDOWN, INFO, SORT ...). A whole run,
        # Flower included, needs none of them: the ACL log below shows nothing refused.
        f"user palign on #{digest(broker_password)} ~* &* +@all -@dangerous",
        # The test's own user, to read the ACL log.
        f"user inspector on #{digest(inspector_password)} ~* &* +@all",
    ]
    repo = fleet_repo(tmp_path / "repo", independent=6, stacks=2, depth=2)
    local = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "local"))
    assert local.code == 1, local.stdout + local.stderr  # some conflict

    with TlsRedisServer(tmp_path / "redis", make_certificates(tmp_path / "certs"), acl_lines=acl) as server:
        ca = server.certificates.ca
        broker_url = f"rediss://palign:{broker_password}@127.0.0.1:{server.port}/0"
        secrets_dir = tmp_path / "secrets"
        secrets_dir.mkdir(mode=0o700)
        url_file = secrets_dir / "broker-url"
        url_file.write_text(broker_url + "\n")
        url_file.chmod(0o600)
        # Producer, workers and Flower: the URL and CA from files, nothing on a command line.
        monkeypatch.setenv("PALIGN_BROKER_URL_FILE", str(url_file))
        monkeypatch.setenv("PALIGN_BROKER_CA_FILE", str(ca))
        monkeypatch.delenv("PALIGN_BROKER_URL", raising=False)

        # Without TLS nothing answers, not even palign's login; the default user is off.
        once: dict[str, Any] = {"socket_timeout": 5, "retry": Retry(NoBackoff(), 0)}  # a refusal is final
        plain = redis.Redis(host="127.0.0.1", port=server.port, username="palign", password=broker_password, **once)
        with pytest.raises(redis.exceptions.ConnectionError):
            plain.ping()
        plain.close()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(ca), **once)
        with pytest.raises(redis.exceptions.AuthenticationError):  # NOAUTH: no login is the default user
            anonymous.ping()
        anonymous.close()
        as_inspector = {"ssl": True, "ssl_ca_certs": str(ca), "username": "inspector", "password": inspector_password}
        inspector = server.client("inspector", inspector_password)
        palign_client = server.client("palign", broker_password)
        try:
            inspector.acl_log_reset()
            # The ACL log's canary: palign's user is refused what is dangerous, and it shows.
            with pytest.raises(redis.exceptions.NoPermissionError):
                palign_client.flushall()
            assert [(e["username"], e["object"]) for e in inspector.acl_log()] == [("palign", "flushall")]
            inspector.acl_log_reset()
            with contextlib.ExitStack() as stack:
                flower = stack.enter_context(flower_on(None, tmp_path / "flower"))
                wait_for(lambda: inspector.pubsub_numpat() >= 1, 30, "flower to subscribe to the events")
                workers: list[Worker] = []
                stack.callback(lambda: [worker.stop(timeout=20) for worker in workers])  # by their pids
                for name in ("north", "south"):
                    # PALIGN_BROKER_URL is empty: the worker reads PALIGN_BROKER_URL_FILE.
                    workers.append(Worker("", name, tmp_path / "workers" / name))
                args: tuple[str, ...] = (sys.executable, "-m", "palign", "run", str(repo.path), "--onto", "main")
                args += ("--distributed", "--report-dir", str(tmp_path / "dist"))
                with CommandLines() as lines:
                    result = run_palign(*args[3:])
                assert result.code == local.code, result.stdout + result.stderr
                dist, mine = read_report(tmp_path / "dist"), read_report(tmp_path / "local")
                assert dist["overall_summary"]["executor"] == "celery"
                assert comparable(repo, dist) == comparable(repo, mine)
                assert {"aligned", "conflict", "blocked"} <= {b["status"] for b in branches_of(dist).values()}
                run_id = dist["run_id"]
                status = run_palign("status", run_id, "--json")  # the broker from the files too
                assert status.code == 0 and json.loads(status.stdout)["state"] == "finished", status.stderr
                flower_workers = flower.api("/api/workers?refresh=1")
                assert {w.hostname for w in workers} <= set(flower_workers), flower_workers
                flower_tasks = wait_for(
                    lambda: [t for task_id, t in flower.api("/api/tasks").items() if task_id.startswith(run_id)],
                    30,
                    "flower to list the run's tasks",
                    interval=0.2,
                )

                # The ACL refused palign's user nothing, during the whole run.
                assert inspector.acl_log() == [], inspector.acl_log()
                # No command line held the broker's password while the run went (the
                # producer's included: --distributed); no worker process holds it in its
                # command line or environment, which has the file's path instead.
                assert lines.sweeps > 10 and [argv for _, argv in lines.seen if argv == args]
                assert not lines.holding(broker_password), lines.holding(broker_password)
                for worker in workers:
                    group = group_command_lines(worker.proc.pid)
                    assert len(group) >= 2 and all("palign" in line for line in group.values()), group
                    assert not [line for line in group.values() if broker_password in line], group
                    for pid in group:
                        environ = Path("/proc", str(pid), "environ").read_bytes()
                        assert broker_password.encode() not in environ and str(url_file).encode() in environ
                flower_line = Path("/proc", str(flower.proc.pid), "cmdline").read_bytes()
                assert b"flower" in flower_line and broker_password.encode() not in flower_line
                places = {
                    "producer output": result.stdout + result.stderr,
                    "palign status --json": status.stdout + status.stderr,
                    "flower /api/workers (their configuration)": json.dumps(flower_workers),
                    "flower /api/tasks": json.dumps(flower_tasks),
                    "flower log": flower.log.read_text(errors="replace"),
                    **{f"log of worker {w.name}": w.log.read_text(errors="replace") for w in workers},
                    **{f"dist/{f}": (tmp_path / "dist" / f).read_text() for f in ("report.json", "report.md")},
                    **redis_contents(server.port, as_inspector),
                }
                hits = scan({"password": broker_password, "run": run_id, "redacted": "rediss://palign:**"}, places)
                assert not hits["password"], hits["password"]
                expected = {"producer output", "palign status --json", "flower /api/tasks"}
                expected.add(f"redis db0 hash palign:run:{run_id}")
                assert expected <= set(hits["run"]), sorted(hits["run"])
                # The broker is shown, its password masked: in the workers' logs, and in their
                # configuration as Flower shows it (so those scans read where a URL would be).
                masked = {f"log of worker {w.name}" for w in workers} | {"flower /api/workers (their configuration)"}
                assert masked <= set(hits["redacted"]), hits["redacted"]
        finally:
            inspector.close()
            palign_client.close()


# ---- findings: a token in REPO's query string -----------------------------------------------


def test_a_token_in_the_query_string_is_refused_before_it_goes_anywhere(tmp_path: Path) -> None:
    """A token in REPO's query string would show in process listings, git's messages and
    file names: the URL is refused at once (a login or a credential file is the way), and
    nothing of it is written."""
    token = "tok-" + uuid.uuid4().hex
    url = f"http://127.0.0.1:{free_port()}/repo.git?access_token={token}"
    result = run_palign("run", url, "--onto", "main", "--report-dir", str(tmp_path / "r"))
    assert result.code == 2, result.stdout + result.stderr
    assert "carries a secret in its query" in result.stderr and result.stderr.count("\n") == 1
    assert token not in result.stdout + result.stderr
    cache = Path(os.environ["PALIGN_CACHE_DIR"])
    assert not [path for path in cache.rglob("*") if token[:8] in str(path)]
    assert not (tmp_path / "r").exists()


def test_git_messages_are_redacted() -> None:
    """What git says of a URL reaches reports and logs only redacted."""
    from palign.errors import GitCommandError

    error = GitCommandError("fetch", 128, "fatal: unable to access 'https://bot:hunter2@h/r.git/': Could not resolve")
    assert "hunter2" not in str(error) and "hunter2" not in error.stderr
    assert "https://bot:***@h/r.git/" in str(error)


def test_a_login_typed_in_the_url_gets_a_warning(tmp_path: Path) -> None:
    """palign cannot take a login back out of its own command line: it says so, once."""
    result = run_palign("run", f"http://bot:hunter2@127.0.0.1:{free_port()}/repo.git", "--onto", "main", cwd=tmp_path)
    assert result.code == 3, result.stdout + result.stderr  # nothing listens there
    warning, error = result.stderr.strip().splitlines()
    assert "warning: the login in the repository URL is visible" in warning and "PALIGN_GIT_CREDENTIALS_FILE" in warning
    assert error.startswith("palign: error: cannot read repository http://127.0.0.1:")
    assert "hunter2" not in result.stderr
