"""Writes of the benchmark job: points through a staging table, quarantine, runs, alerts.

Points travel by binary COPY into a temporary staging table, then one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` per batch moves them into `benchmarks`:
the unique key `uq_benchmarks_point` (which includes the time) makes a point sent twice a
duplicate, never a second row, whichever backend (hypertable or native partitions) stores
the table. Package identity is resolved in the same statement: a registry `name`, else a
yapkg `full_name`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from agent.benchmarks.batches import Rejection, Tally
from agent.benchmarks.validation import POINT_COLUMNS, Point
from models import timeseries
from models.benchmarks import BenchmarkAlert
from models.session import driver_connection

STAGING = "agent_benchmarks_staging"
RAW_LIMIT = 16384
STAGING_TYPES = {
    "timestamp": "timestamptz",
    "value": "float8",
}

_CREATE_STAGING = text(
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ("
    + ", ".join(f'"{name}" {STAGING_TYPES.get(name, "text")}' for name in POINT_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_COLUMNS = ", ".join(f'"{c}"' for c in POINT_COLUMNS)
_COPY = f"COPY {STAGING} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_TARGET = ", ".join(f'"{c}"' for c in ("package_id", *POINT_COLUMNS))
_SOURCE = ", ".join(
    f'CAST(s."{c}" AS jsonb)' if c == "parameters" else f's."{c}"' for c in POINT_COLUMNS
)
SERIES_KEY = ("package_name", "benchmark", "metric", "branch", "testbed")

# One package, one name: a point is filed under the registry's name of its package, whether
# it came as that name (`@graph/layer4`), as yapkg's `full_name` (`graph/layer4`), or as
# either without or with npm's leading `@`; and linked to it. Exact matches win.
_PACKAGE = """
    SELECT id, name FROM packages
    WHERE name IN (s.package_name, '@' || s.package_name)
       OR full_name IN (s.package_name, ltrim(s.package_name, '@'))
    ORDER BY name = s.package_name DESC, (full_name = s.package_name) IS TRUE DESC, name
    LIMIT 1
"""
_SOURCE_NAMED = _SOURCE.replace('s."package_name"', 'COALESCE(p.name, s."package_name")')

# The inserted rows are summarized per series here, so that what comes back is one row per
# series touched, not one per point.
_MOVE = text(
    f"""
    WITH inserted AS (
        INSERT INTO benchmarks ({_TARGET})
        SELECT p.id, {_SOURCE_NAMED}
        FROM {STAGING} AS s
        LEFT JOIN LATERAL ({_PACKAGE}) AS p ON true
        ON CONFLICT (package_name, benchmark, metric, testbed, run_id, "timestamp") DO NOTHING
        RETURNING {", ".join(SERIES_KEY)}, "timestamp"
    )
    SELECT {", ".join(SERIES_KEY)}, max("timestamp") AS latest, count(*) AS points
    FROM inserted GROUP BY {", ".join(SERIES_KEY)}
    """
)

# A receipt of content already ingested keeps status 'done': its quarantine is complete.
_BEGIN = text(
    """
    INSERT INTO benchmark_ingests (content_sha256, format, source, status)
    VALUES (:sha, :format, :source, 'running')
    ON CONFLICT (content_sha256) DO UPDATE SET
        times_received = benchmark_ingests.times_received + 1,
        last_received_at = now(), format = excluded.format, source = excluded.source,
        status = CASE WHEN benchmark_ingests.status = 'done' THEN 'done' ELSE 'running' END,
        error = NULL
    RETURNING id, status = 'done' AS seen
    """
)
_FINISH = text(
    """
    UPDATE benchmark_ingests SET status = 'done', accepted = accepted + :accepted,
        duplicate = :duplicate, quarantined = :quarantined, skipped = :skipped,
        reasons = CAST(:reasons AS jsonb), finished_at = now()
    WHERE id = :id
    """
)
_REJECT = text(
    """
    INSERT INTO benchmark_ingests (content_sha256, format, source, status, error, finished_at)
    VALUES (:sha, :format, :source, 'rejected', :error, now())
    ON CONFLICT (content_sha256) DO UPDATE SET
        times_received = benchmark_ingests.times_received + 1, last_received_at = now(),
        status = 'rejected', error = excluded.error, finished_at = now()
    RETURNING id
    """
)
_QUARANTINE_COPY = (
    "COPY benchmark_quarantine (ingest_id, run_id, row_number, reason, raw)"
    " FROM STDIN (FORMAT BINARY)"
)
_QUARANTINE_TYPES = ["uuid", "text", "int4", "text", "text"]


@dataclass(frozen=True)
class Touched:
    """A series that got new points: its key, its latest new timestamp, how many points."""

    key: tuple[str, str, str, str | None, str]
    latest: dt.datetime
    points: int


def begin_ingest(
    session: Session, sha: str, format: str | None, source: str | None
) -> tuple[uuid.UUID, bool]:
    """The ingest row for this content, and whether an earlier receipt of it completed.

    A second receipt of the same content waits here (row lock) until the first commits.
    """
    params = {"sha": sha, "format": format, "source": _clip(source)}
    row = session.execute(_BEGIN, params).one()
    return row.id, row.seen


def finish_ingest(session: Session, ingest_id: uuid.UUID, tally: Tally) -> None:
    """Record the counts of a finished ingest."""
    counts = tally.as_dict()
    session.execute(
        _FINISH,
        {
            "id": ingest_id,
            **{name: counts[name] for name in ("accepted", "duplicate", "quarantined")},
            "skipped": counts["skipped"],
            "reasons": json.dumps(counts["reasons"]),
        },
    )


def reject_ingest(
    session: Session, sha: str, format: str | None, source: str | None, error: str
) -> uuid.UUID:
    """Record a payload that could not be read at all."""
    params = {"sha": sha, "format": format, "source": _clip(source), "error": error[:2000]}
    return session.execute(_REJECT, params).scalar_one()


def prepare(session: Session) -> None:
    """Tune the transaction for bulk moves: no JIT (compiling costs more than it saves here)."""
    session.execute(text("SET LOCAL jit = off"))


def store_points(
    session: Session, points: Sequence[Point], days: Iterable[dt.date]
) -> list[Touched]:
    """Copy `points` to staging and move the new ones into `benchmarks`; the series touched.

    Partitions for the points' days are created first where the table is natively
    partitioned (a no-op on TimescaleDB, which makes its own chunks).
    """
    if not points:
        return []
    _ensure_partitions(session, days)
    session.execute(_CREATE_STAGING)
    session.execute(text(f"TRUNCATE {STAGING}"))
    _copy(session, points)
    rows = session.execute(_MOVE).all()
    return [Touched(tuple(row[:5]), row.latest, row.points) for row in rows]


def _ensure_partitions(session: Session, days: Iterable[dt.date]) -> None:
    moments = [dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) for d in days]
    timeseries.ensure_partitions_for(session.connection(), timeseries.SERIES["benchmarks"], moments)


def _copy(session: Session, points: Sequence[Point]) -> None:
    raw = driver_connection(session)
    types = [STAGING_TYPES.get(name, "text") for name in POINT_COLUMNS]
    with raw.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(types)
        write = copy.write_row
        for point in points:
            write(point)


def quarantine(
    session: Session, ingest_id: uuid.UUID, run_id: str | None, rejected: Sequence[Rejection]
) -> None:
    """Keep refused rows with their reasons, by binary COPY.

    Call it only for content not ingested before (`begin_ingest`): the same content gives
    the same refused rows, already kept.
    """
    if not rejected:
        return
    raw = driver_connection(session)
    with raw.cursor() as cursor, cursor.copy(_QUARANTINE_COPY) as copy:
        copy.set_types(_QUARANTINE_TYPES)
        for r in rejected:
            copy.write_row((ingest_id, run_id, r.number, r.reason[:200], raw_text(r.original)))


def raw_text(original: Any) -> str:
    """The raw row as text: JSON as the payload had it (NaN included), cut at RAW_LIMIT."""
    if isinstance(original, str | bytes):
        text_ = original if isinstance(original, str) else original.decode(errors="replace")
    else:
        text_ = json.dumps(original, default=str, allow_nan=True)
    text_ = text_.replace("\x00", "\\u0000")
    return text_ if len(text_) <= RAW_LIMIT else text_[:RAW_LIMIT] + "…(truncated)"


def record_alerts(session: Session, alerts: Sequence[dict[str, Any]]) -> int:
    """Write regression alerts; one already recorded for the same point is kept as it is."""
    if not alerts:
        return 0
    statement = pg_insert(BenchmarkAlert).on_conflict_do_nothing(
        constraint="uq_benchmark_alerts_point"
    )
    return len(session.execute(statement.returning(BenchmarkAlert.id), list(alerts)).all())


def _clip(value: str | None, limit: int = 255) -> str | None:
    return value[:limit] if value else value
