"""Writes of the benchmark job: points, quarantine, runs, alerts.

A batch of points whose keys are all new (one probe of the unique key per series and run)
goes by binary COPY straight into `benchmarks`, under a savepoint. Otherwise, or when that
COPY meets a unique violation (a concurrent ingest of the same points got there first), the
batch travels by binary COPY into a temporary staging table and one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING` moves the new points into `benchmarks`. Either
way the unique key `uq_benchmarks_point` (which includes the time) decides: a point sent
twice is a duplicate, never a second row, whichever backend (hypertable or native
partitions) stores the table. Package identity is resolved once per batch and name: a
registry `name`, else a yapkg `full_name`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from psycopg.adapt import Dumper
from psycopg.errors import UniqueViolation
from psycopg.postgres import types as pg_types
from psycopg.pq import Format
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
# A stored row: the package's id, then the point's columns (package_name resolved).
ROW_COLUMNS = ("package_id", *POINT_COLUMNS)
STAGING_TYPES = {"package_id": "uuid", "timestamp": "timestamptz", "value": "float8"}
# Staging keeps `parameters` as text (cast on the way out); a COPY into `benchmarks` sends jsonb.
_STAGING_COPY_TYPES = [STAGING_TYPES.get(name, "text") for name in ROW_COLUMNS]
ROW_TYPES = [
    {"parameters": "jsonb"}.get(name, t)
    for name, t in zip(ROW_COLUMNS, _STAGING_COPY_TYPES, strict=True)
]

_CREATE_STAGING = text(
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ("
    + ", ".join(f'"{name}" {STAGING_TYPES.get(name, "text")}' for name in ROW_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_COLUMNS = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
_COPY_STAGING = f"COPY {STAGING} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TARGET = f"COPY benchmarks ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_SOURCE = ", ".join(
    f'CAST(s."{c}" AS jsonb)' if c == "parameters" else f's."{c}"' for c in ROW_COLUMNS
)
SERIES_KEY = ("package_name", "benchmark", "metric", "branch", "testbed")
_PROBED = ("benchmark", "metric", "testbed")  # with the package: a series of the unique key
_probed = itemgetter(*(POINT_COLUMNS.index(c) for c in _PROBED))
_series = itemgetter(*(POINT_COLUMNS.index(c) for c in SERIES_KEY[1:]))
_RUN_AT = POINT_COLUMNS.index("run_id")

# One package, one name: a point is filed under the registry's name of its package, whether
# it came as that name (`@graph/layer4`), as yapkg's `full_name` (`graph/layer4`), or as
# either without or with npm's leading `@`; and linked to it. Exact matches win.
_RESOLVE = text(
    """
    SELECT s.given, p.id, COALESCE(p.name, s.given) AS name
    FROM unnest(CAST(:names AS text[])) AS s(given)
    LEFT JOIN LATERAL (
        SELECT id, name FROM packages
        WHERE name IN (s.given, '@' || s.given) OR full_name IN (s.given, ltrim(s.given, '@'))
        ORDER BY name = s.given DESC, (full_name = s.given) IS TRUE DESC, name
        LIMIT 1
    ) AS p ON true
    """
)

# Whether any point of a batch may already be stored: per series, one probe of
# `uq_benchmarks_point` for the batch's runs over the batch's times. A point of one of those
# runs at another time in that span is a false alarm, which only sends the batch the staging
# way; a missed point cannot be.
_ANY_STORED = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM unnest(
            CAST(:package_name AS text[]), CAST(:benchmark AS text[]), CAST(:metric AS text[]),
            CAST(:testbed AS text[]), CAST(:first AS timestamptz[]), CAST(:last AS timestamptz[])
        ) AS k(package_name, benchmark, metric, testbed, first, last)
        WHERE EXISTS (
            SELECT 1 FROM benchmarks AS b
            WHERE b.package_name = k.package_name AND b.benchmark = k.benchmark
              AND b.metric = k.metric AND b.testbed = k.testbed
              AND b.run_id = ANY(CAST(:runs AS text[]))
              AND b."timestamp" BETWEEN k.first AND k.last
        )
    )
    """
)

# The inserted rows are summarized per series here, so that what comes back is one row per
# series touched, not one per point.
_MOVE = text(
    f"""
    WITH inserted AS (
        INSERT INTO benchmarks ({_COLUMNS})
        SELECT {_SOURCE}
        FROM {STAGING} AS s
        ON CONFLICT (package_name, benchmark, metric, testbed, run_id, "timestamp") DO NOTHING
        RETURNING {", ".join(SERIES_KEY)}, "timestamp"
    )
    SELECT {", ".join(SERIES_KEY)}, max("timestamp") AS latest, count(*) AS points
    FROM inserted GROUP BY {", ".join(SERIES_KEY)}
    """
)


class JsonbTextDumper(Dumper):
    """JSON text (as validation leaves `parameters`) as binary jsonb: version 1, then the text."""

    format = Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        """The jsonb wire format of the JSON text `obj`."""
        return b"\x01" + obj.encode()


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
    """Store the new ones of `points` in `benchmarks`; the series touched.

    Partitions for the points' days are created first where the table is natively
    partitioned (a no-op on TimescaleDB, which makes its own chunks).
    """
    if not points:
        return []
    _ensure_partitions(session, days)
    packages = _packages(session, points)
    if not _any_stored(session, points, packages) and _copied_straight(session, points, packages):
        return _touched(points, packages)
    return _through_staging(session, points, packages)


def _ensure_partitions(session: Session, days: Iterable[dt.date]) -> None:
    # Days already seen in this transaction are skipped: asking which backend stores the
    # table costs about 60 ms a batch on TimescaleDB (its information views).
    ready = session.info.setdefault("benchmark_days_ready", set())
    moments = [dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) for d in days if d not in ready]
    if moments:
        series = timeseries.SERIES["benchmarks"]
        timeseries.ensure_partitions_for(session.connection(), series, moments)
        ready.update(days)


Packages = dict[str, tuple[uuid.UUID | None, str]]


def _packages(session: Session, points: Sequence[Point]) -> Packages:
    """For each package name the points give: the registry's id and name (or None, as given)."""
    names = list({point[1] for point in points})
    return {row.given: (row.id, row.name) for row in session.execute(_RESOLVE, {"names": names})}


def _rows(points: Iterable[Point], packages: Packages) -> Iterator[tuple[Any, ...]]:
    """The points as rows of ROW_COLUMNS, made one at a time (a batch is not copied whole)."""
    for p in points:
        package_id, name = packages[p[1]]
        yield (package_id, p[0], name, *p[2:])


def _any_stored(session: Session, points: Sequence[Point], packages: Packages) -> bool:
    """Whether some of `points` may already be in `benchmarks` (never wrong when it says no)."""
    spans: dict[tuple[Any, ...], list[dt.datetime]] = {}
    runs = set()
    for p in points:
        at, span = p[0], spans.setdefault((packages[p[1]][1], _probed(p)), [p[0], p[0]])
        span[0], span[1] = min(span[0], at), max(span[1], at)
        runs.add(p[_RUN_AT])
    columns = list(zip(*((name, *rest) for name, rest in spans), strict=True))
    params: dict[str, Any] = dict(zip(("package_name", *_PROBED), map(list, columns), strict=True))
    params["first"], params["last"] = [s[0] for s in spans.values()], [s[1] for s in spans.values()]
    params["runs"] = list(runs)
    return bool(session.execute(_ANY_STORED, params).scalar())


def _copied_straight(session: Session, points: Sequence[Point], packages: Packages) -> bool:
    """COPY the points into `benchmarks` under a savepoint; False (nothing stored) on a duplicate.

    A concurrent ingest of the same points passes the probe too: the unique key then makes
    one COPY wait for the other's commit and fail, and its batch goes the staging way.
    """
    try:
        with session.begin_nested():
            _copy(session, _COPY_TARGET, ROW_TYPES, _rows(points, packages))
    except UniqueViolation:
        return False
    return True


def _through_staging(
    session: Session, points: Sequence[Point], packages: Packages
) -> list[Touched]:
    session.execute(_CREATE_STAGING)
    session.execute(text(f"TRUNCATE {STAGING}"))
    _copy(session, _COPY_STAGING, _STAGING_COPY_TYPES, _rows(points, packages))
    found = session.execute(_MOVE).all()
    return [Touched(tuple(row[:5]), row.latest, row.points) for row in found]


def _touched(points: Sequence[Point], packages: Packages) -> list[Touched]:
    """What `_MOVE` returns, for points that were all stored."""
    latest: dict[tuple[Any, ...], list[Any]] = {}
    for p in points:
        seen = latest.setdefault((packages[p[1]][1], _series(p)), [p[0], 0])
        seen[0], seen[1] = max(seen[0], p[0]), seen[1] + 1
    return [
        Touched((name, *rest), at, count)  # type: ignore[arg-type]
        for (name, rest), (at, count) in latest.items()
    ]


def _copy(session: Session, statement: str, types: list[str], rows: Iterable[Any]) -> None:
    raw = driver_connection(session)
    with raw.cursor() as cursor:
        cursor.adapters.register_dumper(None, JsonbTextDumper)
        with cursor.copy(statement) as copy:
            copy.set_types(types)
            write = copy.write_row
            for row in rows:
                write(row)


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
