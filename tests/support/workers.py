"""A real `celery worker` subprocess on a Redis of its own, and what it listens on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from agent.celery import celery_config
from agent.core.settings import load_settings
from tests.support.broker import redis_client
from tests.support.components import missing_component
from tests.support.network import free_port
from tests.support.processes import agent_env, kill_group, start, wait_until

QUEUES = "agent,celery,health,discovery,benchmarks,housekeeping,plugins"


@contextmanager
def private_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of the test's own (it may be stopped), its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_component("redis-server", "redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: _pings(url), 20, "the private Redis to answer")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


def _pings(url: str) -> bool:
    try:
        return bool(redis_client(url).ping())
    except redis.ConnectionError:
        return False


@dataclass
class Worker:
    """A running worker: its process, log file, heartbeat file and a client app for it."""

    proc: subprocess.Popen
    log: Path
    heartbeat: Path
    client: Celery
    metrics_url: str = ""

    def lines(self) -> list[str]:
        """What the worker wrote so far, line by line."""
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@contextmanager
def running_worker(
    tmp: Path, broker_url: str, environ: Mapping[str, str] | None = None, **settings: str
) -> Iterator[Worker]:
    """`celery -A agent worker` (prefork) with AGENT_ `settings`, until it consumes.

    `environ` adds other variables to its environment (`LD_PRELOAD`, ...).
    """
    heartbeat = tmp / "worker.alive"
    env = agent_env(
        AGENT_BROKER_URL=broker_url,
        AGENT_DATA_DIR=str(tmp),
        AGENT_LIVENESS_FILE=str(heartbeat),
        AGENT_HEALTH_JITTER_S="0",
        **{f"AGENT_{name.upper()}": value for name, value in settings.items()},
        **(environ or {}),
    )
    hostname = f"obs-{uuid.uuid4().hex[:8]}@%h"
    args = [sys.executable, "-m", "celery", "-A", "agent", "worker", "--concurrency", "2"]
    args += ["--loglevel", "INFO", "--hostname", hostname, "-Q", QUEUES]
    proc = start(args, env, tmp / "worker.log")
    client = client_app(broker_url)
    try:
        wait_until(heartbeat.exists, 60, "the worker to consume")
        yield Worker(proc, tmp / "worker.log", heartbeat, client)
    finally:
        client.close()
        stop(proc)


def client_app(broker_url: str) -> Celery:
    """A Celery app that sends tasks by name to `broker_url`, without becoming the current app."""
    app = Celery("agent-test-client", set_as_current=False)
    app.config_from_object(celery_config(load_settings(broker_url=broker_url)))
    return app


def stop(proc: subprocess.Popen) -> None:
    """A warm shutdown, or a kill when it takes too long."""
    if proc.poll() is None:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    kill_group(proc)


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += process_tree(int(child))
    return found


def listening_ports(pid: int) -> set[int]:
    """The TCP ports that `pid` or its children listen on."""
    inodes = set()
    for member in process_tree(pid):
        for fd in Path(f"/proc/{member}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
