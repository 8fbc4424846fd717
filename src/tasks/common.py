"""What every task shares: retries on database and broker errors only, and input checks."""

from __future__ import annotations

import uuid
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

# A database or broker that went away is worth waiting for; anything else is a bug or bad
# input, and retrying it would only repeat the failure.
RETRY_ON_INFRASTRUCTURE: dict[str, Any] = {
    "autoretry_for": (OperationalError, InterfaceError, BrokerError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


class TaskInputError(ValueError):
    """Arguments a task refuses; the message says what was expected."""


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
