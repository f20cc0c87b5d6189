"""Run state in Redis. This module owns every key palign writes there:

    palign:runs                        zset   run id -> creation time (newest last)
    palign:run:<id>                    hash   the run record: state, options, counters, times
    palign:run:<id>:branches           hash   ref name -> the planned branch (JSON)
    palign:run:<id>:results            hash   ref name -> its final result (JSON), written once
    palign:run:<id>:jobs               hash   task number -> its levels of requests (JSON), to resend
    palign:run:<id>:chunks             set    chunks of the canvas that have finished
    palign:run:<id>:events             stream progress events for live displays
    palign:run:<id>:report             string the finished report (JSON)
    palign:run:<id>:finishing          string who is finishing the run (expiring, renewed)
    palign:lock:<repo>:<ref>           string which run is aligning that branch now (expiring, renewed)
    palign:lease:<id>:<unit>           string which task delivery works on a unit of the run now
                                              (expiring, renewed)
    palign:worker:<hostname>           string a live worker's process count and key id (expiring, renewed)
    palign:check:<sha256>              string a check's result for (tree, command) (expiring)

Celery's own keys (queues, unacked, celery-task-meta-*) are Celery's business, with one
exception: a live worker renews, in kombu's `unacked_index`, the time of each task it
holds (`renew_deliveries`), so that the tasks of a worker that died go back to their
queue after the short visibility timeout, while a live worker's long task never does.

Every Redis error is translated here, in the method that meets it, into
`BrokerUnavailable`; records read back are decoded into the typed records of
`palign.records` (a malformed one is `MalformedRecord`). What producers and workers act
on is sealed (`palign.signing`): the run record's request (its `seal` field), planned
branches, tasks' work, results, the report, cached check results. A record whose seal does
not verify is refused, or, for results, ignored as if absent (logged).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock
from redis.retry import Retry

from palign.errors import BrokerUnavailable, InputError, MalformedRecord, UnknownRun, translated
from palign.model import AlignRequest, BranchResult, Status
from palign.records import QueuedBranch, RunRecord, RunState
from palign.settings import DistributedSettings
from palign.signing import ForgedRecord, Signer

log = logging.getLogger("palign")

Name = TypeVar("Name", str, int)  # what a lease guards: a branch, a unit of a run

# Redis errors of a store method become `BrokerUnavailable` (infrastructure: exit 3).
_translated = translated(RedisError, BrokerUnavailable, "the broker failed")


RUNS = "palign:runs"
CHECK_PREFIX = "palign:check:"


def run_key(run_id: str) -> str:
    return f"palign:run:{run_id}"


WORKER_PREFIX = "palign:worker:"
# kombu's Redis transport: delivery tag -> when a worker took the message (its default name).
UNACKED_INDEX = "unacked_index"


def lock_key(repo_url: str, refname: str) -> str:
    repo = hashlib.sha256(repo_url.encode()).hexdigest()[:16]
    return f"palign:lock:{repo}:{refname}"


def lease_key(run_id: str, unit: int) -> str:
    return f"palign:lease:{run_id}:{unit}"


# Records each result once (a task delivered twice finds its branches done) and counts
# it; trips the circuit breaker when failures pass both the count and the percentage.
_RECORD_RESULTS = """
local run, results = KEYS[1], KEYS[2]
local failures_at = tonumber(redis.call('HGET', run, 'breaker_failures') or '0') or 0
local percent_at = tonumber(redis.call('HGET', run, 'breaker_percent') or '0') or 0
local new = 0
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', results, ARGV[i], ARGV[i + 1]) == 1 then
    new = new + 1
    redis.call('HINCRBY', run, 'done', 1)
    if ARGV[i + 2] == '1' then redis.call('HINCRBY', run, 'failures', 1) end
  end
end
local done = tonumber(redis.call('HGET', run, 'done') or '0')
local failures = tonumber(redis.call('HGET', run, 'failures') or '0')
if failures_at > 0 and failures >= failures_at and failures * 100 >= percent_at * done then
  redis.call('HSETNX', run, 'circuit_breaker_triggered', '1')
end
return {new, done, failures}
"""


@dataclass(frozen=True)
class Counters:
    recorded: int  # results this call stored (0 for a duplicate)
    done: int
    failures: int


class RunStore:
    def __init__(self, url: str, signer: Signer | None = None, *, ca_file: str | None = None) -> None:
        """`signer` seals what is written and opens what is read; without one, the store
        only reads states and counters (status, cancel) and writes nothing sealed."""
        self.url = url
        self._signer = signer
        self._ca_file = ca_file
        # redis-py 8 defaults to 5 s socket timeouts; retries with backoff ride out a
        # Redis restart of a few seconds.
        # Typed loosely: redis-py's stubs cannot know decode_responses gives str.
        self.redis: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=30,
            socket_connect_timeout=10,
            health_check_interval=25,
            retry=Retry(ExponentialBackoff(cap=4, base=0.1), retries=12),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            **self._tls(),
        )
        self._record_results = self.redis.register_script(_RECORD_RESULTS)

    def _tls(self) -> dict[str, Any]:
        return {"ssl_ca_certs": self._ca_file} if self._ca_file and self.url.lower().startswith("rediss://") else {}

    @classmethod
    def of(cls, settings: DistributedSettings) -> RunStore:
        """The store of these settings, sealing with their key when they have one."""
        signer = settings.signer() if settings.signing_key is not None else None
        return cls(settings.broker_url, signer, ca_file=str(settings.ca_file) if settings.ca_file else None)

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            raise InputError("reading this needs the signing key (PALIGN_SIGNING_KEY_FILE)")
        return self._signer

    def check(self) -> None:
        """Fail fast, with one line, when the broker cannot be reached."""
        try:
            redis.Redis.from_url(
                self.url, socket_connect_timeout=5, socket_timeout=5, retry=Retry(NoBackoff(), 1), **self._tls()
            ).ping()
        except RedisError as error:
            raise BrokerUnavailable(f"cannot reach the broker: {type(error).__name__}: {error}") from None

    # --- runs -------------------------------------------------------------------------

    @_translated
    def create(
        self,
        record: RunRecord,
        branches: Sequence[QueuedBranch],
        ttl: int,
        jobs: Sequence[Sequence[Sequence[AlignRequest]]] = (),
    ) -> None:
        """Write a new run: its record, its planned branches and its tasks' work (by task
        number, to send again what Redis may lose)."""
        signer = self.signer
        key = run_key(record.run_id)
        request = record.to_fields()
        fields = {name: json.dumps(value) for name, value in request.items()}
        fields["seal"] = json.dumps(signer.mac("record", [record.run_id, request]))
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={**fields, "state": RunState.QUEUED.value, "done": 0, "failures": 0})
            for start in range(0, len(branches), 5000):
                mapping = {
                    b.refname: json.dumps(signer.seal("branch", [b.refname, b.to_json()]))
                    for b in branches[start : start + 5000]
                }
                pipe.hset(f"{key}:branches", mapping=mapping)
            for start in range(0, len(jobs), 1000):
                mapping = {
                    str(number): json.dumps(
                        signer.seal("work", [record.run_id, number, [[r.to_json() for r in level] for level in job]])
                    )
                    for number, job in enumerate(jobs[start : start + 1000], start)
                }
                pipe.hset(f"{key}:jobs", mapping=mapping)
            pipe.zadd(RUNS, {record.run_id: time.time()})
            pipe.zremrangebyscore(RUNS, "-inf", time.time() - ttl)  # the index outlives no run
            for suffix in ("", ":branches", ":jobs"):
                pipe.expire(key + suffix, ttl)
            pipe.execute()

    @_translated
    def record(self, run_id: str, *, verified: bool = True) -> RunRecord:
        """The run's record; its request (what was asked) is checked against its seal,
        unless `verified` is false (a command that only shows a state)."""
        raw = self.redis.hgetall(run_key(run_id))
        if not raw:
            raise UnknownRun(f"unknown run id: {run_id} (no record in the broker; records expire after the run's TTL)")
        fields: dict[str, Any] = {}
        for name, value in raw.items():
            try:
                fields[name] = json.loads(value)
            except ValueError:
                fields[name] = value  # written as plain text (the state)
        record = RunRecord.from_fields(run_id, fields)
        if verified:
            request = {name: fields.get(name) for name in record.to_fields()}
            expected = self.signer.mac("record", [run_id, request])
            if not isinstance(fields.get("seal"), str) or not hmac.compare_digest(fields["seal"], expected):
                raise ForgedRecord(
                    f"run {run_id}: the record's seal does not verify (altered in Redis, or another key)"
                )
        return record

    @_translated
    def state(self, run_id: str) -> RunState:
        value = self.redis.hget(run_key(run_id), "state")
        if value is None:
            raise UnknownRun(f"unknown run id: {run_id}")
        try:
            return RunState(value)
        except ValueError:
            raise MalformedRecord(f"run {run_id}: not a run state: {value!r}") from None

    @_translated
    def note_apply_error(self, run_id: str, message: str) -> None:
        self.redis.hset(run_key(run_id), "apply_error", json.dumps(message))

    @_translated
    def mark_running(self, run_id: str) -> None:
        key = run_key(run_id)
        if self.redis.hsetnx(key, "started_at", json.dumps(time.time())):
            self.redis.hset(key, "state", RunState.RUNNING.value)
            self.event(run_id, {"type": "state", "state": RunState.RUNNING.value})

    @_translated
    def branches(self, run_id: str) -> dict[str, QueuedBranch]:
        """The run's planned branches; each must carry a seal that verifies."""
        found = {}
        for ref, value in self.redis.hgetall(f"{run_key(run_id)}:branches").items():
            sealed_ref, data = _pair(self.signer.open("branch", _decoded(value)))
            if sealed_ref != ref:
                raise ForgedRecord(f"run {run_id}: a planned branch was moved to another name")
            found[ref] = QueuedBranch.from_json(ref, data)
        return found

    @_translated
    def jobs(self, run_id: str) -> dict[int, list[list[AlignRequest]]]:
        """The work of each task of the run, by task number (kept until the run ends)."""
        found = {}
        for number, value in self.redis.hgetall(f"{run_key(run_id)}:jobs").items():
            payload = self.signer.open("work", _decoded(value))
            if not isinstance(payload, list) or len(payload) != 3 or payload[:2] != [run_id, int(number)]:
                raise ForgedRecord(f"run {run_id}: the work of task {number} was moved from elsewhere")
            found[int(number)] = [[AlignRequest.from_json(r) for r in level] for level in payload[2]]
        return found

    # --- results, stops ---------------------------------------------------------------

    @_translated
    def record_results(self, run_id: str, results: Sequence[BranchResult]) -> Counters:
        args: list[Any] = []
        for result in results:
            sealed = self.signer.seal("result", [run_id, result.to_json()])
            args += [result.refname, json.dumps(sealed), "1" if result.status.counts_as_failure else "0"]
        key = run_key(run_id)
        new, done, failures = self._record_results(keys=[key, f"{key}:results"], args=args)
        if new:
            with self.redis.pipeline(transaction=False) as pipe:  # one round trip for the level's events
                for result in results:
                    event = {"type": "branch", "branch": result.branch_name, "status": result.status.value}
                    self._add_event(pipe, run_id, event)
                pipe.execute()
        return Counters(int(new), int(done), int(failures))

    @_translated
    def total(self, run_id: str) -> int:
        """How many branches the run has."""
        return int(_decoded(self.redis.hget(run_key(run_id), "total") or "0"))

    @_translated
    def results(self, run_id: str, refnames: Iterable[str] | None = None) -> dict[str, BranchResult]:
        key = f"{run_key(run_id)}:results"
        if refnames is None:
            raw = self.redis.hgetall(key)
        else:
            names = list(refnames)
            raw = {n: v for n, v in zip(names, self.redis.hmget(key, names), strict=True) if v is not None}
        found = {}
        for ref, value in raw.items():
            try:
                sealed_run, data = _pair(self.signer.open("result", _decoded(value)))
                result = BranchResult.from_json(data)
                if sealed_run != run_id or result.refname != ref:
                    raise ForgedRecord("a result moved from another run or branch")
            except MalformedRecord as error:  # planted in Redis: as if there were no result
                log.warning("run %s: ignored the stored result of %s: %s", run_id, ref, error)
                continue
            found[ref] = result
        return found

    @_translated
    def stop_reason(self, run_id: str) -> Status | None:
        """Why a branch not yet aligned must not be: cancelled, or the breaker tripped."""
        cancel, breaker = self.redis.hmget(run_key(run_id), ["cancel_requested", "circuit_breaker_triggered"])
        if cancel:
            return Status.CANCELLED
        if breaker:
            return Status.SKIPPED
        return None

    @_translated
    def cancel(self, run_id: str) -> RunState:
        state = self.state(run_id)
        if not state.final:
            self.redis.hsetnx(run_key(run_id), "cancel_requested", json.dumps(time.time()))
            self.event(run_id, {"type": "state", "state": "cancelling"})
        return state

    # --- the end of a run --------------------------------------------------------------

    @_translated
    def chunk_finished(self, run_id: str, chunk: int) -> bool:
        """Note that a chunk of the canvas ended; True once every chunk has."""
        key = run_key(run_id)
        with self.redis.pipeline() as pipe:
            pipe.sadd(f"{key}:chunks", chunk)
            pipe.scard(f"{key}:chunks")
            pipe.hget(key, "chunks")
            pipe.expire(f"{key}:chunks", int(self.redis.ttl(key) or 0) or 3600)
            added, finished, total, _ = pipe.execute()
        return int(finished) >= int(json.loads(total))

    def finish_lease(self, run_id: str, holder: str) -> Leases[str]:
        """Held by the one caller finishing the run; a finisher that dies frees it within
        seconds, for the next caller (a redelivered task, the waiting producer)."""
        return Leases(self.redis, {"finish": f"{run_key(run_id)}:finishing"}, run_id, holder)

    @_translated
    def finish(self, run_id: str, report: dict[str, Any], state: RunState) -> None:
        key = run_key(run_id)
        ttl = int(self.redis.ttl(key) or 0)
        with self.redis.pipeline() as pipe:
            pipe.set(f"{key}:report", json.dumps(self.signer.seal("report", [run_id, report])))
            pipe.hset(key, mapping={"state": state.value, "finished_at": json.dumps(time.time())})
            pipe.delete(f"{key}:jobs")
            if ttl > 0:
                for suffix in (":report", ":results", ":events"):
                    pipe.expire(key + suffix, ttl)
            pipe.execute()
        self.event(run_id, {"type": "state", "state": state.value})

    @_translated
    def report(self, run_id: str) -> dict[str, Any] | None:
        """The finished run's report (`palign.report.to_record`), or None before."""
        raw = self.redis.get(f"{run_key(run_id)}:report")
        if not raw:
            return None
        sealed_run, data = _pair(self.signer.open("report", _decoded(raw)))
        if sealed_run != run_id or not isinstance(data, dict):
            raise ForgedRecord(f"run {run_id}: the stored report belongs to another run")
        return data

    # --- progress events ------------------------------------------------------------------

    @_translated
    def event(self, run_id: str, event: dict[str, Any]) -> None:
        self._add_event(self.redis, run_id, event)

    @staticmethod
    def _add_event(client: Any, run_id: str, event: dict[str, Any]) -> None:
        client.xadd(
            f"{run_key(run_id)}:events",
            {"data": json.dumps({**event, "at": time.time()})},
            maxlen=100_000,
            approximate=True,
        )

    @_translated
    def events(self, run_id: str, after: str = "0", block_ms: int = 1000) -> list[tuple[str, dict[str, Any]]]:
        """Events after the id `after`, waiting up to `block_ms` for the first."""
        reply = self.redis.xread({f"{run_key(run_id)}:events": after}, count=10_000, block=block_ms)
        out: list[tuple[str, dict[str, Any]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                out.append((entry_id, _decoded(fields["data"])))
        return out

    # --- live workers ---------------------------------------------------------------------

    @_translated
    def register_worker(self, hostname: str, processes: int, ttl: int = 30) -> None:
        """A live worker: how many processes it runs, and which key it opens seals with
        (an id, not the key), so producers can tell a worker that would refuse their tasks."""
        self.redis.set(WORKER_PREFIX + hostname, json.dumps([processes, self.signer.key_id]), ex=ttl)

    @_translated
    def unregister_worker(self, hostname: str) -> None:
        self.redis.delete(WORKER_PREFIX + hostname)

    @_translated
    def renew_deliveries(self, delivery_tags: Sequence[str]) -> None:
        """The tasks this worker holds are still its own: their time in kombu's unacked
        index becomes now (only for tags still there: an acknowledged task stays gone)."""
        if delivery_tags:
            now = time.time()
            self.redis.zadd(UNACKED_INDEX, dict.fromkeys(delivery_tags, now), xx=True)

    @_translated
    def live_workers(self) -> dict[str, tuple[int, str]]:
        """Hostname -> (processes, signing key id) of the workers alive now."""
        keys = list(self.redis.scan_iter(WORKER_PREFIX + "*", count=1000))
        found: dict[str, tuple[int, str]] = {}
        for key, value in zip(keys, self.redis.mget(keys) if keys else [], strict=True):
            try:
                processes, key_id = json.loads(value)
                found[key.removeprefix(WORKER_PREFIX)] = (int(processes), str(key_id))
            except (TypeError, ValueError):
                continue  # expired meanwhile, or not a worker's
        return found

    # --- branch locks, leases ---------------------------------------------------------

    def branch_locks(self, repo_url: str, refnames: Sequence[str], owner: str, holder: str) -> Leases[str]:
        """One lock per branch of a repository, so two runs never align a branch at once;
        `owner` is the run (what `Leases.owner_of` tells)."""
        return Leases(self.redis, {ref: lock_key(repo_url, ref) for ref in refnames}, owner, holder)

    def unit_lease(self, run_id: str, unit: int, holder: str) -> Leases[int]:
        """The lease of one unit of a run (a stack, or a batch of branches): the task
        delivery that holds it is the one working on the unit; a second delivery of the
        same task (Redis handed it out again) waits for it, or takes over when it dies.
        `holder` names the worker process (shown to operators)."""
        return Leases(self.redis, {unit: lease_key(run_id, unit)}, run_id, holder)

    @_translated
    def lease_holders(self, run_id: str) -> dict[int, str]:
        """Unit -> the worker process whose delivery works on it now."""
        keys = list(self.redis.scan_iter(lease_key(run_id, 0)[:-1] + "*", count=1000))
        found: dict[int, str] = {}
        for key, value in zip(keys, self.redis.mget(keys) if keys else [], strict=True):
            parts = str(value or "").split(" ")
            if len(parts) == 3 and key.rsplit(":", 1)[-1].isdigit():
                found[int(key.rsplit(":", 1)[-1])] = parts[1]
        return found

    @_translated
    def leased_units(self, run_id: str, units: Sequence[int]) -> set[int]:
        """The units of the run some live task delivery is working on now."""
        if not units:
            return set()
        values = self.redis.mget([lease_key(run_id, unit) for unit in units])
        return {unit for unit, value in zip(units, values, strict=True) if value is not None}

    def check_cache(self) -> RedisCheckCache:
        return RedisCheckCache(self.redis, self.signer.for_purpose("check cache"))


def _decoded(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise MalformedRecord(f"not JSON: {raw[:80]!r}") from None


def _pair(payload: Any) -> tuple[Any, Any]:
    """A sealed [what it belongs to, data] payload."""
    if not isinstance(payload, list) or len(payload) != 2:
        raise ForgedRecord("a sealed record of the wrong shape")
    return payload[0], payload[1]


class RedisCheckCache:
    """Check results shared by every worker: a tree checked on one machine is not checked
    again on another. Each record is sealed with a key of the workers' own: a record
    planted in Redis does not verify, and is ignored."""

    def __init__(self, client: Any, signer: Signer, ttl: int = 30 * 24 * 3600) -> None:
        self.client = client
        self.signer = signer
        self.ttl = ttl

    @_translated
    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.client.get(CHECK_PREFIX + key)
        if not raw:
            return None
        try:
            sealed_key, record = _pair(self.signer.open("check", _decoded(raw)))
        except MalformedRecord as error:
            log.warning("ignored a cached check result that does not verify: %s", error)
            return None
        return record if sealed_key == key and isinstance(record, dict) else None

    @_translated
    def put(self, key: str, record: dict[str, Any]) -> None:
        self.client.set(CHECK_PREFIX + key, json.dumps(self.signer.seal("check", [key, record])), ex=self.ttl)


class Leases(Generic[Name]):
    """Redis locks that expire unless renewed, so a holder that dies, freezes or loses
    Redis frees them within `ttl`. Each holder's token is `OWNER HOLDER UNIQUE`: the run
    (what `owner_of` tells), the worker process, and a part of its own, so a holder whose
    locks expired and were taken by another never renews or releases the other's (it
    finds them `lost`)."""

    def __init__(self, client: Any, keys: dict[Name, str], owner: str, holder: str, ttl: float = 15.0) -> None:
        self.ttl = ttl
        self.token = f"{owner} {holder.replace(' ', '_') or '?'} {uuid.uuid4().hex}"
        self.locks: dict[Name, Lock] = {
            name: Lock(client, key, timeout=ttl, sleep=0.25, thread_local=False) for name, key in keys.items()
        }
        self.held: list[Name] = []
        self.lost: set[Name] = set()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @_translated
    def acquire(self, wait_seconds: float) -> list[Name]:
        """Take every lock, waiting up to `wait_seconds` in all; returns those another
        holder keeps (what they guard must not be touched now)."""
        deadline = time.monotonic() + wait_seconds
        busy = []
        for name, lock in self.locks.items():
            left = max(0.0, deadline - time.monotonic())
            if lock.acquire(blocking=left > 0, blocking_timeout=left or None, token=self.token):
                self.held.append(name)
            else:
                busy.append(name)
        if self.held and self._renewer is None:
            self._renewer = threading.Thread(target=self._renew, name="palign-lease-renewal", daemon=True)
            self._renewer.start()
        return busy

    @_translated
    def owner_of(self, name: Name) -> str | None:
        """The owner (run id) holding a lock now, if any."""
        lock = self.locks[name]
        value = lock.redis.get(lock.name)
        if value is None:
            return None
        return (value.decode() if isinstance(value, bytes) else str(value)).split(" ", 1)[0]

    @_translated
    def confirm(self) -> bool:
        """Every lock taken is still this holder's, asked of Redis now. A lock that
        expired (this holder froze, or lost Redis, for longer than `ttl`) is taken again
        when nobody else took it; False when another holder has it."""
        for name in self.held:
            lock = self.locks[name]
            if name not in self.lost and lock.owned():
                continue
            if not lock.acquire(blocking=False, token=self.token):
                self.lost.add(name)
                return False
            self.lost.discard(name)
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            for name in self.held:
                if name in self.lost:
                    continue
                try:
                    self.locks[name].reacquire()
                except LockNotOwnedError:
                    self.lost.add(name)  # expired, and perhaps taken by another holder
                except Exception:  # noqa: BLE001  (Redis unreachable now: try again next round)
                    continue

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        for name in self.held:
            if name in self.lost:
                continue
            try:
                self.locks[name].release()
            except Exception:  # noqa: BLE001  (expired meanwhile, or Redis gone: it expires by itself)
                continue
        self.held.clear()

    def __enter__(self) -> Leases[Name]:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
