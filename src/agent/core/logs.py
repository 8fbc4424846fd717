"""Log lines as text or as one JSON object each, with the task and instance they belong to.

The fields of the work in hand (task id and name, the instance being checked) live in a
context variable: set when a task starts, extended where a batch hands an instance to a
thread (`agent.core.concurrency.each`), and read by the JSON formatter for every line.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from agent.core.results import scrub

_fields: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "agent_log_fields", default=MappingProxyType({})
)


def fields() -> Mapping[str, str]:
    """The fields every line logged here and now carries."""
    return _fields.get()


@contextmanager
def bound(**extra: str) -> Iterator[None]:
    """Add `extra` to the fields of every line logged inside the block."""
    token = _fields.set({**_fields.get(), **extra})
    try:
        yield
    finally:
        _fields.reset(token)


def start_task(task_id: str, task_name: str) -> None:
    """The fields of a task that starts in this thread (Celery's task_prerun)."""
    _fields.set({"task_id": task_id, "task_name": task_name})


def end_task() -> None:
    """Forget the finished task's fields (Celery's task_postrun)."""
    _fields.set({})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message and the bound fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, secrets that look like `password=...` scrubbed."""
        line: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage(), max_chars=None),
            **_task_of(record),
            **fields(),
        }
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info), max_chars=None)
        return json.dumps(line, default=str)


def _task_of(record: logging.LogRecord) -> dict[str, str]:
    """Celery's own lines about a task (received, succeeded) name it in `record.data`."""
    data = getattr(record, "data", None)
    if isinstance(data, dict) and "id" in data and "name" in data:
        return {"task_id": str(data["id"]), "task_name": str(data["name"])}
    return {}


def json_from_start() -> None:
    """JSON lines on stderr before Celery sets up logging, warnings included.

    Celery warns (running as root, say) before it configures logging; it then keeps a root
    logger that already has a handler, so this one stays.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    logging.captureWarnings(True)


def use_format(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of `logger` the JSON formatter when the format is `json`."""
    if log_format != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
