"""IPv6 literals as instance hosts: `::1` reaches a real Podman API and a real HTTP server.

An instance row stores the bare address (`::1`); the probes bracket it where a URL needs it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import httpx
import pytest

from agent.core.credentials import SecretResolver
from agent.core.results import Status
from agent.probes import probe_for
from tests.support.components import missing_component
from tests.support.podman import PodmanStorage

pytestmark = pytest.mark.timeout(120)

NO_KEY = SecretResolver(None)


def free_ipv6_port() -> int:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
            return sock.getsockname()[1]
    except OSError:
        missing_component("an IPv6 loopback address (::1)", "a kernel with IPv6 enabled")
        raise


@pytest.fixture
def podman_on_ipv6(podman_storage: PodmanStorage) -> Iterator[int]:
    """A Podman API service listening on tcp://[::1]:<port>, plain HTTP."""
    port = free_ipv6_port()
    command = ["podman", *podman_storage.flags(), "system", "service", "--time=0"]
    process = subprocess.Popen(
        [*command, f"tcp://[::1]:{port}"],
        env=podman_storage.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_ping(f"http://[::1]:{port}/_ping", process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def _wait_for_ping(url: str, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up and process.poll() is None:
        try:
            if httpx.get(url, timeout=1).text == "OK":
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("podman system service on [::1] did not answer /_ping")


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class Ipv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def http_on_ipv6() -> Iterator[int]:
    server = Ipv6Server(("::1", free_ipv6_port()), Ok)
    Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_docker_instance_on_an_ipv6_literal_is_checked(podman_on_ipv6):
    config = {"tls": False}
    result = probe_for("docker_api", "::1", podman_on_ipv6, config, NO_KEY, 10.0).run()
    assert (result.status, result.error_class) == (Status.OK, None), result.message
    assert result.facts["endpoint"] == f"tcp://[::1]:{podman_on_ipv6}"


def test_an_http_instance_on_an_ipv6_literal_is_checked(http_on_ipv6):
    result = probe_for("http", "::1", http_on_ipv6, {}, NO_KEY, 5.0).run()
    assert (result.status, result.facts["status_code"]) == (Status.OK, 204)
