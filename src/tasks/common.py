"""What every task shares: retries on database and broker errors only, and input checks."""

from __future__ import annotations

import datetime as dt
import inspect
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

from agent.core.credentials import SecretResolver
from agent.core.secret_scope import SecretScope
from agent.core.settings import Settings
from models import queries
from models.session import session_scope

# A database or broker that went away is worth waiting for; anything else is a bug or bad
# input, and retrying it would only repeat the failure.
RETRY_ON_INFRASTRUCTURE: dict[str, Any] = {
    "autoretry_for": (OperationalError, InterfaceError, BrokerError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


PROGRESS_EVERY_S = 0.5

Progress = Callable[[dict[str, Any]], None]


class TaskInputError(ValueError):
    """Arguments a task refuses; the message says what was expected."""


class AgentTask(Task):
    """The agent's task class: arguments the function does not take are a TaskInputError.

    Tasks arrive by name from other apps, so a missing, extra or misnamed argument is bad
    input like any other, not a Python TypeError about `self` and positional counts.
    """

    # Refused input is the caller's mistake: logged in one line, without a traceback.
    throws = (TaskInputError,)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task, once its arguments are known to fit its function."""
        try:
            inspect.signature(self.run).bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskInputError(f"{self.name}: {exc}"[:200]) from None
        return super().__call__(*args, **kwargs)


def database_now() -> dt.datetime:
    """The database's clock, read in a transaction of its own: the time every job goes by."""
    with session_scope() as session:
        return queries.database_time(session)


def as_uuid(value: object, name: str = "instance_id") -> uuid.UUID:
    """`value` as a UUID, or a TaskInputError that names the argument."""
    if not isinstance(value, str):
        raise TaskInputError(f"{name} must be a UUID string, not {type(value).__name__}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise TaskInputError(f"{name} must be a UUID string") from None


def as_uuids(values: object, name: str = "instance_ids", limit: int = 10_000) -> list[uuid.UUID]:
    """A list of UUID strings as UUIDs, or a TaskInputError."""
    if not isinstance(values, list) or len(values) > limit:
        raise TaskInputError(f"{name} must be a list of at most {limit} UUID strings")
    return list(dict.fromkeys(as_uuid(value, name) for value in values))


def as_text(value: object, name: str, limit: int | None = None) -> str:
    """`value` as text the database can store (no NUL, valid Unicode, at most `limit` long)."""
    if not isinstance(value, str) or "\x00" in value:
        raise TaskInputError(f"{name} must be text, without NUL characters")
    if limit is not None and len(value) > limit:
        raise TaskInputError(f"{name} must be at most {limit} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise TaskInputError(f"{name} is not valid Unicode (lone surrogates)") from None
    return value


def batch_deadline_s(soft_time_limit_s: float) -> float:
    """How long a batch's checks may run: well below the soft limit, leaving time to write.

    A probe still running then is recorded as a TIMEOUT and the rest of the batch is written;
    no probe can hold the task until its hard limit kills the pool process.
    """
    return soft_time_limit_s * 0.8


def progress_of(task: Any) -> Progress:
    """A callback that sets the task's state to PROGRESS with a meta, at most every half second.

    The task id is read now: the callback may be called from a batch's threads, which do not
    see the task's request.
    """
    task_id, lock, last = task.request.id, threading.Lock(), [0.0]

    def report(meta: dict[str, Any]) -> None:
        with lock:
            now = time.monotonic()
            if not task_id or now - last[0] < PROGRESS_EVERY_S:
                return
            last[0] = now
        task.update_state(task_id=task_id, state="PROGRESS", meta=meta)

    return report


def quietly(_: dict[str, Any]) -> None:
    """A progress callback for callers that do not watch progress."""


def counter(report: Progress, total: int, unit: str) -> Callable[[], None]:
    """A thread-safe callback to call once per item done; reports `done` of `total` `unit`s."""
    done, lock = [0], threading.Lock()
    report({"done": 0, "total": total, "unit": unit})

    def tick() -> None:
        with lock:
            done[0] += 1
            meta = {"done": done[0], "total": total, "unit": unit}
        report(meta)

    return tick


def resolver_for(settings: Settings) -> SecretResolver:
    """The secret resolver: AGENT_SECRET_KEY (and previous keys), in the operator's scope."""
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    previous = [k.get_secret_value() for k in settings.secret_previous_keys]
    return SecretResolver(key, SecretScope.from_settings(settings), previous)
