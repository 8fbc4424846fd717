"""The agent's processes and data as a fault test sees them: beat, listeners, counts, timings."""

from __future__ import annotations

import datetime as dt
import selectors
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from tests.support.processes import agent_env, start, wait_until
from tests.support.workers import process_tree, stop

# The shortest redelivery the settings allow: a message a dead worker held comes back after
# the visibility timeout (60 s at least), and every time limit must stay below it.
FAST_REDELIVERY = {
    "visibility_timeout_s": "60",
    "task_soft_time_limit_s": "40",
    "task_time_limit_s": "50",
}


class Database:
    """A database of the test's own, read with plain SQL in autocommit."""

    def __init__(self, url: str) -> None:
        self.url = url

    def value(self, sql: str, *params: Any) -> Any:
        """The first column of the first row of `sql`."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql, params).fetchone()
            return row[0] if row else None

    def benchmark_points(self, package: str) -> int:
        """How many benchmark points of `package` are stored."""
        return self.value("SELECT count(*) FROM benchmarks WHERE package_name = %s", package)

    def execute(self, sql: str, *params: Any) -> None:
        """Run one statement."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql, params)

    def add_tcp_instances(self, count: int, ports: list[int], read_banner: bool = False) -> None:
        """`count` TCP instances on 127.0.0.1, spread over `ports` (many rows per target)."""
        config = '{"read_banner": true}' if read_banner else "{}"
        self.execute(
            "INSERT INTO infrastructure_instances (name, type, host, port, connection_type,"
            " connection_config) SELECT 'fault-' || g, 'vm', '127.0.0.1',"
            " (%s::int[])[1 + g %% cardinality(%s::int[])], 'tcp', %s::jsonb"
            " FROM generate_series(1, %s) AS g",
            ports,
            ports,
            config,
            count,
        )

    def history_rows_per_instance(self) -> dict[int, int]:
        """How many instances have 0, 1, 2... rows in `instance_health_history`."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT n, count(*) FROM (SELECT count(h.instance_id) AS n"
                " FROM infrastructure_instances i LEFT JOIN instance_health_history h"
                " ON h.instance_id = i.id GROUP BY i.id) AS per GROUP BY n"
            ).fetchall()
        return dict(rows)


class Listener:
    """TCP listeners on 127.0.0.1 served by one thread: each connection closed at once, or held.

    A held connection never gets a byte, so a probe that waits for a banner times out.
    """

    def __init__(self, count: int = 1, hold: bool = False) -> None:
        self.hold = hold
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self.ports = [self._listen() for _ in range(count)]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _listen(self) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4096)
        server.setblocking(False)
        self._selector.register(server, selectors.EVENT_READ)
        return server.getsockname()[1]

    def _serve(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.2):
                self._accept(key.fileobj)

    def _accept(self, server: Any) -> None:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        if self.hold:
            self._held.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Stop serving and close every socket."""
        self._stopping = True
        self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        for conn in self._held:
            conn.close()


@contextmanager
def running_beat(tmp: Path, broker_url: str, **settings: str) -> Iterator[Path]:
    """`celery -A agent beat` with AGENT_ `settings`; yields its log file."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = agent_env(
        AGENT_BROKER_URL=broker_url,
        AGENT_DATA_DIR=str(tmp),
        **{f"AGENT_{name.upper()}": value for name, value in settings.items()},
    )
    args = [sys.executable, "-m", "celery", "-A", "agent", "beat", "--loglevel", "INFO"]
    args += ["--schedule", str(tmp / "beat-schedule")]
    proc = start(args, env, tmp / "beat.log")
    try:
        wait_until(lambda: "beat: Starting" in (tmp / "beat.log").read_text(), 60, "beat")
        yield tmp / "beat.log"
    finally:
        stop(proc)


def made(directory: Path) -> Path:
    """`directory`, created: each worker of a test gets its own log and heartbeat file."""
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def received(logs: list[Path], task_id: str) -> int:
    """How many times the workers writing `logs` received the task `task_id`."""
    marker = f"[{task_id}] received"
    return sum(log.read_text().count(marker) for log in logs if log.exists())


def received_at(log: Path, task_id: str) -> float:
    """When (epoch seconds, local clock) the worker writing `log` last received `task_id`."""
    marker = f"[{task_id}] received"
    line = [line for line in log.read_text().splitlines() if marker in line][-1]
    stamp = line.split("[", 1)[1].split(":", 3)
    return dt.datetime.strptime(":".join(stamp[:3]), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def children_connected_to(pid: int, port: int) -> list[int]:
    """The processes below `pid` with a TCP connection to `port` (any address)."""
    remote = f":{port:04X}"
    connected = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[2].endswith(remote):
                connected.add(fields[9])
    return [child for child in process_tree(pid)[1:] if socket_inodes(child) & connected]


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets `pid` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def seconds_until(condition: Callable[[], object], timeout_s: float, what: str) -> float:
    """How long `condition()` took to become true, polled every tenth of a second."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def report(name: str, values: list[float], unit: str = "s") -> str:
    """One line of figures for the test output: median, min, max."""
    line = (
        f"[reliability] {name}: median {statistics.median(values):.2f}{unit}"
        f" (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )
    print(line)
    return line
