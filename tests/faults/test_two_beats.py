"""Two beat processes at once: one dispatches, the other takes over when it dies.

Real `celery beat` processes against a Redis of the test's own and the test PostgreSQL;
every job runs every INTERVAL_S seconds, and what the beats sent is read off the queues.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import beat_schedule
from agent.runtime.beat import TICKS_PER_TTL
from tests.support.beats import (
    INTERVAL_S,
    beat_env,
    by_task,
    dispatches,
    forget_leases,
    gaps,
    leader,
    start_beat,
    start_worker,
    stop,
    task_results,
)
from tests.support.broker import redis_client
from tests.support.processes import wait_until
from tests.support.workers import private_redis

pytestmark = pytest.mark.e2e

LEASE_TTL_S = 6.0
TICK_S = LEASE_TTL_S / TICKS_PER_TTL
# How much later than its schedule a process on a busy 2-core machine may act.
SLACK_S = 1.5
SCHEDULED_TASKS = {entry["task"] for entry in beat_schedule.SCHEDULE.values()}


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A Redis of the test's own: the beats' broker and result backend."""
    with private_redis() as (url, _):
        yield url


@pytest.fixture
def beat_database_url(database_url: str) -> str:
    """The test database with no beat or sweep lease left by an earlier test."""
    forget_leases(database_url, "beat.%", "health.sweep")
    return database_url


def test_two_beats_send_each_periodic_job_once_per_interval(
    tmp_path: Path, broker_url: str, beat_database_url: str
) -> None:
    env = beat_env(tmp_path, broker_url, beat_database_url, beat_lease_ttl_s=str(LEASE_TTL_S))
    beats = [start_beat(tmp_path, name, env) for name in ("beat-a", "beat-b")]
    try:
        wait_until(lambda: leader(beat_database_url), 60, "a beat to take the lead")
        time.sleep(4 * INTERVAL_S + 1)
        assert all(proc.poll() is None for proc in beats), "both beats must live throughout"
    finally:
        stop(*beats)

    sent = by_task(dispatches(broker_url))
    assert set(sent) == SCHEDULED_TASKS
    for task, times in sent.items():
        assert 3 <= len(times) <= 5, f"{task} sent {len(times)} times in four intervals"
        for gap in gaps(times):
            assert INTERVAL_S * 0.9 - 0.1 <= gap <= INTERVAL_S + TICK_S + SLACK_S, (task, gap)


@pytest.mark.timeout(240)
def test_the_standby_sends_within_the_lease_ttl_and_a_tick_after_the_leader_is_killed(
    tmp_path: Path, broker_url: str, beat_database_url: str
) -> None:
    env = beat_env(tmp_path, broker_url, beat_database_url, beat_lease_ttl_s=str(LEASE_TTL_S))
    failovers = [failover_once(tmp_path, run, env, broker_url) for run in range(3)]

    print(f"failover after kill -9 of the leading beat: {failovers} s, ", end="")
    print(f"median {statistics.median(failovers):.2f} s (TTL {LEASE_TTL_S:g} s, tick {TICK_S:g} s)")
    assert max(failovers) <= LEASE_TTL_S + TICK_S + SLACK_S


def failover_once(tmp: Path, run: int, env: dict[str, str], broker_url: str) -> float:
    """Kill -9 the leading beat once it sent something; seconds until the standby sends."""
    database_url = env["AGENT_DATABASE_URL"]
    forget_leases(database_url, "beat.%")
    redis_client(broker_url).flushdb()
    beats = {p.pid: p for p in (start_beat(tmp, f"beat-{run}-{n}", env) for n in "ab")}
    try:
        wait_until(lambda: dispatches(broker_url), 60, "the leader to send its first runs")
        _, pid = leader(database_url)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        beats.pop(pid).wait(timeout=10)
        after = wait_until(lambda: sent_after(broker_url, killed_at), 60, "the standby to send")
        assert no_run_twice_in_an_interval(broker_url)
        return round(after - killed_at, 2)
    finally:
        stop(*beats.values())


def sent_after(broker_url: str, moment: float) -> float | None:
    """When the first message sent after `moment` (a Unix time) was sent, if one was."""
    later = [d.sent_at.timestamp() for d in dispatches(broker_url)]
    later = [at for at in later if at > moment]
    return min(later) if later else None


def no_run_twice_in_an_interval(broker_url: str) -> bool:
    """Whether every job's runs, across the failover, are at least most of an interval apart."""
    every_gap = [gap for times in by_task(dispatches(broker_url)).values() for gap in gaps(times)]
    return all(gap >= INTERVAL_S * 0.9 - 0.1 for gap in every_gap)


def test_a_leader_that_stops_cleanly_hands_over_at_the_standbys_next_tick(
    tmp_path: Path, broker_url: str, beat_database_url: str
) -> None:
    # A long TTL, so a handover within a tick can only come from the lease given back.
    ttl_s = 15.0
    env = beat_env(tmp_path, broker_url, beat_database_url, beat_lease_ttl_s=str(ttl_s))
    beats = {p.pid: p for p in (start_beat(tmp_path, name, env) for name in ("a", "b"))}
    try:
        holder, pid = wait_until(lambda: leader(beat_database_url), 60, "a beat to lead")
        standby = next(
            tmp_path / f"{name}.log" for name in "ab" if f":{pid}:" not in log(tmp_path, name)
        )
        wait_until(lambda: "stands by" in standby.read_text(), 60, "the other beat to stand by")
        beats[pid].terminate()
        stopped_at = time.monotonic()
        assert beats.pop(pid).wait(timeout=30) == 0
        wait_until(lambda: new_leader(beat_database_url, holder), 60, "the standby to lead")
        handover = time.monotonic() - stopped_at
    finally:
        stop(*beats.values())
    print(f"handover after a clean stop: {handover:.2f} s (tick {ttl_s / TICKS_PER_TTL:g} s)")
    assert handover <= ttl_s / TICKS_PER_TTL + SLACK_S


def new_leader(database_url: str, old_holder: str) -> bool:
    """Whether a beat other than `old_holder` now leads."""
    found = leader(database_url)
    return found is not None and found[0] != old_holder


def log(tmp: Path, name: str) -> str:
    """What beat `name` wrote so far."""
    return (tmp / f"{name}.log").read_text()


@pytest.mark.timeout(180)
def test_beats_without_the_leader_lease_still_never_run_overlapping_health_sweeps(
    tmp_path: Path, broker_url: str, beat_database_url: str
) -> None:
    # Celery's stock scheduler in both beats: each sends every sweep, and only the sweep
    # lease stands between them.
    env = beat_env(tmp_path, broker_url, beat_database_url)
    worker = start_worker(tmp_path, env, "health")
    stock = ("--scheduler", "celery.beat:Scheduler")
    beats = [start_beat(tmp_path, name, env, *stock) for name in ("beat-a", "beat-b")]
    try:
        wait_until(lambda: len(sweeps(broker_url)) >= 6, 90, "six sweeps to run")
    finally:
        stop(*beats, worker)

    ran = sweeps(broker_url)
    skipped = [result for result in ran if "skipped" in result["result"]]
    claimed = sorted(result["date_done"] for result in ran if "skipped" not in result["result"])
    assert skipped, "two beats without the leader lease should both have sent sweeps"
    assert len(claimed) <= len(ran) // 2 + 1
    assert all(gap >= INTERVAL_S * 0.9 - 0.1 for gap in gaps(parse_all(claimed)))


def sweeps(broker_url: str) -> list[dict]:
    """The health sweeps the worker finished."""
    return task_results(broker_url, "agent.health.sweep")


def parse_all(stamps: list[str]) -> list[dt.datetime]:
    """ISO timestamps as datetimes."""
    return [dt.datetime.fromisoformat(stamp) for stamp in stamps]
