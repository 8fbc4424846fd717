"""A health sweep over 10,000 instances through a real prefork worker.

The targets are four TCP listeners on loopback with 2,500 instance rows each, so the figures
measure the agent (sweep, batches, writes), not a network.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.support.stack import Database, Listener, made, report
from tests.support.workers import running_worker

pytestmark = pytest.mark.e2e

INSTANCES = 10_000
TARGETS = 4
INTERVAL_S = 60
BATCH_SIZE = 50
BATCHES = INSTANCES // BATCH_SIZE
SAMPLE_S = 0.5
# Per batch: one transaction to lease and load, one to write, each after a pool pre-ping
# (measured: 3.9); the bound is what matters: transactions grow with batches, not instances.
COMMITS_PER_BATCH = 6
# Per instance: its row updated, a history row, an audit row, its lease taken and given back.
TUPLES_PER_INSTANCE = 6
STATS = (
    "SELECT clock_timestamp(), xact_commit, tup_inserted + tup_updated + tup_deleted,"
    " (SELECT count(*) FROM infrastructure_instances WHERE last_health_check IS NOT NULL)"
    " FROM pg_stat_database WHERE datname = current_database()"
)


@dataclass(frozen=True)
class Sample:
    """What the database and the queue looked like at one moment of the sweep."""

    at: float
    commits: int
    tuples: int
    checked: int
    queued: int


@pytest.fixture
def loopback_targets() -> Iterator[Listener]:
    listener = Listener(count=TARGETS)
    yield listener
    listener.close()


def sample(conn: psycopg.Connection, queue_depth: int) -> Sample:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    _, commits, tuples, checked = conn.execute(STATS).fetchone()
    return Sample(time.monotonic(), commits, tuples, checked, queue_depth)


def sample_until_checked(db: Database, queue_depth, deadline_s: float) -> list[Sample]:
    """Sample every SAMPLE_S until every instance is checked or the deadline passes."""
    samples = []
    with psycopg.connect(db.url, autocommit=True) as conn:
        started = time.monotonic()
        while time.monotonic() - started < deadline_s:
            samples.append(sample(conn, queue_depth()))
            if samples[-1].checked == INSTANCES:
                break
            time.sleep(SAMPLE_S)
    return samples


def peak_rate(samples: list[Sample], field: str) -> float:
    """The highest per-second rate of `field` between consecutive samples."""
    return max(
        (getattr(b, field) - getattr(a, field)) / (b.at - a.at)
        for a, b in itertools.pairwise(samples)
    )


@pytest.mark.timeout(300)
def test_a_sweep_over_ten_thousand_instances_finishes_within_its_interval_with_bounded_load(
    fault_db, broker, loopback_targets, tmp_path
):
    """Proves, at the default batch size (50) and check concurrency (32) on a two-process
    worker: every one of 10,000 instances is checked exactly once well within the 60 s
    interval; the queue never holds more than the sweep's batches and is empty at the end;
    the database sees a few transactions per batch (not per instance) and a few row writes
    per instance. Prints the duration, rates and peaks."""
    fault_db.add_tcp_instances(INSTANCES, loopback_targets.ports)
    settings = {"database_url": fault_db.url, "health_interval_s": str(INTERVAL_S)}
    with running_worker(made(tmp_path / "worker"), broker.url, **settings) as worker:
        queue = broker.client()
        worker.client.send_task("agent.health.sweep")
        samples = sample_until_checked(fault_db, lambda: queue.llen("health"), INTERVAL_S)
        assert queue.llen("health") == 0
    first, last = samples[0], samples[-1]
    took = last.at - first.at
    commits = last.commits - first.commits - 2 * len(samples)  # less the sampler's own
    figures = {
        "sweep of 10,000 instances": ([took], "s"),
        "checks per second": ([INSTANCES / took], "/s"),
        "peak queue depth": ([max(s.queued for s in samples)], " batches"),
        "transactions per batch": ([commits / BATCHES], ""),
        "peak rows written per second": ([peak_rate(samples, "tuples")], "/s"),
        "peak transactions per second": ([peak_rate(samples, "commits")], "/s"),
    }
    for name, (values, unit) in figures.items():
        report(name, values, unit)
    assert last.checked == INSTANCES
    assert took < INTERVAL_S
    assert fault_db.history_rows_per_instance() == {1: INSTANCES}
    assert max(s.queued for s in samples) <= BATCHES
    assert commits <= COMMITS_PER_BATCH * BATCHES
    assert last.tuples - first.tuples <= TUPLES_PER_INSTANCE * INSTANCES
