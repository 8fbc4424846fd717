"""Loopback ports and HTTP servers for the tests, and the policy that lets checks reach them."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The test servers listen on loopback, which the default address policy closes to plugin and
# MCP checks: the tests' agent runs with the operator setting that opens it (the tests of the
# refusal build the default policy themselves).
LOOPBACK_ALLOWED = {
    "AGENT_PLUGINS_ALLOW_CIDRS": json.dumps(["0.0.0.0/0", "::/0", "127.0.0.0/8", "::1/128"])
}


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
