"""A batch of plugin checks with slow services keeps its concurrency (issue 18).

The checks run as coroutines on the process's event loop: a tarpit (a server dripping its
headers) is cancelled at its check's deadline, so it holds its slot no longer than that and
the fast services of the same batch are not kept waiting behind it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.core.clock import Clock
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Status
from agent.plugins.client import ClientLimits, build_pool
from agent.plugins.installation import InstallationProbe, InstallationSpec, check_installations
from tests.support.targets import DripHandler

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TIMEOUT_S = 1.0
MARGIN_S = 1.0
TARPITS = 16


class HealthyHandler(BaseHTTPRequestHandler):
    """Answers `{"status": "ok"}` at once, keeping the connection open."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """The healthy answer."""
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class RoomyServer(ThreadingHTTPServer):
    """A threaded HTTP server whose listen queue takes a whole batch's connects at once."""

    request_queue_size = 128
    daemon_threads = True
    block_on_close = False


@contextmanager
def serving_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = RoomyServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pool():
    made = build_pool(ClientLimits(timeout_s=TIMEOUT_S, connections_per_host=TARPITS * 2))
    yield made
    made.close()


def specs(port: int, count: int, prefix: str) -> list[InstallationSpec]:
    return [
        InstallationSpec(f"{prefix}-{n}", prefix, None, f"http://127.0.0.1:{port}")
        for n in range(count)
    ]


def batch(pool, tarpit_port, healthy_port, healthy, concurrency):
    checks = specs(tarpit_port, TARPITS, "tarpit") + specs(healthy_port, healthy, "healthy")
    clock = Clock.reading(dt.datetime.now(dt.UTC))
    resolver = SecretResolver(None)
    started = time.monotonic()
    done = check_installations(
        checks, lambda spec: InstallationProbe(spec, pool, resolver), concurrency, clock, 30.0
    )
    return {c.plugin_id: c.result for c in done}, time.monotonic() - started


def test_tarpits_in_a_batch_end_at_their_deadline_and_do_not_delay_the_healthy_services(pool):
    with serving_http(DripHandler) as tarpit, serving_http(HealthyHandler) as healthy:
        results, elapsed_s = batch(pool, tarpit, healthy, healthy=40, concurrency=32)
    slow = [r for key, r in results.items() if key.startswith("tarpit")]
    fast = [r for key, r in results.items() if key.startswith("healthy")]
    assert {r.error_class for r in slow} == {ErrorClass.TIMEOUT}
    assert max(r.latency_ms for r in slow) <= (TIMEOUT_S + MARGIN_S) * 1000
    assert {r.status for r in fast} == {Status.OK}, {(r.error_class, r.message) for r in fast}
    assert max(r.latency_ms for r in fast) < TIMEOUT_S * 1000  # none waited for a tarpit
    assert elapsed_s <= TIMEOUT_S + MARGIN_S  # all 16 tarpits timed out together


def test_a_tarpit_gives_its_slot_back_at_its_deadline(pool):
    with serving_http(DripHandler) as tarpit, serving_http(HealthyHandler) as healthy:
        results, elapsed_s = batch(pool, tarpit, healthy, healthy=4, concurrency=8)
    assert sum(r.error_class is ErrorClass.TIMEOUT for r in results.values()) == TARPITS
    assert sum(r.status is Status.OK for r in results.values()) == 4
    # 16 tarpits through 8 slots: two waves of one deadline each, not one wave per tarpit.
    assert 2 * TIMEOUT_S <= elapsed_s <= 2 * TIMEOUT_S + MARGIN_S
