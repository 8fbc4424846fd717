"""A worker SIGKILLed in the middle of a benchmark ingest and of a health batch.

Delivery is at least once: late acks keep a message unacknowledged while its task runs. When
a pool child dies, the worker's main process requeues the message at once (reject on worker
lost); when the main process dies, Redis hands the message out again after the visibility
timeout. Either way the work runs again from the start, and must be stored once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from celery import Celery

from tests.support.benchmarks import benchmark_csv
from tests.support.processes import wait_until
from tests.support.rows import unique_package_name
from tests.support.stack import (
    FAST_REDELIVERY,
    Database,
    children_connected_to,
    made,
    received,
    received_at,
    report,
)
from tests.support.workers import process_tree, running_worker

pytestmark = pytest.mark.e2e

INGEST_ROWS = 120_000
BATCH_INSTANCES = 6
CHECK_TIMEOUT_S = "6"


def send_ingest(client: Celery, package: str) -> str:
    """Send one big run for ingestion; returns the task id."""
    payload = benchmark_csv(package, INGEST_ROWS)
    return client.send_task("agent.benchmarks.ingest", args=[payload, "csv"]).id


def ingest_is_writing(db: Database) -> bool:
    """Whether an agent transaction in `db` has written (its rows not yet committed)."""
    return bool(
        db.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'infra-agent' AND backend_xid IS NOT NULL"
        )
    )


def succeeded(client: Celery, task_id: str) -> object:
    """The task's result once it succeeded, else None."""
    result = client.AsyncResult(task_id)
    return result.result if result.state == "SUCCESS" else None


def busiest_child(pid: int) -> int:
    """The pool child of `pid` that used the most CPU over a short while (the one working)."""
    children = process_tree(pid)[1:]
    before = {child: cpu_ticks(child) for child in children}
    time.sleep(0.5)
    return max(children, key=lambda child: cpu_ticks(child) - before[child])


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def batch_holders(db: Database) -> list[str]:
    """The task ids holding instance leases: the health batches sent and not yet finished."""
    with_leases = db.value(
        "SELECT array_agg(DISTINCT holder) FROM agent_leases WHERE name LIKE 'health.instance.%%'"
    )
    return with_leases or []


def assert_each_instance_checked_once(db: Database) -> None:
    assert db.history_rows_per_instance() == {1: BATCH_INSTANCES}
    assert batch_holders(db) == []  # the batch gave its leases back


@pytest.fixture
def slow_instances(fault_db, silent_listener) -> Database:
    """Instances whose banner check waits out the check timeout: a batch stays busy a while."""
    fault_db.add_tcp_instances(BATCH_INSTANCES, silent_listener.ports, read_banner=True)
    return fault_db


def worker_settings(db: Database) -> dict[str, str]:
    # A long interval keeps the batch message from expiring before it is redelivered.
    return {
        "database_url": db.url,
        "health_interval_s": "600",
        "health_timeout_s": CHECK_TIMEOUT_S,
        **FAST_REDELIVERY,
    }


@pytest.mark.timeout(300)
def test_an_ingest_whose_pool_child_is_killed_is_run_again_and_stores_each_point_once(
    fault_db, broker, tmp_path
):
    """SIGKILL of the pool child mid-ingest (its transaction has written): the main process
    requeues the message at once, a new child ingests the run from the start, and every point
    is stored exactly once."""
    package = unique_package_name("faults")
    with running_worker(tmp_path, broker.url, **worker_settings(fault_db)) as worker:
        task_id = send_ingest(worker.client, package)
        wait_until(lambda: ingest_is_writing(fault_db), 120, "the ingest to write")
        os.kill(busiest_child(worker.proc.pid), signal.SIGKILL)
        killed = time.monotonic()
        result = wait_until(lambda: succeeded(worker.client, task_id), 180, "the ingest")
        report("ingest redone after its pool child was killed", [time.monotonic() - killed])
        assert received([worker.log], task_id) == 2
    assert result["accepted"] == INGEST_ROWS
    assert fault_db.benchmark_points(package) == INGEST_ROWS


@pytest.mark.timeout(180)
def test_a_health_batch_whose_pool_child_is_killed_checks_each_instance_once(
    slow_instances, silent_listener, broker, tmp_path
):
    """SIGKILL of the pool child while its batch's checks are in flight: the batch is requeued
    at once, runs again, and each instance gets exactly one history row (nothing was written
    by the killed run, nothing twice by the second), and the leases are given back."""
    with running_worker(tmp_path, broker.url, **worker_settings(slow_instances)) as worker:
        worker.client.send_task("agent.health.sweep")
        wait_until(lambda: silent_listener.accepted >= BATCH_INSTANCES, 60, "the checks")
        [child] = children_connected_to(worker.proc.pid, silent_listener.ports[0])
        [batch_id] = batch_holders(slow_instances)
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: not batch_holders(slow_instances), 120, "the batch to finish")
        assert received([worker.log], batch_id) == 2
    assert silent_listener.accepted == 2 * BATCH_INSTANCES
    assert_each_instance_checked_once(slow_instances)


@pytest.mark.timeout(360)
def test_work_of_a_killed_worker_is_redelivered_to_the_next_worker_and_done_once(
    slow_instances, silent_listener, broker, tmp_path
):
    """SIGKILL of the worker's main process (its pool children die with it) while it ingests
    a run and checks a batch: after the visibility timeout Redis hands both messages to the
    worker started in its place, which completes them; every point and every check is
    stored exactly once."""
    package = unique_package_name("faults")
    settings = worker_settings(slow_instances)
    with running_worker(made(tmp_path / "first"), broker.url, **settings) as first:
        first.client.send_task("agent.health.sweep")
        ingest_id = send_ingest(first.client, package)
        wait_until(lambda: silent_listener.accepted >= BATCH_INSTANCES, 60, "the checks")
        wait_until(lambda: ingest_is_writing(slow_instances), 120, "the ingest to write")
        [batch_id] = batch_holders(slow_instances)
        pool = process_tree(first.proc.pid)
        first.proc.send_signal(signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        first.proc.wait(timeout=10)
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pool), 10, "pool")
    with running_worker(made(tmp_path / "second"), broker.url, **settings) as second:
        result = wait_until(lambda: succeeded(second.client, ingest_id), 240, "the ingest")
        wait_until(lambda: not batch_holders(slow_instances), 60, "the batch to finish")
        report("work of a SIGKILLed worker done by the next one", [time.monotonic() - killed])
        redelivered = [received_at(second.log, i) - killed_at for i in (ingest_id, batch_id)]
        report("messages of a SIGKILLed worker redelivered", redelivered)
        logs = [first.log, second.log]
        assert (received(logs, ingest_id), received(logs, batch_id)) == (2, 2)
    assert time.monotonic() - killed >= int(FAST_REDELIVERY["visibility_timeout_s"])
    assert result["accepted"] == INGEST_ROWS
    assert slow_instances.benchmark_points(package) == INGEST_ROWS
    assert_each_instance_checked_once(slow_instances)
