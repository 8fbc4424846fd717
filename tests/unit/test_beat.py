"""The leader scheduler's own arithmetic, and its refusal to dispatch without the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule

from agent.celery import create_app
from agent.core.settings import Settings, get_settings
from agent.runtime.beat import RUN_LEASE, RUN_SHARE, TICKS_PER_TTL, LeaderScheduler, resume_from
from models import session as db
from tests.support.network import free_port

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)

# An app of this module's own: a scheduler caches the app's result backend, and the worker
# app of the integration tests must get the backend their fixtures configure.
app = create_app(Settings())


def entry(name: str, every: schedule | crontab) -> ScheduleEntry:
    return ScheduleEntry(name=name, task="agent.health.sweep", schedule=every, app=app)


def test_a_new_leader_resumes_each_interval_entry_from_its_run_lease():
    entries = {
        "sweep": entry("sweep", schedule(dt.timedelta(seconds=60))),
        "nightly": entry("nightly", crontab(minute="0", hour="4")),
        "never-ran": entry("never-ran", schedule(dt.timedelta(seconds=60))),
    }
    before = {name: e.last_run_at for name, e in entries.items()}
    expiries = {RUN_LEASE + "sweep": NOW, RUN_LEASE + "nightly": NOW}

    assert resume_from(entries, expiries) == 1
    assert entries["sweep"].last_run_at == NOW - dt.timedelta(seconds=60 * RUN_SHARE)
    assert entries["nightly"].last_run_at == before["nightly"]
    assert entries["never-ran"].last_run_at == before["never-ran"]


@pytest.fixture
def unreachable_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings naming a PostgreSQL port nothing listens on."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    monkeypatch.setenv("AGENT_DATABASE_URL", url)
    monkeypatch.setenv("AGENT_BEAT_LEASE_TTL_S", "9")
    get_settings.cache_clear()
    db.dispose_engine()
    yield
    db.dispose_engine()
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_beat_that_cannot_reach_the_database_sends_nothing_and_ticks_within_the_ttl(
    unreachable_database: None,
):
    scheduler = LeaderScheduler(app=app, max_interval=300)
    scheduler.apply_async = pytest.fail  # it must not get as far as sending

    assert scheduler.max_interval == 9 / TICKS_PER_TTL
    assert scheduler.tick() == scheduler.max_interval
    assert scheduler.leading is False
