"""Where the time series live: TimescaleDB hypertables, or native range partitions by time.

Shared by the migration and the housekeeping job. Every function that takes a Connection runs
in the caller's transaction and never commits. Partition bounds are whole UTC days or months;
there is no DEFAULT partition, so a row outside every partition is refused, not hidden.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

Backend = Literal["timescaledb", "native"]
Interval = Literal["day", "month"]


class TimeseriesError(RuntimeError):
    """A time-series table that cannot be stored or maintained as asked."""


@dataclass(frozen=True)
class Series:
    """A time-series table: its time column and the width of one partition (or chunk)."""

    table: str
    column: str
    interval: Interval


@dataclass(frozen=True)
class Partition:
    """One native partition and its bounds; None for MINVALUE/MAXVALUE or DEFAULT."""

    name: str
    lower: dt.datetime | None
    upper: dt.datetime | None


SERIES: dict[str, Series] = {
    series.table: series
    for series in (
        Series("instance_health_history", "time", "day"),
        Series("benchmarks", "timestamp", "month"),
    )
}

# TimescaleDB chunks have a fixed width, so a "month" is 30 days there.
CHUNK_INTERVALS: dict[Interval, str] = {"day": "1 day", "month": "30 days"}


def period_start(moment: dt.datetime, interval: Interval) -> dt.datetime:
    """The start (UTC) of the day or month that holds `moment`, which must be timezone-aware."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: time series are TIMESTAMPTZ")
    day = moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if interval == "day" else day.replace(day=1)


def shift(start: dt.datetime, interval: Interval, count: int) -> dt.datetime:
    """The period `count` intervals after (or before, if negative) the one starting at `start`."""
    if interval == "day":
        return start + dt.timedelta(days=count)
    months = start.year * 12 + start.month - 1 + count
    return start.replace(year=months // 12, month=months % 12 + 1)


def partition_name(table: str, start: dt.datetime) -> str:
    """`<table>_pYYYYMMDD`, named after the partition's lower bound."""
    return f"{table}_p{start:%Y%m%d}"


def partition_bounds(
    interval: Interval, start: dt.datetime, count: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """`count` consecutive [lower, upper) periods, from the one that holds `start`."""
    first = period_start(start, interval)
    lowers = [shift(first, interval, n) for n in range(count + 1)]
    return list(pairwise(lowers))


def timescaledb_available(conn: Connection) -> bool:
    """Whether this server could install the timescaledb extension."""
    sql = "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    return bool(conn.execute(text(sql)).scalar())


def timescaledb_usable(conn: Connection) -> bool:
    """Whether TimescaleDB is installed here and preloaded (or already created)."""
    return timescaledb_available(conn) and (_created(conn) or _preloaded(conn))


def choose_backend(conn: Connection, preference: str) -> Backend:
    """The backend for new time-series tables; enables TimescaleDB when it is the one.

    `preference` is `Settings.timeseries_backend`: "auto" uses TimescaleDB when the extension
    can be created here and falls back to native partitions otherwise.
    """
    if preference == "native":
        return "native"
    if preference not in ("auto", "timescaledb"):
        raise ValueError(f"unknown time-series backend {preference!r}")
    available = timescaledb_available(conn)
    problem = _create_extension(conn) if available else "the extension is not installed"
    if problem is None:
        return "timescaledb"
    if preference == "timescaledb":
        raise TimeseriesError(
            f"AGENT_TIMESERIES_BACKEND=timescaledb, but TimescaleDB cannot be used: {problem}"
        )
    log.warning("TimescaleDB not usable (%s); time series use native partitions", problem)
    return "native"


def _create_extension(conn: Connection) -> str | None:
    """Create the extension in a savepoint; the reason it failed, or None.

    Installed but not preloaded, `CREATE EXTENSION` fails with a FATAL error that ends the
    connection (no savepoint survives that), so the preload is checked first.
    """
    if not _created(conn) and not _preloaded(conn):
        return (
            "the extension is installed but shared_preload_libraries does not name timescaledb"
            " (add it and restart the server)"
        )
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    except DBAPIError as exc:
        return str(exc.orig).strip()
    return None


def _created(conn: Connection) -> bool:
    sql = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    return bool(conn.execute(text(sql)).scalar())


def _preloaded(conn: Connection) -> bool:
    libraries = conn.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar()
    return "timescaledb" in {name.strip().strip('"') for name in (libraries or "").split(",")}


def current_backend(conn: Connection, table: str) -> Backend | None:
    """How `table` is stored now: a hypertable, a partitioned table, or None (plain or absent)."""
    sql = "SELECT relkind FROM pg_class WHERE oid = to_regclass(:table)"
    kind = conn.execute(text(sql), {"table": table}).scalar()
    if kind == "p":
        return "native"
    if kind == "r" and _is_hypertable(conn, table):
        return "timescaledb"
    return None


def _is_hypertable(conn: Connection, table: str) -> bool:
    installed = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    if not conn.execute(text(installed)).scalar():
        return False
    sql = (
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = :table)"
    )
    return bool(conn.execute(text(sql), {"table": table}).scalar())


def create_hypertable(conn: Connection, series: Series) -> None:
    """Turn the (empty, plain) table into a hypertable; a no-op if it already is one.

    No default indexes: the models declare every index the queries need, and `alembic check`
    would report TimescaleDB's extra ones as drift.
    """
    sql = (
        "SELECT create_hypertable(CAST(:table AS regclass), CAST(:column AS name),"
        " chunk_time_interval => CAST(:interval AS interval),"
        " create_default_indexes => FALSE, if_not_exists => TRUE)"
    )
    params = {"table": series.table, "column": series.column}
    conn.execute(text(sql), {**params, "interval": CHUNK_INTERVALS[series.interval]})


def create_partitions(
    conn: Connection, table: str, column: str, interval: Interval, start: dt.datetime, count: int
) -> list[str]:
    """Create `count` partitions of `table` from the period holding `start`, unless they exist.

    Returns the names of all `count` partitions, whether new or already there.
    """
    _require_partitioned_by(conn, table, column)
    quote = conn.dialect.identifier_preparer.quote
    names = []
    for lower, upper in partition_bounds(interval, start, count):
        name = partition_name(table, lower)
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {quote(name)} PARTITION OF {quote(table)}"
                f" FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
            )
        )
        names.append(name)
    return names


def _require_partitioned_by(conn: Connection, table: str, column: str) -> None:
    sql = "SELECT pg_get_partkeydef(to_regclass(:table)) = 'RANGE (' || quote_ident(:column) || ')'"
    if not conn.execute(text(sql), {"table": table, "column": column}).scalar():
        raise TimeseriesError(f"{table} is not range-partitioned by {column}")


def ensure_partitions_ahead(
    conn: Connection, series: Series, now: dt.datetime, ahead: int
) -> list[str]:
    """Partitions from the period before `now` to `ahead` periods after it (none on TimescaleDB)."""
    if not _natively_partitioned(conn, series):
        return []
    start = shift(period_start(now, series.interval), series.interval, -1)
    return create_partitions(conn, series.table, series.column, series.interval, start, ahead + 2)


def ensure_partitions_for(
    conn: Connection, series: Series, moments: Iterable[dt.datetime]
) -> list[str]:
    """Partitions holding each of `moments`, e.g. before writing old rows (none on TimescaleDB)."""
    if not _natively_partitioned(conn, series):
        return []
    starts = sorted({period_start(moment, series.interval) for moment in moments})
    names = []
    for start in starts:
        names += create_partitions(conn, series.table, series.column, series.interval, start, 1)
    return names


def _natively_partitioned(conn: Connection, series: Series) -> bool:
    backend = current_backend(conn, series.table)
    if backend is None and not _plain_table(conn, series.table):
        raise TimeseriesError(f"{series.table} is neither a hypertable nor partitioned")
    return backend == "native"


def _plain_table(conn: Connection, table: str) -> bool:
    """Whether `table` is a plain table: adopted as its owner made it (no TimescaleDB).

    Rows go in as they are; nothing is partitioned or dropped.
    """
    sql = "SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass(:table)"
    return bool(conn.execute(text(sql), {"table": table}).scalar())


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The partitions of `table` with their bounds, oldest first."""
    bound = "pg_get_expr(c.relpartbound, c.oid)"
    sql = (
        f"SELECT c.relname,"
        f" CAST((regexp_match({bound}, 'FROM \\(''([^'']+)''\\)'))[1] AS timestamptz) AS lower,"
        f" CAST((regexp_match({bound}, 'TO \\(''([^'']+)''\\)'))[1] AS timestamptz) AS upper"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(:table)"
        " ORDER BY lower NULLS FIRST, c.relname"
    )
    rows = conn.execute(text(sql), {"table": table})
    return [Partition(name, lower, upper) for name, lower, upper in rows]


def drop_older_than(conn: Connection, series: Series, before: dt.datetime) -> list[str]:
    """Drop the partitions or chunks holding only rows older than `before`; their names.

    A plain (adopted) table has neither: its owner keeps it, and nothing is dropped.
    """
    if current_backend(conn, series.table) is None and _plain_table(conn, series.table):
        log.info("%s: a plain table its owner keeps; no retention drop", series.table)
        return []
    if _natively_partitioned(conn, series):
        old = [p for p in partitions(conn, series.table) if p.upper and p.upper <= before]
        quote = conn.dialect.identifier_preparer.quote
        for partition in old:
            conn.execute(text(f"DROP TABLE {quote(partition.name)}"))
        return [partition.name for partition in old]
    sql = "SELECT drop_chunks(CAST(:table AS regclass), older_than => CAST(:before AS timestamptz))"
    return list(conn.execute(text(sql), {"table": series.table, "before": before}).scalars())
