"""Where metrics, log format and liveness hook into Celery: its signals and one bootstep.

Everything a worker tells the outside about itself starts here, so no task or job module
has to know about it: a task's log fields are set as it starts, its metrics are read from
its result as it ends, and the heartbeat runs inside the consumer.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_init,
    task_postrun,
    task_prerun,
    task_success,
    worker_init,
    worker_shutdown,
)
from celery.utils.log import get_multiprocessing_logger

from agent.core import logs
from agent.core.settings import Settings, get_settings
from agent.runtime import liveness, metrics
from agent.runtime.schedule import beat_entries

_serving: dict[str, Any] = {}


def install(app: Celery) -> None:
    """Add the liveness heartbeat to the consumers of `app`'s workers."""
    app.steps["consumer"].add(liveness.Heartbeat)


@celeryd_init.connect
def _quiet_when_json(instance: Any = None, **_: object) -> None:
    # The start-up banner is plain text printed to stdout: not one JSON object per line.
    if instance is not None and get_settings().log_format == "json":
        instance.quiet = True
        logs.json_from_start()


@after_setup_logger.connect
def _format_root(logger: logging.Logger, **_: object) -> None:
    log_format = get_settings().log_format
    logs.use_format(logger, log_format)
    if (pool_logger := get_multiprocessing_logger()) is not None:
        logs.use_format(pool_logger, log_format)


@after_setup_task_logger.connect
def _format_tasks(logger: logging.Logger, **_: object) -> None:
    logs.use_format(logger, get_settings().log_format)


@task_prerun.connect
def _task_started(task_id: str, task: Any, **_: object) -> None:
    logs.start_task(task_id, task.name)
    metrics.task_started(task_id)


@task_postrun.connect
def _task_ended(task_id: str, task: Any, state: str | None = None, **_: object) -> None:
    metrics.task_finished(task_id, task.name, state)
    logs.end_task()


@task_success.connect
def _task_succeeded(sender: Any, result: object = None, **_: object) -> None:
    if metrics.active() is not None and sender.name in metrics.RECORDERS:
        metrics.task_succeeded(sender.name, result, arguments_of(sender))


def arguments_of(task: Any) -> dict[str, Any]:
    """The running task's arguments by name (its request's args and kwargs)."""
    request = task.request
    try:
        bound = inspect.signature(task.run).bind_partial(
            *(request.args or ()), **(request.kwargs or {})
        )
    except TypeError:
        return {}
    return dict(bound.arguments)


@worker_init.connect
def _start_metrics(**_: object) -> None:
    settings = get_settings()
    if settings.metrics_port:
        directory = metrics.new_directory()
        metrics.record_intervals(metrics.enable(directory), sweep_intervals(settings))
        _serving["directory"] = directory
        _serving["stop"] = metrics.serve(directory, settings.metrics_address, settings.metrics_port)


@worker_shutdown.connect
def _stop_metrics(**_: object) -> None:
    stop: Callable[[], None] | None = _serving.pop("stop", None)
    directory: Path | None = _serving.pop("directory", None)
    if stop is not None:
        stop()
    if directory is not None:
        metrics.disable()
        metrics.remove_directory(directory)


def sweep_intervals(settings: Settings) -> dict[str, float]:
    """Each periodic task's interval, as beat runs it."""
    return {entry["task"]: float(entry["schedule"]) for entry in beat_entries(settings).values()}
