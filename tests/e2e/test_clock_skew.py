"""A worker whose wall clock is hours or a month ahead dates everything by the database's.

The worker runs under libfaketime (Debian `faketime`), which moves its whole process tree's
wall clock (`time.time()`, `datetime.now()`, ...) and leaves the monotonic clock alone, as an
NTP-less host drifts. The database, on the same machine, keeps the true time.
"""

import datetime as dt
import glob
import socket

import pytest
from sqlalchemy import delete, select

from models import (
    InfrastructureInstance,
    InstanceHealthHistory,
    PluginHealthHistory,
    ServiceInstallation,
    queries,
)
from models.agent import AgentLease
from models.session import session_scope
from tests.support.components import missing_component
from tests.support.fake_clock import FakeClock
from tests.support.processes import wait_until
from tests.support.rows import installed_service, nothing_else_due, tcp_instance
from tests.support.workers import private_redis, running_worker

pytestmark = pytest.mark.timeout(240)

INTERVAL_S = 60
TIMEOUT_S = 60
# Round trips between the test, the worker and the database; nothing near a skew.
SLACK = dt.timedelta(seconds=30)


@pytest.fixture(scope="module")
def libfaketime():
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        missing_component("libfaketime", "faketime")
    return found[0]


@pytest.fixture(scope="module", params=["+2h", "+30d"])
def skewed_worker(request, libfaketime, database_url, tmp_path_factory):
    """A prefork worker whose wall clock runs ahead by the parameter, on a Redis of its own."""
    environ = {
        "LD_PRELOAD": libfaketime,
        "FAKETIME": request.param,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    with (
        private_redis() as (broker_url, _),
        running_worker(
            tmp_path_factory.mktemp("skewed"),
            broker_url,
            environ,
            database_url=database_url,
            health_interval_s=str(INTERVAL_S),
            plugins_interval_s=str(INTERVAL_S),
        ) as worker,
    ):
        yield worker


@pytest.fixture
def targets(database_url, plugin_services):
    """Only these are due: a TCP instance on a listening port and a healthy installation."""
    nothing_else_due()
    with (
        socket.socket() as server,
        installed_service(plugin_services.url("open")) as installation_id,
    ):
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        instance_id = tcp_instance(server.getsockname()[1])
        yield instance_id, installation_id
    with session_scope() as session:
        session.execute(
            delete(InfrastructureInstance).where(InfrastructureInstance.id == instance_id)
        )


def database_time():
    with session_scope() as session:
        return queries.database_time(session)


def history_times(model, column, target):
    with session_scope() as session:
        return list(session.scalars(select(model.time).where(column == target)))


def last_check(model, target):
    with session_scope() as session:
        return session.scalar(select(model.last_health_check).where(model.id == target))


def leases():
    with session_scope() as session:
        return {lease.name: lease.expires_at for lease in session.scalars(select(AgentLease))}


def sweep_and_wait(worker, task, history, column, target, count):
    """Run one sweep (or refresh) on the worker; wait for the target's `count`-th history row."""
    assert worker.client.send_task(task).get(timeout=TIMEOUT_S)["dispatched"] == 1
    wait_until(
        lambda: len(history_times(history, column, target)) == count,
        TIMEOUT_S,
        f"history row {count} of {target}",
    )


JOBS = {
    "health": (
        "agent.health.sweep",
        "health.sweep",
        InfrastructureInstance,
        InstanceHealthHistory.instance_id,
    ),
    "plugins": (
        "agent.plugins.refresh",
        "plugins.refresh",
        ServiceInstallation,
        PluginHealthHistory.plugin_id,
    ),
}


@pytest.mark.parametrize("job", JOBS)
def test_a_worker_with_its_clock_ahead_dates_checks_history_and_leases_by_the_database(
    skewed_worker, targets, job
):
    task, sweep_lease, model, column = JOBS[job]
    target = targets[0] if model is InfrastructureInstance else targets[1]
    history = column.class_
    before = database_time()
    sweep_and_wait(skewed_worker, task, history, column, target, 1)
    after = database_time()
    [written] = history_times(history, column, target)
    assert before <= written <= after
    assert last_check(model, target) == written
    # The sweep's lease runs by the database's clock, and the target's lease was given back.
    [(name, expires_at)] = leases().items()
    assert name == sweep_lease
    assert before < expires_at <= after + dt.timedelta(seconds=INTERVAL_S / 2) + SLACK
    # One interval on, the next sweep checks the target again, not two hours or a month later.
    FakeClock().advance_to(INTERVAL_S)
    sweep_and_wait(skewed_worker, task, history, column, target, 2)
    assert last_check(model, target) <= database_time()
