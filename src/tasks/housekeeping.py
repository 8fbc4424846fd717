"""Housekeeping: expired sessions pruned, expired API keys deactivated, time series kept in bounds.

Every delete runs in batches of its own short transaction, sized to keep each statement near
AGENT_PRUNE_STATEMENT_TARGET_MS, so logins and session lookups are never held up for long. A
run that is killed loses only its current batch; the next run starts again from the oldest
expired row. One pruner (and one retention run) at a time: a PostgreSQL advisory lock held
on its own connection, which dies with the process that holds it.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import shared_task
from psycopg.errors import LockNotAvailable
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from agent.core.prune_targets import PruneTarget
from agent.core.settings import Settings, get_settings
from agent.housekeeping import BatchSizer, Tally, cutoffs, lock_key, log_targets, prune_audit
from agent.housekeeping import prune_targets as session_targets
from models.session import get_engine, session_scope
from models.store import housekeeping as store
from models.timeseries import SERIES, drop_older_than, ensure_partitions_ahead
from tasks.common import RETRY_ON_INFRASTRUCTURE, Progress, database_now, progress_of, quietly

PRUNE_LOCK = "housekeeping.prune"
RETENTION_LOCK = "housekeeping.retention"
KEYS_PER_BATCH = 1000
DDL_LOCK_TIMEOUT_MS = 2000


@shared_task(name="agent.housekeeping.prune_sessions", bind=True, **RETRY_ON_INFRASTRUCTURE)
def prune_sessions(self: Any) -> dict[str, Any]:
    """Delete expired sessions and verifications (and configured tables); counts per table."""
    return run_prune(get_settings(), progress_of(self))


@shared_task(name="agent.housekeeping.expire_api_keys", bind=True, **RETRY_ON_INFRASTRUCTURE)
def expire_api_keys(self: Any) -> dict[str, Any]:
    """Deactivate API keys past their expiry, each change audited; how many."""
    return run_expire_keys(get_settings())


@shared_task(name="agent.housekeeping.apply_retention", bind=True, **RETRY_ON_INFRASTRUCTURE)
def apply_retention(self: Any) -> dict[str, Any]:
    """Create partitions ahead, drop what is past each retention window; what changed."""
    return run_retention(get_settings(), database_now(), progress_of(self))


def time_budget_s(settings: Settings) -> float:
    """How long one run may delete before it stops and leaves the rest to the next run."""
    return settings.task_soft_time_limit_s * 0.8


@contextmanager
def exclusively(name: str) -> Iterator[bool]:
    """Whether this process got the advisory lock `name`; held until the block ends."""
    key = lock_key(name)
    with get_engine().connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        held = store.try_advisory_lock(conn, key)
        try:
            yield held
        finally:
            if held:
                store.advisory_unlock(conn, key)


def run_prune(settings: Settings, progress: Progress = quietly) -> dict[str, Any]:
    """Prune every session table (plus configured ones) under the pruner's lock.

    Each run that got the lock leaves one audit row (`housekeeping.prune`), even one that
    found nothing: an operator can see that the pruner runs, and what each run removed.
    """
    targets = session_targets(settings.prune_extra_tables)
    with exclusively(PRUNE_LOCK) as held:
        if not held:
            return {"skipped": "another prune is running", "total": 0}
        started = dt.datetime.now(dt.UTC)
        tally = prune(settings, targets, time.monotonic() + time_budget_s(settings), progress)
        with session_scope() as session:
            changes = prune_audit(tally, targets, started, dt.datetime.now(dt.UTC))
            store.record_prune(session, uuid.uuid4(), changes)
    return tally.summary()


def prune(
    settings: Settings, targets: Sequence[PruneTarget], deadline: float, progress: Progress
) -> Tally:
    """Delete the expired rows of `targets` batch by batch until done or `deadline` passes."""
    with session_scope() as session:
        resolved = [store.resolve(session, target) for target in targets]
    tally = Tally()
    sizer = BatchSizer(settings.prune_batch_size, settings.prune_statement_target_ms / 1000)
    for target in resolved:
        tally.deleted.setdefault(target.table, 0)
        tally.complete = prune_table(target, sizer, deadline, tally, progress)
        if not tally.complete:
            break
    return tally


def prune_table(
    target: store.Resolved, sizer: BatchSizer, deadline: float, tally: Tally, progress: Progress
) -> bool:
    """Batches of one table until none is left (True) or the deadline passes (False).

    With a large expired share the batches are runs of heap pages, in physical order;
    otherwise ranges of the expiry index, oldest first.
    """
    with session_scope() as session:
        sweep = store.planned_sweep(session, target)
    if sweep is not None:
        return sweep_table(target, sweep, sizer, deadline, tally, progress)
    floor: Any = "-infinity"
    while time.monotonic() < deadline:
        started = time.monotonic()
        with session_scope() as session:
            deleted, latest = store.delete_expired(session, target, sizer.size, floor)
        count_batch(target, deleted, time.monotonic() - started, sizer, tally, progress)
        if deleted == 0:
            return True
        floor = latest
    return False


def sweep_table(
    target: store.Resolved,
    sweep: store.Sweep,
    sizer: BatchSizer,
    deadline: float,
    tally: Tally,
    progress: Progress,
) -> bool:
    """The pages the table had when the run began, in order, each batch a run of pages.

    A batch covers the pages expected to hold `sizer.size` expired rows.
    """
    first = 0
    while first < sweep.pages:
        if time.monotonic() >= deadline:
            return False
        end = first + max(1, int(sizer.size / sweep.expired_per_page))
        started = time.monotonic()
        with session_scope() as session:
            deleted = store.delete_expired_pages(session, target, first, end)
        count_batch(target, deleted, time.monotonic() - started, sizer, tally, progress)
        first = end
    return True


def count_batch(
    target: store.Resolved,
    deleted: int,
    elapsed: float,
    sizer: BatchSizer,
    tally: Tally,
    progress: Progress,
) -> None:
    """Tally one batch, report progress, and size the next batch by this one's time."""
    tally.add(target.table, deleted, elapsed)
    done = tally.summary()
    # `total` of a prune's result counts deletions; in PROGRESS it is the unknown end.
    progress({"table": target.table, **done, "done": done["total"], "total": None, "unit": "rows"})
    sizer.after(elapsed)


def run_expire_keys(settings: Settings) -> dict[str, Any]:
    """Deactivate expired API keys, then gateway API tokens, until none is left.

    Each batch runs in a transaction of its own.
    """
    deadline = time.monotonic() + time_budget_s(settings)
    total, pending = 0, list(store.EXPIRING_CREDENTIALS)
    while pending and time.monotonic() < deadline:
        with session_scope() as session:
            changed = store.expire_api_keys(session, KEYS_PER_BATCH, pending[0])
        total += changed
        if changed == 0:
            pending.pop(0)
    return {"deactivated": total, "complete": not pending}


def retention_days(settings: Settings) -> dict[str, int | None]:
    """The retention window of each agent-owned series; None keeps everything."""
    return {
        "instance_health_history": settings.health_history_retention_days,
        "benchmarks": settings.benchmarks_retention_days,
    }


def log_retention_days(settings: Settings) -> dict[str, int | None]:
    """The retention window of each log table; None (the default) keeps everything."""
    return {
        "access_logs": settings.access_logs_retention_days,
        "audit_logs": settings.audit_logs_retention_days,
    }


def run_retention(
    settings: Settings, now: dt.datetime, progress: Progress = quietly
) -> dict[str, Any]:
    """Partitions ahead and old data dropped for every series; log rows past their window."""
    with exclusively(RETENTION_LOCK) as held:
        if not held:
            return {"skipped": "another retention run is going on"}
        result = keep_series_in_bounds(settings, now)
        targets = log_targets(log_retention_days(settings))
        deadline = time.monotonic() + time_budget_s(settings)
        result["logs"] = prune(settings, targets, deadline, progress).summary()
    return result


def keep_series_in_bounds(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """For each series, in its own transaction: partitions ahead, then the retention drop.

    A series whose table lock cannot be had within DDL_LOCK_TIMEOUT_MS is `deferred` to the
    next run instead of stalling the writers queued behind the lock.
    """
    windows = cutoffs({**dict.fromkeys(SERIES), **retention_days(settings)}, now)
    result: dict[str, Any] = {"ready": {}, "dropped": {}, "deferred": []}
    for series in SERIES.values():
        try:
            with session_scope() as session:
                store.set_lock_timeout(session, DDL_LOCK_TIMEOUT_MS)
                conn = session.connection()
                ready = ensure_partitions_ahead(conn, series, now, settings.partitions_ahead)
                before = windows[series.table]
                dropped = drop_older_than(conn, series, before) if before else []
        except OperationalError as exc:
            if not isinstance(exc.orig, LockNotAvailable):
                raise
            result["deferred"].append(series.table)
            continue
        result["ready"][series.table] = ready[-1] if ready else None
        result["dropped"][series.table] = dropped
    return result


def plan(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """What a prune, key expiry and retention run would remove now, per table; changes nothing."""
    with session_scope() as session:
        return {
            "sessions": expired_counts(session, session_targets(settings.prune_extra_tables)),
            "api_keys": store.count_expirable_api_keys(session),
            "series": droppable(session, cutoffs(retention_days(settings), now)),
            "logs": expired_counts(session, log_targets(log_retention_days(settings))),
        }


def expired_counts(session: Session, targets: Sequence[PruneTarget]) -> dict[str, int]:
    """Expired rows per target table."""
    return {t.table: store.count_expired(session, store.resolve(session, t)) for t in targets}


def droppable(session: Session, windows: dict[str, dt.datetime | None]) -> dict[str, list[str]]:
    """The partitions or chunks each series with a retention window would lose now."""
    conn = session.connection()
    return {
        table: store.droppable(conn, SERIES[table], before)
        for table, before in windows.items()
        if before is not None and table in SERIES
    }
