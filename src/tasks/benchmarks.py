"""Benchmark ingestion: results in, points stored exactly once, regressions raised as alerts.

A payload is one run. It is read as a stream, validated row by row and stored in batches
(binary COPY straight in when all of a batch's points are new, else COPY to staging and an
insert that skips points already there) in ONE transaction:
a payload that turns out unreadable halfway stores nothing and is recorded as rejected.
Rows that fail validation go to quarantine with their reason. After the commit, the newest
new point of each series touched is judged against its history (short transactions again)
and regressions become rows of `benchmark_alerts`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from celery import shared_task
from sqlalchemy.orm import Session

from agent.api import contract
from agent.benchmarks import content_sha256, run_id_for
from agent.benchmarks.batches import Tally, batches, prefetch
from agent.benchmarks.formats import FORMATS, FormatError, read
from agent.benchmarks.regression import Threshold, Verdict, judge
from agent.benchmarks.units import converter, direction_of
from agent.benchmarks.validation import MAX_LENGTH, Validator, storable
from agent.core.settings import Settings, get_settings
from models import queries
from models.benchmarks import BenchmarkAlert
from models.session import session_scope
from models.store import benchmarks as bench_store
from tasks.common import RETRY_ON_INFRASTRUCTURE, TaskInputError, as_text, progress_of

DEFAULT_KEYS = frozenset({"package", "version", "branch", "commit", "testbed", "run_id"})
SERIES_PER_QUERY = 1000
ALERTS_IN_RESULT = 20

Progress = Callable[[int], None]
SeriesKey = tuple[str, str, str, str | None, str]


@shared_task(name="agent.benchmarks.ingest", bind=True, **RETRY_ON_INFRASTRUCTURE)
def ingest(
    self: Any, payload: Any, format: str | None = None, defaults: dict[str, Any] | None = None
) -> contract.Ingested | contract.Rejected:
    """Ingest one run sent inline: JSON or CSV text, or a JSON document; counts and reasons."""
    settings = get_settings()
    data = payload_bytes(payload, settings.benchmarks_max_payload_bytes)
    fmt, given = as_format(format), as_defaults(defaults)
    progress = bytes_read(self, len(data))
    return ingest_stream(settings, io.BytesIO(data), fmt, given, "payload", progress)


@shared_task(name="agent.benchmarks.ingest_file", bind=True, **RETRY_ON_INFRASTRUCTURE)
def ingest_file(
    self: Any, path: str, format: str | None = None, defaults: dict[str, Any] | None = None
) -> contract.Ingested | contract.Rejected:
    """Ingest one run from a file under AGENT_BENCHMARKS_FILE_ROOT; counts and reasons."""
    settings = get_settings()
    target = readable_path(settings, path)
    fmt, given = as_format(format), as_defaults(defaults)
    progress = bytes_read(self, target.stat().st_size)
    with target.open("rb") as stream:
        return ingest_stream(settings, stream, fmt, given, path, progress)


@shared_task(name="agent.benchmarks.alerts", **RETRY_ON_INFRASTRUCTURE)
def alerts(package: str | None = None, limit: int = 100) -> list[contract.Alert]:
    """Open regression alerts, newest first, of one package or all."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise TaskInputError("limit must be an integer from 1 to 10000")
    if package is not None:
        package = as_text(package, "package", MAX_LENGTH["package"])
    with session_scope() as session:
        # Plain dicts shaped as the contract's Alert (see the tasks.* section of pyproject.toml).
        alerts = [alert_summary(a) for a in queries.open_alerts(session, limit, package)]
        return alerts


def bytes_read(task: Any, size: int) -> Progress:
    """A callback for `ingest_stream` that reports the bytes read so far as PROGRESS."""
    report = progress_of(task)
    return lambda at: report({"done": at, "total": size, "unit": "bytes"})


def payload_bytes(payload: Any, limit: int) -> bytes:
    """The payload as bytes (a decoded JSON document is encoded again), within `limit`."""
    if isinstance(payload, str):
        data = as_text(payload, "payload").encode()
    elif isinstance(payload, dict | list):
        data = json.dumps(payload, allow_nan=True).encode()
    else:
        raise TaskInputError("payload must be JSON or CSV text, or a JSON object or array")
    if len(data) > limit:
        raise TaskInputError(
            f"payload is {len(data)} bytes, over the limit of {limit} "
            "(AGENT_BENCHMARKS_MAX_PAYLOAD_BYTES): send a file with agent.benchmarks.ingest_file"
        )
    return data


def as_format(format: Any) -> str | None:
    """A format name the readers know, or None to detect it."""
    if format is None or format in FORMATS:
        return format
    raise TaskInputError(f"format must be one of {', '.join(FORMATS)}, or null to detect it")


def as_defaults(defaults: Any) -> dict[str, Any]:
    """Values for fields a payload leaves out: package, version, branch, commit, testbed, run_id."""
    if defaults is None:
        return {}
    if not isinstance(defaults, dict) or not set(defaults) <= DEFAULT_KEYS:
        raise TaskInputError(f"defaults must be an object with keys among {sorted(DEFAULT_KEYS)}")
    return {k: as_text(v, f"defaults.{k}", MAX_LENGTH[k]) for k, v in defaults.items()}


def readable_path(settings: Settings, path: Any) -> Path:
    """`path` resolved inside the file root; other paths are refused, never read."""
    path = as_text(path, "path", 4096)
    root = (settings.benchmarks_file_root or settings.data_dir / "benchmarks").resolve()
    try:
        target = (root / path).resolve()
        inside = target.is_relative_to(root) and target.is_file()
    except OSError:  # a name too long for the file system, a loop of links
        inside = False
    if not path or not inside:
        raise TaskInputError("path must name a file inside AGENT_BENCHMARKS_FILE_ROOT")
    return target


def ingest_stream(
    settings: Settings,
    stream: IO[bytes],
    format: str | None,
    defaults: dict[str, Any],
    source: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ingest one run from a seekable binary stream, then look for regressions."""
    sha = content_sha256(stream)
    try:
        with session_scope() as session:
            ingest_id, found, tally, touched = store_run(
                session, settings, stream, sha, format, defaults, source, progress
            )
    except FormatError as exc:
        with session_scope() as session:
            ingest_id = bench_store.reject_ingest(session, sha, format, source, str(exc))
        return {"status": "rejected", "ingest_id": str(ingest_id), "error": str(exc)}
    raised = detect_regressions(settings, ingest_id, touched)
    return {
        "status": "done",
        "ingest_id": str(ingest_id),
        "format": found,
        **tally.as_dict(),
        "alerts": len(raised),
        "regressions": [alert_summary(a) for a in raised[:ALERTS_IN_RESULT]],
    }


def store_run(
    session: Session,
    settings: Settings,
    stream: IO[bytes],
    sha: str,
    format: str | None,
    defaults: dict[str, Any],
    source: str,
    progress: Progress | None,
) -> tuple[uuid.UUID, str, Tally, dict[SeriesKey, dt.datetime]]:
    """Read, validate and store a run in the caller's transaction; FormatError if unreadable."""
    parsed = read(stream, format)
    ingest_id, seen = bench_store.begin_ingest(session, sha, parsed.format, source)
    bench_store.prepare(session)
    merged = parsed.run_context(defaults)
    merged.setdefault("run_id", run_id_for(sha))
    run_id = storable(merged["run_id"], "run_id")  # the payload's own may be anything
    validator = Validator(merged, parsed.format, latest_allowed(settings))
    touched: dict[SeriesKey, dt.datetime] = {}
    tally, valid = Tally(), 0
    for batch in prefetch(batches(parsed.rows, validator, tally, settings.benchmarks_batch_rows)):
        valid += len(batch.points)
        for series in bench_store.store_points(session, batch.points, batch.days):
            tally.accepted += series.points
            touched[series.key] = max(series.latest, touched.get(series.key, series.latest))
        if not seen:
            bench_store.quarantine(session, ingest_id, run_id, batch.rejected)
        if progress:
            progress(stream.tell())
    tally.duplicate = valid - tally.accepted
    bench_store.finish_ingest(session, ingest_id, tally)
    return ingest_id, parsed.format, tally, touched


def latest_allowed(settings: Settings) -> dt.datetime:
    """The latest timestamp a point may carry now."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.benchmarks_future_skew_s)


def threshold_of(settings: Settings) -> Threshold:
    """The regression threshold the settings describe."""
    return Threshold(
        test=settings.benchmarks_test,
        boundary=settings.benchmarks_boundary,
        min_sample_size=settings.benchmarks_min_sample_size,
        max_sample_size=max(
            settings.benchmarks_max_sample_size, settings.benchmarks_min_sample_size
        ),
        min_effect=settings.benchmarks_min_effect,
    )


def detect_regressions(
    settings: Settings, ingest_id: uuid.UUID, touched: dict[SeriesKey, dt.datetime]
) -> list[dict[str, Any]]:
    """Judge the newest new point of each series touched; record and return the regressions."""
    threshold = threshold_of(settings)
    found: list[dict[str, Any]] = []
    for chunk in _chunks(list(touched.items()), SERIES_PER_QUERY):
        with session_scope() as session:
            rows = queries.series_histories(session, chunk, threshold.max_sample_size)
        found += [a for row in rows if (a := alert_for(row, threshold, ingest_id)) is not None]
    if found:
        with session_scope() as session:
            bench_store.record_alerts(session, found)
    return found


def alert_for(row: Any, threshold: Threshold, ingest_id: uuid.UUID) -> dict[str, Any] | None:
    """The alert row for a series' new point, or None when it is no regression."""
    direction = direction_of(row.unit)
    if direction is None:
        return None
    history = comparable(row.values or [], row.units or [], row.unit)
    verdict = judge(history, row.value, direction, threshold)
    if verdict is None or not verdict.regression:
        return None
    return {
        "package_id": row.package_id,
        "package_name": row.package_name,
        "benchmark": row.benchmark,
        "metric": row.metric,
        "branch": row.branch or "",
        "testbed": row.testbed,
        "timestamp": row.timestamp,
        "run_id": row.run_id,
        "unit": row.unit,
        "ingest_id": ingest_id,
        **verdict_columns(verdict),
    }


def comparable(values: Sequence[float], units: Sequence[str], unit: str) -> list[float]:
    """History values in `unit`; values in another family of units are left out."""
    out = []
    for value, source in zip(values, units, strict=True):
        factor = converter(source, unit)
        if factor is not None:
            out.append(value * factor)
    return out


def verdict_columns(verdict: Verdict) -> dict[str, Any]:
    """The columns of `benchmark_alerts` a verdict fills."""
    return {
        "value": verdict.value,
        "baseline": verdict.baseline,
        "stdev": verdict.stdev,
        "samples": verdict.samples,
        "change": verdict.change,
        "direction": verdict.direction,
        "test": verdict.test,
        "statistic": verdict.statistic,
        "p_value": verdict.p_value,
        "limit_value": verdict.limit,
    }


ALERT_FIELDS = (
    "package_name",
    "benchmark",
    "metric",
    "branch",
    "testbed",
    "run_id",
    "unit",
    "value",
    "baseline",
    "stdev",
    "samples",
    "change",
    "direction",
    "test",
    "statistic",
    "p_value",
    "limit_value",
)


def alert_summary(alert: BenchmarkAlert | dict[str, Any]) -> dict[str, Any]:
    """An alert as plain JSON (an infinite statistic, from a constant history, is null)."""
    get: Callable[[str], Any] = (
        alert.get if isinstance(alert, dict) else lambda name: getattr(alert, name)
    )
    summary = {name: _plain(get(name)) for name in ALERT_FIELDS}
    summary["timestamp"] = get("timestamp").isoformat()
    if not isinstance(alert, dict):
        summary |= {"id": str(alert.id), "status": alert.status}
        summary["created_at"] = alert.created_at.isoformat()
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
