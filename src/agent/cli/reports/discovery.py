"""The discovery result as an operator reads it on a terminal: counts, then the services."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

COUNTS = ("seen", "new", "updated", "missing", "matched", "assigned", "kept_by_people")
COLUMNS = ("NAME", "TYPE", "STATUS", "ENDPOINTS", "PLUGIN", "DISCOVERED", "LAST SEEN")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell."""
    cells = [list(map(str, header)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _endpoints(endpoints: Sequence[Mapping[str, Any]] | None) -> str:
    shown = [f"{e.get('host')}:{e.get('port')}" for e in (endpoints or ())[:3]]
    more = len(endpoints or ()) - len(shown)
    return ", ".join(shown) + (f" +{more}" if more > 0 else "") or "-"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _row(service: Any, slug: str | None) -> tuple[str, ...]:
    return (
        service.name,
        service.type,
        service.status,
        _endpoints(service.endpoints),
        slug or "-",
        _when(service.discovered_at),
        _when(service.last_seen),
    )


def render(summary: Mapping[str, Any], rows: Iterable[Any]) -> str:
    """The summary of `discover_now` and the instance's services (rows of `instance_services`)."""
    head = f"{summary.get('name', '')} ({summary['instance_id']}): {summary['status']}"
    outcome = summary.get("discovery") or {}
    lines = [head.strip()]
    if outcome.get("message") or summary.get("message"):
        lines.append(f"  {outcome.get('message') or summary.get('message')}")
    if outcome:
        lines += ["", table(COUNTS, [[summary.get(k, 0) for k in COUNTS]])]
    services = [_row(service, slug) for service, slug in rows]
    lines += ["", table(COLUMNS, services) if services else "no services recorded"]
    return "\n".join(lines)
