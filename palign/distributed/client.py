"""The one door from the service layer into distributed mode: submit a planned run, wait
for it, ask its state, cancel or resume it, read its report; start a worker or Flower.

The service depends on this module; nothing in `palign.distributed` depends on the
service. Celery's and kombu's errors are translated here (the run store translates
Redis's).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from celery import Celery
from kombu.exceptions import KombuError

from palign.distributed import producer
from palign.distributed.app import make_app
from palign.distributed.store import RunStore
from palign.errors import BrokerUnavailable, InputError, UnknownRun, translated
from palign.model import AlignRequest, Progress, WorkUnit
from palign.records import PlanInfo, RunRecord, RunState
from palign.refs import check_run_id
from palign.report import RunReport, from_record
from palign.settings import QUEUES, Settings


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
        self.store = RunStore(settings.broker.broker_url)
        self._app: Celery | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = make_app(self.settings)
        return self._app

    def check(self) -> None:
        """Fail fast, with one line, when the broker cannot be reached."""
        self.store.check()

    @_celery_errors
    def submit(
        self,
        record: RunRecord,
        *,
        requests: Sequence[AlignRequest],
        planned: dict[str, PlanInfo],
        units: Sequence[WorkUnit],
    ) -> int:
        """Record the run and send its canvas; returns the number of tasks sent."""
        return producer.enqueue(
            self.app,
            self.store,
            record,
            requests=requests,
            planned=planned,
            units=units,
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
        )

    def status(self, run_id: str) -> RunRecord:
        check_run_id(run_id)
        return self.store.record(run_id)

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
        """Serve runs in this process until told to stop (Celery's worker)."""
        argv = options.argv()
        self.app.worker_main(argv)

    def start_flower(self, *, address: str, port: int, basic_auth: str | None) -> None:
        """Flower, Celery's dashboard, over this broker, until told to stop."""
        argv = ["flower", f"--address={address}", f"--port={port}"]
        if basic_auth:
            argv.append(f"--basic-auth={basic_auth}")
        self.app.start(argv)
