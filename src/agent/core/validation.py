"""Validation errors told without the values that failed: a rejected value may be a secret."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError


def problems(exc: ValidationError, name: Callable[[str], str] = str) -> str:
    """What is wrong, one `field: reason` per error; `name` renders the field's dotted path."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        reason = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{name(where)}: {reason}" if where else reason)
    return "; ".join(parts)
