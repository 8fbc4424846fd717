"""The sweep through a real worker on Redis: batches, queues per zone, no overlap."""

import time
import uuid

import pytest
from sqlalchemy import delete, select

from agent.core.credentials import generate_key
from agent.core.settings import get_settings
from models import InfrastructureInstance
from models.agent import AgentLease
from models.session import session_scope
from tests.support.broker import redis_client


@pytest.fixture
def health_settings(database_url, monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_KEY", generate_key())
    monkeypatch.setenv("AGENT_HEALTH_JITTER_S", "0")
    monkeypatch.setenv("AGENT_HEALTH_BATCH_SIZE", "2")
    get_settings.cache_clear()
    with session_scope() as session:  # a clean slate: sweeps see every live instance
        session.execute(delete(AgentLease))
        session.execute(delete(InfrastructureInstance))
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def tcp_instances(health_settings, closed_port, redis_url, celery_app):
    """Five TCP instances on a closed port: four without a zone, one tagged for zone eu-1."""
    rows = [
        InfrastructureInstance(
            name=f"tcp-{n}",
            type="vm",
            host="127.0.0.1",
            port=port,
            connection_type="tcp",
            connection_config={},
            tags=tags,
        )
        for n, (port, tags) in enumerate([(closed_port, None)] * 4 + [(closed_port, ["zone:eu-1"])])
    ]
    with session_scope() as session:
        session.add_all(rows)
    yield [row.id for row in rows]
    with session_scope() as session:
        session.execute(delete(InfrastructureInstance))
    redis_client(redis_url).delete(zone_queue_key(celery_app))  # no worker of that zone


def zone_queue_key(app):
    return app.conf.broker_transport_options["global_keyprefix"] + "health.eu-1"


def checked_ids():
    with session_scope() as session:
        query = select(InfrastructureInstance.id).where(
            InfrastructureInstance.last_health_check.is_not(None)
        )
        return set(session.scalars(query))


def wait_for(condition, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_sweep_checks_every_due_instance_in_batches_on_a_real_worker(
    celery_app, celery_worker, tcp_instances, redis_url
):
    result = celery_app.send_task("agent.health.sweep").get(timeout=30)
    assert result["dispatched"] == 5
    assert result["queues"] == {"health": 2, "health.eu-1": 1}
    zoneless = set(tcp_instances[:4])
    assert wait_for(lambda: checked_ids() >= zoneless)
    # The zone's batch waits in its own queue for a worker inside that zone.
    assert tcp_instances[4] not in checked_ids()
    assert redis_client(redis_url).llen(zone_queue_key(celery_app)) == 1


def test_a_second_sweep_within_the_interval_dispatches_nothing(
    celery_app, celery_worker, tcp_instances
):
    first = celery_app.send_task("agent.health.sweep").get(timeout=30)
    second = celery_app.send_task("agent.health.sweep").get(timeout=30)
    assert first["dispatched"] == 5
    assert second["dispatched"] == 0
    assert "another sweep" in second["skipped"]


def test_on_demand_checks_reject_malformed_ids_and_keep_the_worker_alive(
    celery_app, celery_worker, health_settings
):
    bad = celery_app.send_task("agent.health.check_instance", args=["'; DROP TABLE x; --"])
    with pytest.raises(Exception, match="instance_id must be a UUID"):
        bad.get(timeout=30)
    unknown = celery_app.send_task("agent.health.check_instance", args=[str(uuid.uuid4())])
    assert unknown.get(timeout=30)["status"] == "not_checked"
