"""Loopback targets for real health checks: an HTTP server, and instance rows pointing at it.

Half the rows are `http` instances (a GET of `/`), half `tcp` instances (a connect to the
same port), in a migrated database of their own (`health_sweep.bench_database`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from models import InfrastructureInstance
from models.session import session_scope
from tests.support.network import serving_http


class Ok(BaseHTTPRequestHandler):
    """Answers every GET with a short 200."""

    def do_GET(self) -> None:
        """A 200 with a two-byte body."""
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        """Quiet: one line per check would drown the bench's output."""


@contextmanager
def loopback_http() -> Iterator[int]:
    """The port of a threaded HTTP server on 127.0.0.1."""
    with serving_http(Ok) as port:
        yield port


def seed_instances(count: int, port: int) -> list[str]:
    """`count` instance rows on `port` of 127.0.0.1, alternately http and tcp; their ids."""
    rows = [
        InfrastructureInstance(
            name=f"bench-{n}",
            type="vm",
            host="127.0.0.1",
            port=port,
            connection_type="http" if n % 2 else "tcp",
            connection_config={},
        )
        for n in range(count)
    ]
    with session_scope() as session:
        session.add_all(rows)
        session.flush()
        return [str(row.id) for row in rows]
