"""`infra-agent plugins`: plugin health as a plain-text table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

COLUMNS = ("kind", "name", "scope", "status", "health", "since", "checked", "tools", "reason")
MAX_REASON = 60


def render(rows: Sequence[Any], now: dt.datetime | None = None) -> str:
    """One line per plugin under a header; times as ages ("3m ago")."""
    now = now or dt.datetime.now(dt.UTC)
    cells = [COLUMNS] + [_cells(row, now) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    if not rows:
        lines.append("(no installations or MCP servers)")
    return "\n".join(line.rstrip() for line in lines)


def _cells(row: Any, now: dt.datetime) -> tuple[str, ...]:
    name = f"{row.name} (deprecated)" if row.deprecated else row.name
    reason = (row.reason or "")[:MAX_REASON]
    return (
        "mcp" if row.kind == "mcp_server" else "service",
        name,
        row.scope or "",
        row.status or "",
        row.health_status or "never checked",
        age(row.since, now),
        age(row.last_health_check, now),
        "" if row.tools is None else str(row.tools),
        reason,
    )


def age(moment: dt.datetime | None, now: dt.datetime) -> str:
    """How long ago, in the largest whole unit: `42s ago`, `5m ago`, `3h ago`, `2d ago`."""
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
