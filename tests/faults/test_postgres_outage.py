"""PostgreSQL down, crashed mid-write, or a connection killed mid-write.

Tasks retry database errors with exponential backoff and jitter (RETRY_ON_INFRASTRUCTURE);
a retry keeps the task id, so a health batch takes its own instance leases back. A batch
writes its results in one transaction, so a write cut off halfway leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import suppress

import psycopg
import pytest

from agent.cli import migrate
from agent.cli.embedded import ensure_database
from tests.support.benchmarks import benchmark_csv
from tests.support.processes import wait_until
from tests.support.rows import unique_package_name
from tests.support.servers import PostgresServer
from tests.support.stack import FAST_REDELIVERY, Database, Listener, made, report
from tests.support.workers import running_worker

pytestmark = pytest.mark.e2e

INSTANCES = 10
BLOCKED_AUDIT_INSERT = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO audit_logs%%'"
)


@pytest.fixture
def own_postgres(tmp_path) -> Iterator[tuple[PostgresServer, Database]]:
    """A PostgreSQL of the test's own, migrated, that the test may crash and restart."""
    server = PostgresServer(tmp_path / "pg")
    url = ensure_database(server.start(), "agent")
    migrate.upgrade(url)
    yield server, Database(url)
    server.stop()


@pytest.fixture
def answering_listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def retries(log, task_id: str) -> int:
    return log.read_text().count(f"[{task_id}] retry: Retry in")


@pytest.mark.timeout(240)
def test_an_ingest_sent_while_postgresql_is_down_is_retried_and_stored_once_when_it_returns(
    own_postgres, broker, tmp_path
):
    """With PostgreSQL down, an ingest fails on its first statement and is retried with
    backoff; after PostgreSQL comes back a retry stores the run, each point once."""
    server, db = own_postgres
    package = unique_package_name("faults")
    settings = {"database_url": db.url, **FAST_REDELIVERY}
    with running_worker(made(tmp_path / "worker"), broker.url, **settings) as worker:
        server.crash()
        payload = benchmark_csv(package, 500)
        task = worker.client.send_task("agent.benchmarks.ingest", args=[payload])
        wait_until(lambda: retries(worker.log, task.id) >= 2, 90, "two retries")
        server.restart()
        back = time.monotonic()
        result = task.get(timeout=120)
        report("ingest stored after PostgreSQL came back", [time.monotonic() - back])
    assert (result["status"], result["accepted"]) == ("done", 500)
    assert db.benchmark_points(package) == 500


def cut_off(fault: str, server: PostgresServer, blocker: psycopg.Connection) -> None:
    """Break the batch's transaction while it waits mid-write: crash the server, or kill it."""
    if fault == "crash":
        server.crash()
        time.sleep(2)
        server.restart()
    else:
        blocker.execute(f"SELECT pg_terminate_backend(pid) FROM ({BLOCKED_AUDIT_INSERT}) AS b")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", ["crash", "terminate"])
def test_a_health_batch_cut_off_mid_write_leaves_nothing_and_its_retry_writes_it_once(
    fault, own_postgres, broker, answering_listener, tmp_path
):
    """A batch whose write stops halfway (the instances updated and the history copied, the
    audit insert waiting on a lock) is cut off by a PostgreSQL crash or by its connection being
    terminated. Proves: nothing of that transaction stays (each instance ends with exactly one
    history row AND one audit row: a surviving first write would leave two history rows and
    no audit row for the retry), and the retry writes the whole batch."""
    server, db = own_postgres
    db.add_tcp_instances(INSTANCES, answering_listener.ports)
    settings = {"database_url": db.url, "health_interval_s": "600", **FAST_REDELIVERY}
    with running_worker(made(tmp_path / "worker"), broker.url, **settings) as worker:
        with suppress(psycopg.OperationalError), psycopg.connect(db.url) as blocker:
            blocker.execute("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE")
            worker.client.send_task("agent.health.sweep")
            wait_until(lambda: db.value(BLOCKED_AUDIT_INSERT), 60, "the batch to block mid-write")
            cut_off(fault, server, blocker)
        back = time.monotonic()
        wait_until(lambda: db.history_rows_per_instance() == {1: INSTANCES}, 120, "the retry")
        report(f"batch written after its write was cut off ({fault})", [time.monotonic() - back])
    assert db.value("SELECT count(*) FROM audit_logs") == INSTANCES
    assert db.value("SELECT count(DISTINCT entity_id) FROM audit_logs") == INSTANCES
    assert db.value("SELECT count(*) FROM infrastructure_instances WHERE status = 'online'") == 10
