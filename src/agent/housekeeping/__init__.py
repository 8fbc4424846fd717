"""Housekeeping's pure logic: what the pruner deletes, how big a batch is, what retention keeps.

Expiry convention (everywhere: sessions, verifications, API keys, configured tables): a row is
expired when its expiry is strictly before the statement's `now()` minus the grace period. A
row expiring exactly now is still valid, as in Better-Auth's `expiresAt < now` check and the
plain `DELETE ... WHERE expires_at < now()` this replaces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.prune_targets import PruneTarget

DAY_S = 86400


SESSION_TARGETS = (
    PruneTarget(table="sessions"),
    PruneTarget(table="session"),
    PruneTarget(table="verification"),
)


def prune_targets(extra: Iterable[PruneTarget]) -> list[PruneTarget]:
    """The built-in session tables plus `extra`; an extra entry for a built-in table replaces it."""
    targets = {target.table: target for target in SESSION_TARGETS}
    targets.update({target.table: target for target in extra})
    return list(targets.values())


def log_targets(retention_days: Mapping[str, int | None]) -> list[PruneTarget]:
    """Row-by-row retention of log tables, as prune targets: only those with a window set."""
    return [
        PruneTarget(table=table, column="created_at", grace_s=days * DAY_S)
        for table, days in retention_days.items()
        if days is not None
    ]


def cutoffs(
    retention_days: Mapping[str, int | None], now: dt.datetime
) -> dict[str, dt.datetime | None]:
    """The moment before which each series' data goes; None keeps it all."""
    return {
        table: None if days is None else now - dt.timedelta(days=days)
        for table, days in retention_days.items()
    }


@dataclass
class BatchSizer:
    """Batch sizes that keep each delete statement near `target_s`.

    Starts small, doubles while statements are quick, and shrinks in proportion when one is
    slow, so a cold cache or a busy server costs short statements rather than long locks.
    """

    largest: int
    target_s: float
    smallest: int = 10
    size: int = 0

    def __post_init__(self) -> None:
        self.size = self.size or min(self.largest, 500)

    def after(self, elapsed_s: float) -> int:
        """The next batch size, given how long the last batch took."""
        if elapsed_s > self.target_s:
            scaled = int(self.size * self.target_s / elapsed_s)
        elif elapsed_s < self.target_s / 2:
            scaled = self.size * 2
        else:
            scaled = self.size
        self.size = max(self.smallest, min(self.largest, scaled))
        return self.size


@dataclass
class Tally:
    """What a pruning run did so far: rows deleted per table and its longest statement."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_statement_ms: float = 0.0
    complete: bool = True

    def add(self, table: str, deleted: int, elapsed_s: float) -> None:
        """Count one batch."""
        self.deleted[table] = self.deleted.get(table, 0) + deleted
        self.batches += 1
        self.longest_statement_ms = max(self.longest_statement_ms, elapsed_s * 1000)

    def summary(self) -> dict[str, object]:
        """Plain JSON for a task result or progress state."""
        return {
            "deleted": dict(self.deleted),
            "total": sum(self.deleted.values()),
            "batches": self.batches,
            "longest_statement_ms": round(self.longest_statement_ms, 1),
            "complete": self.complete,
        }


def prune_audit(
    tally: Tally, targets: Iterable[PruneTarget], started: dt.datetime, finished: dt.datetime
) -> dict[str, object]:
    """A prune run as one audit row's `changes`: per table, rows deleted and the window.

    The window is the expiry cut-off the run used: rows that expired before `started`
    minus the table's grace period.
    """
    tables = {
        target.table: {
            "rows": tally.deleted.get(target.table, 0),
            "column": target.column,
            "expired_before": (started - dt.timedelta(seconds=target.grace_s)).isoformat(),
        }
        for target in targets
    }
    return {
        "tables": tables,
        "total": sum(tally.deleted.values()),
        "complete": tally.complete,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
    }


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (same in every process)."""
    digest = hashlib.blake2b(f"infra-agent:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def render_plan(plan: Mapping[str, object]) -> str:
    """A dry run's plan as an operator reads it: one line per table."""
    lines = ["would delete (expired rows):"]
    lines += [f"  {table:<24} {count:>10}" for table, count in _items(plan["sessions"])]
    lines.append(f"would deactivate (expired API keys): {plan['api_keys']}")
    lines.append("would drop (partitions or chunks past retention):")
    lines += [
        f"  {table:<24} {len(names):>10}  {' '.join(names)}".rstrip()
        for table, names in _items(plan["series"])
    ]
    lines.append("would delete (log rows past retention; off unless configured):")
    lines += [f"  {table:<24} {count:>10}" for table, count in _items(plan["logs"])]
    return "\n".join(lines)


def _items(value: object) -> list[tuple[str, Any]]:
    assert isinstance(value, Mapping)
    return sorted(value.items())
