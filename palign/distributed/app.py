"""The Celery app: palign's tasks and the settings that make long git tasks safe.

`make_app(settings)` builds it for one entry point (`palign worker`, `palign flower`, a
producer); nothing is configured on import. `celery -A palign.distributed.app worker`
works too: the module's `app` attribute is built, on first use, from the environment.
The settings and the traps behind them are explained in workers/README.md.
"""

from __future__ import annotations

import ssl
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu.entity import Queue

from palign.distributed import tasks, worker
from palign.settings import QUEUES, DistributedSettings, Settings

DEFAULT_PRIORITY = 5  # Redis: 0 runs first, 9 last


class ShadowNamedAMQP(AMQP):  # type: ignore[misc]
    """Task-sent events carry the task's readable (shadow) name, as task-received events
    do: otherwise a late sent event renames a task in Flower back to `palign.align`."""

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        shadow = kwargs.get("shadow")
        if shadow and message.sent_event:
            message.sent_event["name"] = shadow
        return message


def make_app(settings: Settings) -> Celery:
    """A Celery app for palign's tasks, configured by `settings` (which must carry the
    distributed settings)."""
    app = Celery("palign", set_as_current=False, amqp=ShadowNamedAMQP)
    app.conf.update(celery_config(settings.broker))
    tasks.register(app)
    worker.attach(settings)
    return app


def celery_config(settings: DistributedSettings) -> dict[str, Any]:
    vt = settings.visibility_timeout
    transport = {
        "visibility_timeout": vt,
        # Ten readable priority lists per queue (align, align:1 ... align:9): KEDA and
        # redis-cli can watch them, and 0 is served first.
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "health_check_interval": 25,
        "unacked_restore_interval": settings.restore_interval,
        "unacked_restore_throttle": 1,
        # A worker killed during its sweep for such tasks holds the sweep's lock until it
        # expires (kombu: 5 minutes), which would delay every recovery that long.
        "unacked_mutex_expire": settings.restore_interval + 10,
    }
    # rediss://: verify the server's certificate, against PALIGN_BROKER_CA_FILE or the system's CAs.
    tls: dict[str, Any] | None = None
    if _tls(settings.broker_url):
        tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.ca_file)
    return {
        "broker_url": settings.broker_url,
        "result_backend": _backend_url(settings.broker_url),
        "broker_use_ssl": tls,
        "redis_backend_use_ssl": tls,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": vt},
        "visibility_timeout": vt,
        "broker_connection_retry_on_startup": True,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        # JSON only: a message can never make a worker unpickle anything.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A task is acknowledged when it ends, so a worker that dies hands it back; one
        # task at a time per process, so nothing waits behind a long one.
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "task_retry_on_worker_lost": True,
        "worker_deduplicate_successful_tasks": True,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(1, settings.task_time_limit - 30),
        "worker_soft_shutdown_timeout": 60.0,
        "result_chord_join_timeout": 60.0,
        "result_expires": settings.run_ttl,
        "result_chord_expires": float(settings.run_ttl),
        # Events for Flower: sent, started, and the task's arguments in its record.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "result_extended": True,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],  # type: ignore[no-untyped-call]
        "task_default_queue": "align",
        "task_default_priority": DEFAULT_PRIORITY,
        "task_routes": {
            tasks.ALIGN: {"queue": "align"},
            tasks.VALIDATE: {"queue": "validate"},
            tasks.CHUNK_DONE: {"queue": "report"},
            tasks.CHUNK_FAILED: {"queue": "report"},
        },
        "worker_hijack_root_logger": False,
        "broker_channel_error_retry": True,
    }


def _tls(url: str) -> bool:
    return url.lower().startswith("rediss://")


def _backend_url(url: str) -> str:
    """Celery's Redis result backend refuses a rediss:// URL that does not say how to check
    certificates: require them unless the URL says otherwise."""
    if not _tls(url) or "ssl_cert_reqs=" in url:
        return url
    return url + ("&" if "?" in url else "?") + "ssl_cert_reqs=required"


_from_environment: Celery | None = None


def __getattr__(name: str) -> Any:
    """`celery -A palign.distributed.app ...`: Celery's own command line is an entry point
    too; it gets an app built from the environment when it first asks for one."""
    global _from_environment
    if name != "app":
        raise AttributeError(name)
    if _from_environment is None:
        _from_environment = make_app(Settings.load(distributed=True))
    return _from_environment
