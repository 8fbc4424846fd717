"""The check cadence is the configured interval, on a fake clock: nothing sleeps an interval.

The sweeps, refreshes and batches run unchanged on the real PostgreSQL, against real loopback
TCP ports and HTTP services; time moves on by dating the database back (`tests.support.fake_clock`).
"""

import datetime as dt
import socket

import pytest
from sqlalchemy import func, select, update

from agent.core.settings import get_settings
from agent.plugins.client import close_shared_pool
from models import (
    InfrastructureInstance,
    ServiceInstallation,
    queries,
)
from models.session import session_scope
from tasks import health, plugins
from tests.support.fake_clock import FakeClock
from tests.support.rows import installed_service, nothing_else_due, tcp_instance

INTERVAL_S = 60
# Beat sends each sweep on time, then a tenth of an interval late, early, late...; each check
# starts a fifth of an interval after the sweep that sent it (queue and jitter).
SWEEP_OFFSETS_S = [0, 6, -6, 6, -6, 6, -6]
CHECK_DELAY_S = 12


@pytest.fixture
def clock(database_url, monkeypatch):
    """A fake clock over a database where only this test's targets are due."""
    monkeypatch.setenv("AGENT_HEALTH_INTERVAL_S", str(INTERVAL_S))
    monkeypatch.setenv("AGENT_PLUGINS_INTERVAL_S", str(INTERVAL_S))
    monkeypatch.setenv("AGENT_HEALTH_JITTER_S", "0")
    get_settings.cache_clear()
    nothing_else_due()
    yield FakeClock()
    close_shared_pool()
    get_settings.cache_clear()


@pytest.fixture
def listening_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


@pytest.fixture
def failing_installation(clock, plugin_services):
    """An installation of a service whose health endpoint answers 500."""
    with installed_service(plugin_services.url("fail")) as installation_id:
        yield installation_id


def status_of(model, row_id):
    with session_scope() as session:
        return session.scalar(select(model.status).where(model.id == row_id))


def run_ticks(clock, plan, run_batch, watched):
    """Sweep at each interval (with beat's offsets), then run what it sent a moment later.

    Returns, per sweep: the ids it sent, and the status of each watched row afterwards.
    """
    ticks = []
    for n, offset_s in enumerate(SWEEP_OFFSETS_S):
        clock.advance_to(n * INTERVAL_S + offset_s)
        batches = plan(get_settings(), f"sweep-{n}") or []
        clock.advance_to(clock.now_s + CHECK_DELAY_S)
        for batch in batches:
            run_batch(batch)
        sent = {i for batch in batches for i in batch[-1]}
        ticks.append((sent, {row: status_of(model, row) for row, model in watched.items()}))
    return ticks


def test_every_sweep_checks_every_instance_and_offline_comes_after_n_intervals(
    clock, listening_port, closed_port
):
    up, down = tcp_instance(listening_port, "unknown"), tcp_instance(closed_port, "online")
    settings = get_settings()
    ticks = run_ticks(
        clock,
        health.plan_sweep,
        lambda batch: health.run_batch(settings, batch[2], holder=batch[0]),
        {up: InfrastructureInstance, down: InfrastructureInstance},
    )
    assert [sent for sent, _ in ticks] == [{up, down}] * len(SWEEP_OFFSETS_S)
    failures = settings.health_failures_before_offline
    down_statuses = [statuses[down] for _, statuses in ticks]
    assert down_statuses.index("offline") == failures - 1  # the Nth check, N-1 intervals on
    assert [statuses[up] for _, statuses in ticks][1] == "online"


def test_every_refresh_checks_every_installation_and_error_comes_after_n_intervals(
    clock, failing_installation
):
    settings = get_settings()
    ticks = run_ticks(
        clock,
        plugins.plan_refresh,
        lambda batch: plugins.run_batch(settings, batch[1], batch[2], holder=batch[0]),
        {failing_installation: ServiceInstallation},
    )
    assert [sent for sent, _ in ticks] == [{failing_installation}] * len(SWEEP_OFFSETS_S)
    statuses = [statuses[failing_installation] for _, statuses in ticks]
    assert statuses.index("error") == settings.plugins_failures_before_error - 1


def due_ids():
    with session_scope() as session:
        return [row.id for row in queries.due_instances(session, INTERVAL_S, 100)]


def test_a_target_checked_less_than_half_an_interval_ago_is_not_due_yet(clock, closed_port):
    instance = tcp_instance(closed_port, "online")
    health.check_now(get_settings(), instance, holder="on-demand")
    clock.advance_to(INTERVAL_S / 2 - 5)
    assert due_ids() == []
    clock.advance_to(INTERVAL_S / 2 + 5)
    assert due_ids() == [instance]


def test_a_sweep_within_half_an_interval_of_the_last_one_does_nothing(clock):
    assert health.plan_sweep(get_settings(), "first") == []
    clock.advance_to(INTERVAL_S / 2 - 5)
    assert health.plan_sweep(get_settings(), "second") is None
    clock.advance_to(INTERVAL_S / 2 + 5)
    assert health.plan_sweep(get_settings(), "third") == []


def test_a_check_dated_in_the_future_is_due_at_once(clock, closed_port):
    instance = tcp_instance(closed_port, "online")
    with session_scope() as session:  # written by a worker whose clock ran two hours ahead
        session.execute(
            update(InfrastructureInstance)
            .where(InfrastructureInstance.id == instance)
            .values(last_health_check=func.now() + dt.timedelta(hours=2))
        )
    assert due_ids() == [instance]
