"""Helpers the fixtures share."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

# The test servers listen on loopback, which the default address policy closes to plugin and
# MCP checks: the tests' agent runs with the operator setting that opens it (the tests of the
# refusal build the default policy themselves).
LOOPBACK_ALLOWED = {
    "AGENT_PLUGINS_ALLOW_CIDRS": json.dumps(["0.0.0.0/0", "::/0", "127.0.0.0/8", "::1/128"])
}


def missing_component(what: str, package: str) -> None:
    """Skip a test whose server is missing here; in CI that is a failure, not a skip."""
    message = f"{what} is not available: install {package}"
    if IN_CI:
        pytest.fail(f"{message} (CI must provide every component)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving_http(
    handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None = None
) -> Iterator[int]:
    """A threaded HTTP server of `handler` on a loopback port, optionally behind TLS."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def redis_client(url: str, **options: object) -> Any:
    """A redis-py client for a broker URL, the embedded one's `redis+socket://` included."""
    import redis

    return redis.Redis.from_url(url.replace("redis+socket:", "unix:", 1), **options)
