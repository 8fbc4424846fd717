"""Which parts of the shared schema the agent created and which it adopted.

Kept in `agent_schema_objects` (`models.agent.AgentSchemaObject`). The migrations record
there, and only consult it to decide what a downgrade may remove. Functions take a
Connection and run in the caller's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

TABLE = "agent_schema_objects"

_CREATE = f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        name VARCHAR(63) NOT NULL,
        kind VARCHAR(10) NOT NULL,
        ownership VARCHAR(10) NOT NULL,
        recorded_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        CONSTRAINT pk_{TABLE} PRIMARY KEY (name),
        CONSTRAINT ck_{TABLE}_kind CHECK (kind IN ('table', 'view', 'index')),
        CONSTRAINT ck_{TABLE}_ownership CHECK (ownership IN ('owned', 'adopted'))
    )
"""


def create(conn: Connection) -> None:
    """Create the ownership table unless it exists."""
    conn.execute(text(_CREATE))


def exists(conn: Connection) -> bool:
    """Whether the ownership table is there (it is from revision 0001 on)."""
    return conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}).scalar_one()


def record(conn: Connection, name: str, kind: str, ownership: str) -> None:
    """Record `name` as owned or adopted; a name recorded before keeps its first record."""
    conn.execute(
        text(
            f"INSERT INTO {TABLE} (name, kind, ownership) VALUES (:name, :kind, :ownership)"
            " ON CONFLICT (name) DO NOTHING"
        ),
        {"name": name, "kind": kind, "ownership": ownership},
    )


def recorded(conn: Connection) -> dict[str, str]:
    """Every recorded name and its ownership; empty before revision 0001."""
    if not exists(conn):
        return {}
    return dict(conn.execute(text(f"SELECT name, ownership FROM {TABLE}")).all())


def owned(conn: Connection, kind: str) -> set[str]:
    """The names of kind `kind` (table, view, index) the agent created."""
    if not exists(conn):
        return set()
    sql = f"SELECT name FROM {TABLE} WHERE kind = :kind AND ownership = 'owned'"
    return set(conn.execute(text(sql), {"kind": kind}).scalars())


def forget(conn: Connection, name: str) -> None:
    """Drop the record of `name` (it was removed)."""
    conn.execute(text(f"DELETE FROM {TABLE} WHERE name = :name"), {"name": name})


def has_rows(conn: Connection, table: str) -> bool:
    """Whether `table` holds any row."""
    quoted = conn.dialect.identifier_preparer.quote(table)
    return conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {quoted})")).scalar_one()


# Tables (not their partitions or chunks, which go with them) with a foreign key to `table`.
_REFERENCED_FROM = text(
    "SELECT DISTINCT src.relname FROM pg_constraint f"
    " JOIN pg_class src ON src.oid = f.conrelid"
    " WHERE f.contype = 'f' AND f.confrelid = to_regclass(:table) AND f.conrelid <> f.confrelid"
    " AND f.conparentid = 0"
    " AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = f.conrelid)"
)


def droppable(conn: Connection, candidates: Iterable[str], shared: set[str]) -> list[str]:
    """Those of the owned `candidates` a downgrade may drop, in the order given.

    A shared table that holds rows is kept (another app may have written them), and so is
    every table a kept or foreign table references: dropping it would take their foreign
    keys, or fail. Each kept table is logged with the reason.
    """
    candidates = list(candidates)
    keep = {t for t in candidates if t in shared and has_rows(conn, t)}
    for table in sorted(keep):
        log.warning("%s: kept, it holds rows; drop it yourself if nobody needs them", table)
    changed = True
    while changed:
        changed = False
        for table in candidates:
            if table in keep:
                continue
            dropped = set(candidates) - keep
            holders = set(conn.execute(_REFERENCED_FROM, {"table": table}).scalars()) - dropped
            if holders:
                log.warning("%s: kept, %s refer to it", table, ", ".join(sorted(holders)))
                keep.add(table)
                changed = True
    return [table for table in candidates if table not in keep]
