"""Validation of parsed rows into storable points, or a reason to quarantine them.

A point is a plain tuple in `POINT_COLUMNS` order, so that millions of them can be copied
to the database without building an object each. A reason is a short, fixed phrase (values
are left out) so that reasons can be counted across a run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

from agent.benchmarks.units import UNITS

POINT_COLUMNS = (
    "timestamp",
    "package_name",
    "version",
    "benchmark",
    "metric",
    "value",
    "unit",
    "run_id",
    "branch",
    "commit_sha",
    "testbed",
    "parameters",
    "source",
)

# The widths of the `benchmarks` columns: a longer value is refused here, not by the database
# in the middle of a batch.
MAX_LENGTH = {
    "package": 255,
    "version": 63,
    "benchmark": 255,
    "metric": 100,
    "run_id": 128,
    "branch": 255,
    "commit": 64,
    "testbed": 255,
}
OPTIONAL_TEXT = ("version", "branch", "commit")
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Point = tuple[Any, ...]


class Invalid(ValueError):
    """A row that cannot be stored; the message is the quarantine reason."""


class Validator:
    """Turns parsed rows into points; `defaults` fill in what a row lacks (never override)."""

    def __init__(self, defaults: Mapping[str, Any], source: str, latest: dt.datetime) -> None:
        self.defaults = dict(defaults)
        self.source = source
        self.latest = latest
        self._last_stamp: tuple[Any, dt.datetime] | None = None

    def point(self, fields: Mapping[str, Any]) -> Point:
        """The point for `fields`, or Invalid with the reason."""
        get = self._getter(fields)
        value, unit = _value(get("value")), _unit(get("unit"))
        if value < 0 and UNITS[unit].nonnegative:
            reason = "negative duration" if UNITS[unit].family == "time" else "negative value"
            raise Invalid(reason)
        optional = [_text(get(name), name, required=False) for name in OPTIONAL_TEXT]
        return (
            self._timestamp(get("timestamp")),
            _text(get("package"), "package"),
            optional[0],
            _text(get("benchmark"), "benchmark"),
            _text(get("metric"), "metric"),
            value,
            unit,
            _text(get("run_id"), "run_id"),
            optional[1],
            optional[2],
            _text(get("testbed"), "testbed", required=False) or "",
            _parameters(get("parameters")),
            self.source,
        )

    def _getter(self, fields: Mapping[str, Any]) -> Any:
        defaults = self.defaults

        def get(name: str) -> Any:
            value = fields.get(name)
            return defaults.get(name) if value is None or value == "" else value

        return get

    def _timestamp(self, raw: Any) -> dt.datetime:
        # Rows of one run usually share one timestamp: parse it once.
        if self._last_stamp is not None and self._last_stamp[0] == raw:
            return self._last_stamp[1]
        moment = _moment(raw)
        if moment > self.latest:
            raise Invalid("timestamp too far in the future")
        if moment < EARLIEST:
            raise Invalid("timestamp before 1970")
        self._last_stamp = (raw, moment)
        return moment


def _text(raw: Any, name: str, required: bool = True) -> str | None:
    if raw is None or raw == "":
        if required:
            raise Invalid(f"missing field: {name}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise Invalid(f"{name} must be text")
    text = raw if isinstance(raw, str) else str(raw)
    if len(text) > MAX_LENGTH[name]:
        raise Invalid(f"{name} longer than {MAX_LENGTH[name]} characters")
    if not text.isascii() and not _encodable(text):
        raise Invalid(f"{name} is not valid Unicode")
    if "\x00" in text:
        raise Invalid(f"{name} contains a NUL character")
    return text


def storable(raw: Any, name: str) -> str | None:
    """`raw` as text for the column `name`, or None when it could not be stored."""
    try:
        return _text(raw, name, required=False)
    except Invalid:
        return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _value(raw: Any) -> float:
    if raw is None or raw == "":
        raise Invalid("missing field: value")
    if isinstance(raw, bool):
        raise Invalid("value is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise Invalid("value is not a number") from None
    if not math.isfinite(value):
        raise Invalid("value is not a finite number")
    return value


def _unit(raw: Any) -> str:
    if raw is None or raw == "":
        raise Invalid("missing field: unit")
    if not isinstance(raw, str) or raw not in UNITS:  # a list or a mapping is no unit either
        raise Invalid("unknown unit")
    return raw


def _moment(raw: Any) -> dt.datetime:
    """A timezone-aware UTC moment from ISO 8601 text, epoch seconds or a datetime."""
    if raw is None or raw == "":
        raise Invalid("missing field: timestamp")
    try:
        moment = _parse_moment(raw)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Invalid("timestamp is not ISO 8601 or epoch seconds") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _parse_moment(raw: Any) -> dt.datetime:
    if isinstance(raw, dt.datetime):
        return raw
    if isinstance(raw, bool):
        raise TypeError(raw)
    if isinstance(raw, int | float):
        return dt.datetime.fromtimestamp(raw, dt.UTC)
    if isinstance(raw, str):
        return dt.datetime.fromisoformat(raw)
    raise TypeError(raw)


def _parameters(raw: Any) -> str | None:
    """Parameters as JSON object text (the column is jsonb, which has no NaN)."""
    if raw is None or raw == "" or raw == {}:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise Invalid("parameters are not JSON") from None
        except RecursionError:  # a CSV cell is not depth-checked like a JSON payload
            raise Invalid("parameters are nested too deeply") from None
    if not isinstance(raw, dict):
        raise Invalid("parameters must be a JSON object")
    try:
        text = json.dumps(
            raw, allow_nan=False, ensure_ascii=False, separators=(",", ":"), default=str
        )
    except ValueError:
        raise Invalid("parameters contain a non-finite number") from None
    if "\\u0000" in text or not _encodable(text):
        raise Invalid("parameters are not valid Unicode")
    return text
