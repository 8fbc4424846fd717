"""Redis crashed and restarted under a running worker and beat, mid-sweep.

A Redis without persistence comes back empty: the batches queued in it are gone. The sweep
leased their instances at dispatch for one interval plus the task time limit, so once those
leases expire a later periodic sweep selects the instances again. A Redis with an
append-only file keeps what was queued (docs/deploy.md, "Production Redis").
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.support.processes import wait_until
from tests.support.servers import RedisServer
from tests.support.stack import Database, made, report, running_beat, seconds_until
from tests.support.workers import client_app, running_worker

pytestmark = pytest.mark.e2e

INSTANCES = 16
# More restarts in a row can kill the worker: kombu bug, see docs/reliability.md.
RESTARTS = 1
DOWN_S = 2.0
# Instance leases last one interval plus the time limit: 10 + 20 s here.
SWEEP_SETTINGS = {
    "health_interval_s": "10",
    "health_batch_size": "2",
    "health_timeout_s": "2",
    "visibility_timeout_s": "60",
    "task_soft_time_limit_s": "15",
    "task_time_limit_s": "20",
}
LEASE_S = 10 + 20
# A full sweep's batches (8 of 2 instances, 2 s each) take 8 s on the worker's 2 processes.
DRAIN_S = 8


def queued_instance_ids(server: RedisServer, queue: str = "health") -> set[str]:
    """The instance ids in the batch messages waiting in `queue` (kombu's JSON envelope)."""
    ids = set()
    for raw in server.client().lrange(queue, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.update(args[0])
    return ids


def checked_ids(db: Database) -> set[str]:
    ids = db.value("SELECT array_agg(DISTINCT instance_id::text) FROM instance_health_history")
    return set(ids or [])


def sweeps_sent(beat_log) -> int:
    return beat_log.read_text().count("Sending due task health-sweep")


def seconds_to_consume(server: RedisServer) -> float:
    """Crash Redis, start it again after DOWN_S; how long until a task sent then is done.

    The sender is a new client: Celery's result listener in a client that lived through a
    restart may miss results (see docs/reliability.md); the worker is what is measured.
    """
    server.crash()
    time.sleep(DOWN_S)
    server.start()
    started = time.monotonic()
    client = client_app(server.url)
    try:
        client.send_task("agent.system.ping").get(timeout=60)
        return time.monotonic() - started
    finally:
        client.close()


@pytest.fixture
def banner_instances(fault_db, silent_listener) -> Database:
    """Instances whose checks take the whole check timeout, so batches queue up behind them."""
    fault_db.add_tcp_instances(INSTANCES, silent_listener.ports, read_banner=True)
    return fault_db


@pytest.mark.timeout(300)
def test_after_redis_restarts_the_worker_consumes_again_and_lost_batches_are_swept_again(
    banner_instances, broker, tmp_path
):
    """Redis (no persistence) is crashed while a sweep's batches wait in it. Proves: the worker
    reconnects and consumes again within seconds, beat keeps
    sending sweeps, and every instance whose batch was lost is checked by a later periodic
    sweep once its lease expires: within the lease (one interval plus the time limit), an
    interval or two, and the time the sweep's batches take."""
    settings = {"database_url": banner_instances.url, **SWEEP_SETTINGS}
    with (
        running_worker(made(tmp_path / "worker"), broker.url, **settings),
        running_beat(tmp_path / "beat", broker.url, **settings) as beat_log,
    ):
        wait_until(lambda: broker.client().llen("health") >= 3, 60, "batches to queue up")
        lost = queued_instance_ids(broker)
        consumed = [seconds_to_consume(broker)]
        sweeps_before = sweeps_sent(beat_log)
        assert lost - checked_ids(banner_instances)  # gone with Redis, not checked yet
        # Leased at dispatch, before the crash: free within LEASE_S, swept within an interval
        # (give or take one), then checked once the sweep's batches drain.
        recovered = seconds_until(
            lambda: lost <= checked_ids(banner_instances), LEASE_S + 2 * 10 + DRAIN_S, "lost"
        )
        consumed += [seconds_to_consume(broker) for _ in range(RESTARTS - 1)]
        assert sweeps_sent(beat_log) > sweeps_before
    report("worker consuming again after Redis came back", consumed)
    report("instances of lost batches checked again after Redis came back", [recovered])
    assert max(consumed) < 30


@pytest.mark.timeout(120)
def test_a_task_queued_in_redis_without_persistence_is_lost_when_it_crashes(broker):
    """The case for the production settings: an ephemeral Redis forgets what was queued."""
    broker.client().lpush("agent", b"queued")
    broker.crash()
    broker.start()
    assert broker.client().llen("agent") == 0


@pytest.mark.timeout(180)
def test_a_task_queued_in_redis_with_an_append_only_file_survives_a_crash(fault_db, tmp_path):
    """With appendonly yes and appendfsync everysec, a task queued a second before Redis is
    SIGKILLed is still queued after the restart, and a worker started then runs it."""
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    client = client_app(server.url)
    try:
        task = client.send_task("agent.system.ping")
        time.sleep(1.5)  # one everysec fsync, and then some
        server.crash()
        server.start()
        assert server.client().llen("agent") == 1
        with running_worker(made(tmp_path / "worker"), server.url, database_url=fault_db.url):
            assert task.get(timeout=60)["pong"] is True
    finally:
        client.close()
        server.crash()
