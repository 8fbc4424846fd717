"""Real `celery beat` (and worker) processes on a Redis of the test's own, and what they sent."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from agent.core.settings import JOB_QUEUES
from tests.support.broker import redis_client
from tests.support.processes import agent_env, kill_group, start

INTERVAL_S = 5  # the shortest interval the settings allow
INTERVALS = ("health", "discovery", "plugins", "housekeeping", "retention")


def plain_url(database_url: str) -> str:
    """A `postgresql://` URL psycopg takes, whatever driver the URL names."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def forget_leases(database_url: str, *patterns: str) -> None:
    """Delete the leases whose names match `patterns` (SQL LIKE), as if nothing ever ran."""
    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        for pattern in patterns:
            conn.execute("DELETE FROM agent_leases WHERE name LIKE %s", (pattern,))


def leader(database_url: str) -> tuple[str, int] | None:
    """The holder of an unexpired leader lease and its process id, if any beat leads."""
    with psycopg.connect(plain_url(database_url)) as conn:
        row = conn.execute(
            "SELECT holder FROM agent_leases WHERE name = 'beat.leader' AND expires_at > now()"
        ).fetchone()
    return (row[0], int(row[0].split(":")[-2])) if row else None


def beat_env(tmp: Path, broker_url: str, database_url: str, **settings: str) -> dict[str, str]:
    """A beat's environment: every job every INTERVAL_S seconds, plus AGENT_ `settings`."""
    intervals = {f"AGENT_{name.upper()}_INTERVAL_S": str(INTERVAL_S) for name in INTERVALS}
    return agent_env(
        AGENT_BROKER_URL=broker_url,
        AGENT_DATABASE_URL=plain_url(database_url),
        AGENT_DATA_DIR=str(tmp),
        **intervals,
        **{f"AGENT_{name.upper()}": value for name, value in settings.items()},
    )


def start_beat(tmp: Path, name: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    """`celery -A agent beat`, its log in `<tmp>/<name>.log`."""
    args = [sys.executable, "-m", "celery", "-A", "agent", "beat", "--loglevel", "INFO"]
    args += ["--schedule", str(tmp / f"{name}-schedule"), *extra]
    return start(args, env, tmp / f"{name}.log")


def start_worker(tmp: Path, env: dict[str, str], queues: str) -> subprocess.Popen:
    """`celery -A agent worker` on `queues`, its log in `<tmp>/worker.log`."""
    args = [sys.executable, "-m", "celery", "-A", "agent", "worker", "--loglevel", "INFO"]
    args += ["--concurrency", "2", "--hostname", "faults@%h", "-Q", queues]
    return start(args, env, tmp / "worker.log")


def stop(*procs: subprocess.Popen) -> None:
    """A warm shutdown, or a kill when it takes too long."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        kill_group(proc)


@dataclass(frozen=True)
class Dispatch:
    """One message a beat put on a queue."""

    task: str
    sent_at: dt.datetime


def dispatches(broker_url: str) -> list[Dispatch]:
    """Every task message waiting on the job queues, with the time it was sent.

    Beat gives each run `expires` one interval after sending it, so that is where the
    sending time is read from.
    """
    client = redis_client(broker_url)
    found = []
    for queue in JOB_QUEUES:
        for raw in client.lrange(queue, 0, -1):
            headers = json.loads(raw)["headers"]
            expires = dt.datetime.fromisoformat(headers["expires"])
            found.append(Dispatch(headers["task"], expires - dt.timedelta(seconds=INTERVAL_S)))
    return sorted(found, key=lambda d: d.sent_at)


def by_task(found: list[Dispatch]) -> dict[str, list[dt.datetime]]:
    """Sending times per task name, oldest first."""
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    for dispatch in found:
        times[dispatch.task].append(dispatch.sent_at)
    return times


def gaps(times: list[dt.datetime]) -> list[float]:
    """Seconds between consecutive sending times."""
    return [(later - earlier).total_seconds() for earlier, later in pairwise(times)]


def task_results(broker_url: str, task: str) -> list[dict]:
    """The stored results of `task` (the result backend is the broker here)."""
    client = redis_client(broker_url)
    metas = [json.loads(client.get(key)) for key in client.scan_iter("celery-task-meta-*")]
    return [meta for meta in metas if meta.get("name") == task and meta["status"] == "SUCCESS"]
