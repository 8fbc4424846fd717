"""Hostile HTTP targets no real server can be made to be: a drip and an endless body.

Everything else they answer is what the real server would: the Docker Engine API's
`/_ping`, `/version` and `/info` as Podman answers them, a JSON OAuth2 token, a health body.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler

DRIP_INTERVAL_S = 0.2  # far below any per-read timeout: only a deadline can end it
DRIP_FOR_S = 30.0  # then it stops, so a check without a deadline fails its test, not hangs
ENGINE = {
    "/_ping": b"OK",
    "/version": {"ApiVersion": "1.41", "Version": "4.3.1", "Os": "linux", "Arch": "amd64"},
    "/info": {"OperatingSystem": "Debian GNU/Linux 12", "NCPU": 2, "Containers": 0},
}


class DripHandler(BaseHTTPRequestHandler):
    """Answers every request with a status line and headers sent one byte at a time."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Drip an answer whose headers never end (until DRIP_FOR_S)."""
        answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000
        ends = time.monotonic() + DRIP_FOR_S
        try:
            for byte in answer:
                if time.monotonic() > ends:
                    break
                self.wfile.write(bytes([byte]))
                time.sleep(DRIP_INTERVAL_S)
        except OSError:
            pass  # the client gave up: what it should do

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def send_endless(handler: BaseHTTPRequestHandler, opening: bytes, item: bytes) -> None:
    """A 200 JSON answer that opens with `opening` and repeats `item` until the client leaves."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Connection", "close")
    handler.end_headers()
    block = item * max(1, 65536 // len(item))
    ends = time.monotonic() + DRIP_FOR_S
    try:
        handler.wfile.write(opening)
        while time.monotonic() < ends:
            handler.wfile.write(block)
    except OSError:
        pass


def send_json(handler: BaseHTTPRequestHandler, document: object) -> None:
    """A small 200 answer: JSON, or bytes as they are."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class EndlessEngineHandler(BaseHTTPRequestHandler):
    """A Docker Engine API whose `/containers/json` is an array that never closes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Answer like the engine, except for the endless list."""
        path = self.path.split("?")[0]
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        if path == "/containers/json":
            send_endless(self, b"[", b'{"Id":"0123456789abcdef","State":"running"},')
        else:
            send_json(self, ENGINE.get(path, {}))

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class EndlessTokenHandler(BaseHTTPRequestHandler):
    """An OAuth2 token endpoint whose answer never ends."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """A token document that keeps growing."""
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        send_endless(self, b'{"access_token": "', b"x" * 1024)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class InvalidJsonEngineHandler(BaseHTTPRequestHandler):
    """A Docker Engine API that answers `/version` with something that is not JSON."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """`/_ping` says OK; everything else is broken JSON."""
        path = self.path.split("?")[0]
        send_json(self, b"OK" if path.endswith("/_ping") else b'{"ApiVersion": "1.41",')

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def rss_bytes() -> int:
    """This process's resident memory now (not its peak)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096


class MemoryGrowth:
    """How much memory a block allocated at its peak, and how much RSS it kept afterwards.

    The peak comes from tracemalloc, not from RSS samples: an allocator that reuses memory
    an earlier test freed would hide a body read whole and then dropped.
    """

    def __enter__(self) -> MemoryGrowth:
        self._rss_before = rss_bytes()
        tracemalloc.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.kept_rss_bytes = rss_bytes() - self._rss_before
