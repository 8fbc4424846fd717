"""The Celery app: `celery -A agent worker|beat|flower` finds it here.

Delivery is at-least-once: late acks, reject on worker loss, prefetch 1. Time limits stay
below the broker's visibility timeout (checked at start-up), so a running task is never
handed to a second worker. Only JSON travels: pickle is refused.
"""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import (
    beat_init,
    worker_before_create_process,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from kombu import Exchange, Queue

from agent.connections import sshpool
from agent.core.settings import (
    DEFAULT_QUEUE,
    JOB_QUEUES,
    QUEUES,
    ConfigError,
    Settings,
    check_time_limits,
    get_settings,
)
from agent.runtime import flower, key_check, observability, preload
from agent.runtime.schedule import beat_entries

TASK_MODULES = [
    "tasks.system",
    "tasks.health",
    "tasks.housekeeping",
    "tasks.discovery",
    "tasks.benchmarks",
    "tasks.plugins",
]


UNIX_SOCKET_SCHEMES = ("redis+socket", "socket", "unix")
# What the app holds when AGENT_BROKER_URL is unset: an in-process transport that reaches no
# server, so a missed guard can never publish into whatever listens on localhost:5672.
UNCONFIGURED_BROKER = "memory://unconfigured"


def is_unix_socket(url: str | None) -> bool:
    """Whether a Redis URL names a Unix socket (`redis+socket:///path`), not a TCP address."""
    return bool(url) and str(url).partition("://")[0].lower() in UNIX_SOCKET_SCHEMES


def broker_transport_options(settings: Settings, url: str | None = None) -> dict[str, object]:
    """Socket timeouts, keepalive and the visibility timeout, for broker and results alike.

    TCP keepalive exists only for TCP: redis-py's Unix socket connection refuses the option.
    """
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        # Kombu looks for messages a dead worker left unacknowledged every interval times
        # throttle seconds (100 s by default); scanning every interval instead bounds the
        # redelivery after a SIGKILL to the visibility timeout plus a tenth of it (at most 10 s).
        "unacked_restore_interval": min(10, max(1, settings.visibility_timeout_s // 10)),
        "unacked_restore_throttle": 1,
        "socket_timeout": settings.broker_socket_timeout_s,
        "socket_connect_timeout": settings.broker_socket_timeout_s,
        "health_check_interval": 25,
        "retry_on_timeout": True,
        "socket_keepalive": not is_unix_socket(url),
    }


def result_backend(settings: Settings) -> str | None:
    """AGENT_RESULT_BACKEND, else the broker if it is Redis (a broker that can keep results)."""
    if settings.result_backend:
        return settings.result_backend
    broker = settings.broker_url
    return broker if broker and broker.partition("://")[0].startswith(("redis", "rediss")) else None


def redis_backend_options(settings: Settings, backend: str | None) -> dict[str, object]:
    """The Redis result backend's socket options, fitted to its transport."""
    return {
        "redis_socket_timeout": settings.broker_socket_timeout_s,
        "redis_socket_connect_timeout": settings.broker_socket_timeout_s,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 25,
        # Celery passes it on only when true; a Unix socket connection refuses it.
        "redis_socket_keepalive": not is_unix_socket(backend),
    }


def celery_config(settings: Settings) -> dict[str, object]:
    """The Celery configuration the agent always runs with."""
    broker, backend = settings.broker_url, result_backend(settings)
    return {
        # Never Celery's default (amqp://guest@localhost): with no broker, nothing starts.
        "broker_url": broker or UNCONFIGURED_BROKER,
        "result_backend": backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "broker_transport_options": broker_transport_options(settings, broker),
        "result_backend_transport_options": broker_transport_options(settings, backend),
        **redis_backend_options(settings, backend),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_heartbeat": 30,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "result_expires": settings.result_expires_s,
        "result_extended": True,
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {f"agent.{family}.*": {"queue": family} for family in JOB_QUEUES},
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": beat_entries(settings),
        # Any number of beats may run; only the holder of the leader lease dispatches.
        "beat_scheduler": "agent.runtime.beat:LeaderScheduler",
    }


def check_task_limits(app: Celery, worker: object = None) -> None:
    """Refuse to start when any task's time limit would outlive the visibility timeout.

    `worker` is the starting WorkController, whose limits may come from `--time-limit`.
    """
    visibility = app.conf.broker_transport_options.get("visibility_timeout", 3600)
    check_time_limits(app.conf.task_soft_time_limit, app.conf.task_time_limit, visibility)
    soft, hard = getattr(worker, "soft_time_limit", None), getattr(worker, "time_limit", None)
    check_time_limits(soft, hard, visibility)
    for task in app.tasks.values():
        check_time_limits(task.soft_time_limit, task.time_limit, visibility)


def create_app(settings: Settings | None = None, *, current: bool = False) -> Celery:
    """A configured Celery app for `settings` (the environment's by default).

    The tasks are `shared_task`s: they send through the current app. Only the process's own
    app (`app` below) becomes current; another one made here (a test's, a tool's) never
    takes the tasks away from it.
    """
    celery_app = Celery(
        "agent", include=TASK_MODULES, task_cls="tasks.common:AgentTask", set_as_current=current
    )
    celery_app.config_from_object(celery_config(settings or get_settings()))
    return celery_app


def require_broker(celery_app: Celery) -> None:
    """Stop a worker, beat or Flower that has no broker, rather than use Celery's default."""
    if celery_app.conf.broker_url in (None, UNCONFIGURED_BROKER):
        raise SystemExit(
            "infra-agent: AGENT_BROKER_URL is not set and no agent runs from the data "
            "directory; refusing to start (run `infra-agent up` for the embedded default)"
        )


app = create_app(current=True)
app.set_default()  # threads that never made an app current (the event loop's, a pool's) too
observability.install(app)
flower.require_auth(sys.argv)
if flower.is_flower_command(sys.argv):
    require_broker(app)


@beat_init.connect
def _on_beat_init(**_: object) -> None:
    require_broker(app)


@worker_init.connect
def _on_worker_init(sender: object = None, **_: object) -> None:
    require_broker(app)
    settings = get_settings()
    try:
        check_task_limits(app, sender)
        key_check.check_key_at_start(settings)
    except ConfigError as exc:
        # Celery logs and swallows an Exception from a signal handler; SystemExit stops it.
        raise SystemExit(f"infra-agent: {exc}") from None
    sshpool.default_pool.max_size = settings.ssh_pool_size
    sshpool.default_pool.idle_s = settings.ssh_idle_s
    sshpool.default_pool.max_age_s = settings.ssh_max_reuse_s
    preload.preload(app.amqp.queues.consume_from)


@worker_before_create_process.connect
def _on_worker_before_create_process(**_: object) -> None:
    # In the parent, before each fork: the child shares what the parent froze.
    preload.freeze_before_fork()


@worker_shutdown.connect
def _on_worker_shutdown(**_: object) -> None:
    sshpool.clear_default_pool()
    _close_event_loop()


@worker_process_shutdown.connect
def _on_worker_process_shutdown(**_: object) -> None:
    _close_event_loop()


def _close_event_loop() -> None:
    # The HTTP-family clients live on the process's loop: close them, not leave them to GC.
    from agent.plugins.client import close_shared_pool
    from agent.probes.aio import close_process_loop

    close_shared_pool()
    close_process_loop()


@worker_process_init.connect
def _on_worker_process_init(**_: object) -> None:
    # A forked pool child must not share the parent's database sockets.
    from models.session import dispose_engine

    dispose_engine(close=False)
