"""Plain-text renderings of ingest results and alerts for the command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def render_result(name: str, result: dict[str, Any]) -> str:
    """One ingest's outcome: counts, then each quarantine reason with its first rows."""
    if result["status"] == "rejected":
        return f"{name}: rejected: {result['error']}"
    lines = [
        f"{name}: {result['format']}: {result['accepted']} accepted, "
        f"{result['duplicate']} duplicate, {result['quarantined']} quarantined, "
        f"{result['skipped']} skipped, {result['alerts']} alert(s)"
    ]
    for reason in result["reasons"]:
        rows = ", ".join(str(n) for n in reason["examples"])
        lines.append(f"  quarantined {reason['rows']}: {reason['reason']} (rows {rows}, ...)")
    return "\n".join(lines)


def render_alerts(alerts: Sequence[dict[str, Any]]) -> str:
    """Open alerts as a table, newest first."""
    if not alerts:
        return "no open alerts"
    header = ("when", "package", "benchmark", "metric", "testbed", "value", "baseline", "change")
    rows = [header] + [_row(a) for a in alerts]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _row(alert: dict[str, Any]) -> tuple[str, ...]:
    return (
        alert["timestamp"][:19],
        alert["package_name"],
        alert["benchmark"],
        f"{alert['metric']} ({alert['unit']})",
        alert["testbed"] or "-",
        f"{alert['value']:.4g}",
        f"{alert['baseline']:.4g}",
        f"{alert['change']:+.1%}" if alert["change"] is not None else "n/a",
    )
