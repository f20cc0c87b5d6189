"""The one door from the service layer into distributed mode: submit a planned run, wait
for it, ask its state, cancel or resume it, read its report; start a worker or Flower.

The service depends on this module; nothing in `palign.distributed` depends on the
service. Celery's and kombu's errors are translated here (the run store translates
Redis's).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from celery import Celery
from kombu.exceptions import KombuError

from palign.config import load as load_config
from palign.distributed import producer
from palign.distributed.app import make_app
from palign.distributed.store import RunStore
from palign.errors import BrokerUnavailable, InputError, UnknownRun, translated
from palign.model import AlignRequest, BranchResult, Progress, WorkUnit
from palign.records import PlanInfo, RunRecord, RunState
from palign.refs import check_run_id
from palign.report import RunReport, from_record
from palign.settings import QUEUES, Settings

log = logging.getLogger("palign")


@dataclass(frozen=True)
class WorkerOptions:
    """How a `palign worker` serves: its processes, queues and name."""

    concurrency: int | None = None  # default: the CPU count
    autoscale: str | None = None  # MAX,MIN
    queues: str = ",".join(QUEUES)
    hostname: str | None = None  # default: palign@HOST
    loglevel: str = "INFO"

    def argv(self) -> list[str]:
        """Celery's worker arguments; bad values are refused first (one line, exit 2)."""
        unknown = [q for q in self.queues.split(",") if q not in QUEUES]
        if unknown or not self.queues:
            raise InputError(f"unknown queue {', '.join(unknown) or self.queues!r} (queues: {', '.join(QUEUES)})")
        if self.autoscale is not None:
            parts = self.autoscale.split(",")
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts) or int(parts[0]) < int(parts[1]):
                raise InputError(f"--autoscale takes MAX,MIN with MAX >= MIN >= 1 (got {self.autoscale!r})")
        argv = ["worker", f"--loglevel={self.loglevel}", "-Q", self.queues, "-E"]
        processes = f"--concurrency={self.concurrency or os.cpu_count() or 1}"
        argv.append(f"--autoscale={self.autoscale}" if self.autoscale else processes)
        argv.append(f"--hostname={self.hostname or 'palign@%h'}")
        return argv


# Celery's and kombu's errors (sending a task, say) become `BrokerUnavailable`.
_celery_errors = translated(KombuError, BrokerUnavailable, "the broker failed")


class DistributedRuns:
    """Runs on Celery workers through one broker (`settings.broker`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RunStore.of(settings.broker)
        self._app: Celery | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_app(self.settings)
        return self._app

    def check(self) -> None:
        """Fail fast, with one line, when the broker cannot be reached, or when no live
        worker holds this producer's signing key (they would refuse its tasks)."""
        self.store.check()
        key_id = self.settings.broker.signer().key_id
        workers = self.store.live_workers()
        if workers and all(worker_key != key_id for _, worker_key in workers.values()):
            raise InputError(
                f"no live worker shares this producer's signing key ({len(workers)} workers have another): "
                "give producers and workers the same PALIGN_SIGNING_KEY_FILE"
            )

    @_celery_errors
    def submit(
        self,
        record: RunRecord,
        *,
        requests: Sequence[AlignRequest],
        planned: dict[str, PlanInfo],
        units: Sequence[WorkUnit],
        refused: Sequence[BranchResult] = (),
    ) -> int:
        """Record the run and send its canvas; returns the number of tasks sent.
        `refused` are branches left alone from the start (their results are recorded)."""
        return producer.enqueue(
            self.app,
            self.store,
            record,
            requests=requests,
            planned=planned,
            units=units,
            refused=refused,
            ttl=self.settings.broker.run_ttl,
        )

    @_celery_errors
    def wait(self, run_id: str, *, on_progress: Progress | None = None, timeout: float | None = None) -> RunReport:
        """Follow the run to its report; work Redis lost is sent again after the stall
        timeout without progress."""
        return producer.wait(
            self.app,
            self.store,
            run_id,
            on_progress=on_progress,
            timeout=timeout,
            stall_after=self.settings.broker.stall_timeout,
            settings=self.settings,
        )

    def status(self, run_id: str) -> RunRecord:
        """The run's record as it stands (its request checked when this command has the key)."""
        check_run_id(run_id)
        return self.store.record(run_id, verified=self.settings.broker.signing_key is not None)

    def report(self, run_id: str) -> RunReport:
        check_run_id(run_id)
        found = self.store.report(run_id)
        if found is None:
            state = self.store.state(run_id)
            raise UnknownRun(f"run {run_id} has no report yet (it is {state.value}): palign status {run_id}")
        return from_record(found)

    def cancel(self, run_id: str) -> RunState:
        """Ask a run to stop; returns its state when asked."""
        check_run_id(run_id)
        return self.store.cancel(run_id)

    @_celery_errors
    def resume(self, run_id: str) -> int:
        """Send again the work of branches without a result; returns how many."""
        check_run_id(run_id)
        return producer.resubmit_missing(self.app, self.store, run_id)

    def start_worker(self, options: WorkerOptions) -> None:
        """Serve runs in this process until told to stop (Celery's worker). Its key, its
        checks and what it serves are checked first: bad settings stop it at once."""
        argv = options.argv()
        self.settings.broker.signer()
        if self.settings.worker_config is not None:
            load_config(self.settings.worker_config)  # a malformed [validate] fails now, not per task
        if not self.settings.allowed_repos:
            log.warning("PALIGN_ALLOWED_REPOS is empty: this worker serves no repository")
        self.app.worker_main(argv)

    def start_flower(self, *, address: str, port: int, basic_auth: str | None) -> None:
        """Flower, Celery's dashboard, over this broker, until told to stop."""
        argv = ["flower", f"--address={address}", f"--port={port}"]
        if basic_auth:
            argv.append(f"--basic-auth={basic_auth}")
        self.app.start(argv)
