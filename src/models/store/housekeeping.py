"""Writes of the housekeeping job: expired rows deleted in batches, expired API keys deactivated.

Table and column names never go from settings into SQL: a prune target is looked up in the
catalog first, and only the names the catalog returns are quoted into statements.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from psycopg.errors import LockNotAvailable
from sqlalchemy import Connection, CursorResult, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from agent.core.prune_targets import PruneTarget
from models.store.health import AGENT_USER_AGENT
from models.timeseries import Series, current_backend, partitions

EXPIRY_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")

_CATALOG = text(
    """
    SELECT n.nspname, c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a
        ON a.attrelid = c.oid AND a.attname = :column AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = current_schema() AND c.relname = :table AND c.relkind IN ('r', 'p')
    """
)


class PruneTargetError(ValueError):
    """A configured prune target that the catalog does not back up; the message says why."""


@dataclass(frozen=True)
class Resolved:
    """A prune target checked against the catalog, with its names ready to quote into SQL."""

    target: PruneTarget
    schema: str
    table: str
    column: str
    column_type: str


def resolve(session: Session, target: PruneTarget) -> Resolved:
    """`target` as the catalog knows it, or a PruneTargetError naming what is wrong."""
    row = session.execute(_CATALOG, {"table": target.table, "column": target.column}).first()
    where = f"prune target {target.table}.{target.column}"
    if row is None:
        raise PruneTargetError(f"{where}: no such table in the current schema")
    schema, table, kind, column, column_type = row
    if kind != "r":
        # ctid is only unique within one table, and partitions have retention instead.
        raise PruneTargetError(f"{where}: a partitioned table is kept by retention, not pruned")
    if current_backend(session.connection(), table) == "timescaledb":
        # Its rows live in chunks: deleting them one by one is what drop_chunks avoids.
        raise PruneTargetError(f"{where}: a hypertable is kept by retention, not pruned")
    if column is None:
        raise PruneTargetError(f"{where}: no such column")
    if column_type not in EXPIRY_TYPES:
        raise PruneTargetError(f"{where}: the column is {column_type}, not a timestamp or date")
    return Resolved(target, schema, table, column, column_type)


def _names(session: Session, resolved: Resolved) -> dict[str, str]:
    quote = session.get_bind().dialect.identifier_preparer.quote_identifier
    return {
        "table": f"{quote(resolved.schema)}.{quote(resolved.table)}",
        "col": quote(resolved.column),
        "type": resolved.column_type,
    }


# A batch deletes one range of the expiry index, [floor, bound), where bound is the expiry
# `limit` rows on (an index-only scan, evaluated once), so a batch never exceeds `limit`.
# Each row is written once, and the planner can visit the heap in physical order, where
# locking rows first writes them twice. The expiry is checked again on the row version
# deleted, so a session extended meanwhile is never deleted. With fewer than `limit` rows
# left the bound is infinity (returned as NULL) and the range takes them all.
_DELETE_RANGE = """
    WITH bound AS (
        SELECT COALESCE((
            SELECT {col} FROM {table}
            WHERE {col} >= CAST(:floor AS {type})
              AND {col} < now() - make_interval(secs => :grace_s)
            ORDER BY {col} OFFSET :limit - 1 LIMIT 1
        ), CAST('infinity' AS {type})) AS expiry
    ), gone AS (
        DELETE FROM {table}
        WHERE {col} >= CAST(:floor AS {type})
          AND {col} < (SELECT expiry FROM bound)
          AND {col} < now() - make_interval(secs => :grace_s)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), NULLIF(expiry, 'infinity') FROM bound
"""

# The fallback: rows locked in the scan with SKIP LOCKED (a locked row is left for the next
# run), then deleted by ctid (a TID scan): they cannot move while this statement holds their
# lock, and a join on the key would let the planner hash the whole table for every batch.
_DELETE_SKIPPING_LOCKED = """
    WITH doomed AS (
        SELECT ctid FROM {table}
        WHERE {col} < now() - make_interval(secs => :grace_s)
          AND {col} >= CAST(:floor AS {type})
        ORDER BY {col}
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM {table}
        WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
          AND {col} < now() - make_interval(secs => :grace_s)
        RETURNING {col} AS expiry
    )
    SELECT count(*), max(expiry) FROM gone
"""

# A login holding a row lock in the range makes the range delete give up quickly instead of
# waiting; so do `limit` rows sharing one expiry (an empty range). Either way that batch
# runs as _DELETE_SKIPPING_LOCKED.
LOCK_TIMEOUT_MS = 50


def delete_expired(
    session: Session, resolved: Resolved, limit: int, floor: Any = "-infinity"
) -> tuple[int, Any]:
    """Delete up to `limit` expired rows whose expiry is at least `floor`, oldest first.

    Returns how many went and where the next batch starts (its `floor`), so that a run walks
    the expiry index forward instead of rescanning the dead rows it left.
    """
    names = _names(session, resolved)
    params = {"grace_s": resolved.target.grace_s, "floor": floor, "limit": limit}
    deleted = _delete_range(session, names, params)
    if deleted is not None:
        return deleted
    session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return tuple(session.execute(text(_DELETE_SKIPPING_LOCKED.format(**names)), params).one())


def _delete_range(
    session: Session, names: dict[str, str], params: dict[str, Any]
) -> tuple[int, Any] | None:
    """The range delete's (count, bound), or None where it cannot make progress."""
    session.execute(text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
    try:
        with session.begin_nested():
            deleted, bound = session.execute(text(_DELETE_RANGE.format(**names)), params).one()
    except OperationalError as error:
        if not isinstance(error.orig, LockNotAvailable):
            raise
        return None
    tied = deleted == 0 and bound is not None
    return None if tied else (deleted, bound)


# When the planner expects at least this share of a table to be expired, a run sweeps the
# heap in physical order (a TID range scan per batch) instead of walking the expiry index:
# with the rows scattered over the heap (sessions extended or created with mixed lifetimes),
# each index range dirties pages all over the table, where a sweep reads and writes each
# page once, in order, as the plain DELETE does. Measured, the sweep also beats the index
# ranges on a heap in expiry order with half of it expired (0.67 against 0.41 of a plain
# DELETE: no bound query per batch). With few rows expired the index ranges read only the
# pages that hold them.
SWEEP_SHARE = 0.1

_STATISTICS = text(
    """
    SELECT c.reltuples, pg_relation_size(c.oid) / current_setting('block_size')::int AS pages
    FROM pg_class AS c WHERE c.oid = CAST(:table AS regclass)
    """
)


@dataclass(frozen=True)
class Sweep:
    """A run in physical order: the table's pages now, and how many expired rows a page holds."""

    pages: int
    expired_per_page: float


def planned_sweep(session: Session, resolved: Resolved) -> Sweep | None:
    """A physical sweep when the planner expects a large expired share, else None.

    A table never analyzed has no estimate and keeps the index ranges.
    """
    names = _names(session, resolved)
    rows, pages = session.execute(_STATISTICS, {"table": names["table"]}).one()
    if rows <= 0 or pages <= 0:
        return None
    expired = _estimated_rows(session, names, resolved.target.grace_s)
    return Sweep(int(pages), expired / pages) if expired >= SWEEP_SHARE * rows else None


def _estimated_rows(session: Session, names: dict[str, str], grace_s: float) -> float:
    # The grace is a validated float, so it is written into the EXPLAINed text as a number.
    sql = (
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {names['table']}"
        f" WHERE {names['col']} < now() - make_interval(secs => {float(grace_s)!r})"
    )
    return session.execute(text(sql)).scalar_one()[0]["Plan"]["Plan Rows"]


# A batch of a sweep: the expired rows of the pages [first, end), read by a TID range scan.
_DELETE_PAGES = """
    DELETE FROM {table}
    WHERE ctid >= CAST(:first AS tid) AND ctid < CAST(:end AS tid)
      AND {col} < now() - make_interval(secs => :grace_s)
"""

# Its fallback when a login holds a row lock in those pages: the locked rows stay.
_DELETE_PAGES_SKIPPING_LOCKED = """
    WITH doomed AS (
        SELECT ctid FROM {table}
        WHERE ctid >= CAST(:first AS tid) AND ctid < CAST(:end AS tid)
          AND {col} < now() - make_interval(secs => :grace_s)
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM {table}
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))
      AND {col} < now() - make_interval(secs => :grace_s)
"""


def delete_expired_pages(session: Session, resolved: Resolved, first: int, end: int) -> int:
    """Delete the expired rows on heap pages [first, end); how many went.

    A row updated meanwhile is judged on its new version, so an extended session stays.
    """
    names = _names(session, resolved)
    params = {"grace_s": resolved.target.grace_s, "first": f"({first},0)", "end": f"({end},0)"}
    session.execute(text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
    try:
        with session.begin_nested():
            return _deleted(session, _DELETE_PAGES.format(**names), params)
    except OperationalError as error:
        if not isinstance(error.orig, LockNotAvailable):
            raise
    session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return _deleted(session, _DELETE_PAGES_SKIPPING_LOCKED.format(**names), params)


def _deleted(session: Session, statement: str, params: dict[str, Any]) -> int:
    """Run a DELETE; the number of rows it deleted."""
    result = session.execute(text(statement), params)
    assert isinstance(result, CursorResult)  # a DML statement's result always is
    return result.rowcount


def count_expired(session: Session, resolved: Resolved) -> int:
    """How many rows of the target are expired now (for a dry run)."""
    names = _names(session, resolved)
    sql = (
        f"SELECT count(*) FROM {names['table']}"
        f" WHERE {names['col']} < now() - make_interval(secs => :grace_s)"
    )
    return session.execute(text(sql), {"grace_s": resolved.target.grace_s}).scalar_one()


_PRUNE_AUDIT = text(
    """
    INSERT INTO audit_logs (user_id, entity_type, entity_id, action, changes, user_agent)
    VALUES (NULL, 'housekeeping.prune', :run_id, 'DELETE', CAST(:changes AS jsonb), :agent)
    """
)


def record_prune(session: Session, run_id: Any, changes: dict[str, Any]) -> None:
    """One audit row for a whole prune run (`agent.housekeeping.prune_audit`)."""
    params = {"run_id": run_id, "changes": json.dumps(changes), "agent": AGENT_USER_AGENT}
    session.execute(_PRUNE_AUDIT, params)


# Tables of expiring credentials: SmartHub's API keys (004), the gateway's API tokens (001).
EXPIRING_CREDENTIALS = ("api_keys", "api_token")

_EXPIRE = """
    WITH expired AS (
        SELECT id, is_active, expires_at FROM {table}
        WHERE is_active IS NOT FALSE AND expires_at < now()
        ORDER BY expires_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), changed AS (
        UPDATE {table} AS k SET is_active = false, updated_at = now()
        FROM expired AS e
        WHERE k.id = e.id AND k.is_active IS NOT FALSE AND k.expires_at < now()
        RETURNING k.id, e.is_active AS was_active, k.expires_at
    )
    INSERT INTO audit_logs (user_id, entity_type, entity_id, action, changes, user_agent)
    SELECT NULL, '{table}', id, 'UPDATE',
        jsonb_build_object(
            'before', jsonb_build_object('is_active', was_active),
            'after', jsonb_build_object('is_active', false),
            'reason', jsonb_build_object('expired_at', expires_at)),
        :agent
    FROM changed
    RETURNING entity_id
"""


def expire_api_keys(session: Session, limit: int, table: str = "api_keys") -> int:
    """Deactivate up to `limit` expired, still active keys, one audit row each; how many.

    `table` is one of EXPIRING_CREDENTIALS (a constant, never a setting); one that does not
    exist (the gateway not deployed) has nothing to expire.
    """
    assert table in EXPIRING_CREDENTIALS
    if session.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
        return 0
    params = {"limit": limit, "agent": AGENT_USER_AGENT}
    return len(session.execute(text(_EXPIRE.format(table=table)), params).all())


def count_expirable_api_keys(session: Session) -> int:
    """How many keys and tokens are past their expiry and still active (for a dry run)."""
    total = 0
    for table in EXPIRING_CREDENTIALS:
        if session.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is None:
            continue
        sql = f"SELECT count(*) FROM {table} WHERE is_active IS NOT FALSE AND expires_at < now()"
        total += session.execute(text(sql)).scalar_one()
    return total


def set_lock_timeout(session: Session, timeout_ms: int) -> None:
    """Give up on a table lock after `timeout_ms` in this transaction rather than queue.

    DDL on a time-series parent waits behind every open writer and, while it waits, makes
    every later writer wait behind it; a short timeout turns that stall into a retry.
    """
    session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{timeout_ms}ms"})


def droppable(conn: Connection, series: Series, before: dt.datetime) -> list[str]:
    """The partitions or chunks that dropping data older than `before` would remove."""
    backend = current_backend(conn, series.table)
    if backend == "native":
        return [p.name for p in partitions(conn, series.table) if p.upper and p.upper <= before]
    if backend is None:
        return []  # a plain table the agent adopted: retention leaves it to its owner
    sql = "SELECT show_chunks(CAST(:table AS regclass), older_than => CAST(:before AS timestamptz))"
    return [str(c) for c in conn.execute(text(sql), {"table": series.table, "before": before})]


def try_advisory_lock(conn: Connection, key: int) -> bool:
    """Take the session-level advisory lock `key` if nobody holds it.

    It outlives the transactions on `conn` and goes with the connection, so a killed
    process never leaves it behind.
    """
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())


def advisory_unlock(conn: Connection, key: int) -> None:
    """Give back the advisory lock `key` taken on `conn`."""
    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
