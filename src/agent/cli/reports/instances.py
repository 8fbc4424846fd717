"""`infra-agent instances list` and `show` as plain text.

Rows are written by tenants: every value is made printable before it reaches a terminal
(no escape sequences), documents are read defensively, and secret settings are masked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent.cli.reports.plugins import age
from agent.core.credentials import PREFIXES
from agent.probes import secret_fields

COLUMNS = ("id", "name", "type", "target", "status", "checked", "error", "latency", "up 24h")
MAX_CELL = 60
MASK = "***"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SECRET_NAME = re.compile(r"(?i)password|passwd|secret|token|api[_-]?key|authorization|private")


def printable(value: object, limit: int | None = MAX_CELL) -> str:
    """`value` as text safe for a terminal, clipped to `limit` characters."""
    text = _UNPRINTABLE.sub("?", "" if value is None else str(value))
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def render_list(rows: Sequence[Any], now: dt.datetime) -> str:
    """One line per instance under a header; times as ages, uptime from the history."""
    cells = [COLUMNS, *(_cells(row, now) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    if not rows:
        lines.append("(no instances: add one with `infra-agent instances add`)")
    return "\n".join(line.rstrip() for line in lines)


def _cells(row: Any, now: dt.datetime) -> tuple[str, ...]:
    instance = row.InfrastructureInstance
    check = last_check(instance.health_status)
    latency = check.get("latency_ms")
    return (
        str(instance.id),
        printable(instance.name),
        printable(instance.connection_type),
        printable(target(instance.host, instance.port)),
        printable(instance.status or "unknown"),
        age(instance.last_health_check, now),
        printable(check.get("error_class") or ""),
        f"{latency:.1f} ms" if isinstance(latency, int | float) else "-",
        uptime(row.up, row.checks),
    )


def target(host: str | None, port: int | None) -> str:
    """`host:port`, or the host alone."""
    return f"{host}:{port}" if port else str(host or "")


def last_check(health_status: object) -> Mapping[str, Any]:
    """The last probe result in a `health_status` document, or {} when it holds none."""
    check = health_status.get("check") if isinstance(health_status, Mapping) else None
    return check if isinstance(check, Mapping) else {}


def uptime(up: int | None, checks: int | None) -> str:
    """The share of checks that found the instance up, e.g. `99.3% of 1440`."""
    if not checks:
        return "-"
    return f"{100.0 * (up or 0) / checks:.1f}% of {checks}"


def masked(config: object, secret: Sequence[str]) -> object:
    """`config` with secret values masked: the type's secret fields and secret-looking keys.

    An `env:` or `file:` reference names where a secret is, so it is shown as it is.
    """
    if isinstance(config, Mapping):
        return {key: _masked_item(key, value, secret) for key, value in config.items()}
    if isinstance(config, list):
        return [masked(value, ()) for value in config]
    return config


def _masked_item(key: object, value: object, secret: Sequence[str]) -> object:
    if key in secret or _SECRET_NAME.search(str(key)):
        return _mask(value)
    return masked(value, ())


def _mask(value: object) -> str:
    if isinstance(value, str) and value.startswith(PREFIXES) and not value.startswith("enc:"):
        return value
    return "enc:" + MASK if isinstance(value, str) and value.startswith("enc:") else MASK


def render_show(
    instance: Any, host_key: str | None, history: Sequence[Any], now: dt.datetime
) -> str:
    """An instance, its settings (secrets masked), its check document and recent history."""
    secret = secret_fields(instance.connection_type)
    lines = [
        f"{printable(instance.name, None)} ({instance.id})",
        f"  type:       {printable(instance.connection_type)} ({printable(instance.type)})",
        f"  target:     {printable(target(instance.host, instance.port), None)}",
        f"  tags:       {printable(', '.join(map(str, instance.tags or ())), None) or '-'}",
        f"  status:     {printable(instance.status or 'unknown')}",
        f"  checked:    {age(instance.last_health_check, now)}",
    ]
    if instance.deleted_at is not None:
        lines.append(f"  removed:    {instance.deleted_at.isoformat()}")
    if host_key:
        lines.append(f"  host key:   {printable(host_key, None)}")
    lines += ["  settings:", _indented(masked(instance.connection_config or {}, secret))]
    lines += ["  check document:", _indented(instance.health_status or {})]
    return "\n".join([*lines, "  recent checks:", *render_history(history, now)])


def _indented(document: object) -> str:
    # json.dumps escapes control characters, so the document is printable as it comes.
    text = json.dumps(document, indent=2, sort_keys=True, default=str)
    return "\n".join(f"    {line}" for line in text.splitlines())


def render_history(history: Sequence[Any], now: dt.datetime) -> list[str]:
    """One line per history row, newest first."""
    if not history:
        return ["    (none yet)"]
    return [
        f"    {row.time.isoformat(timespec='seconds')} ({age(row.time, now)})  "
        f"{printable(row.status)}  "
        + (f"{row.latency_ms:.1f} ms" if row.latency_ms is not None else "-")
        + (f"  [{printable(row.error_class)}]" if row.error_class else "")
        + (f"  {printable(row.message, 120)}" if row.message else "")
        for row in history
    ]
