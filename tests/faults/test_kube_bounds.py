"""A hostile Kubernetes API server cannot hold a check past its deadline or grow its memory.

Each case is one row of issue 16's table, with its bound asserted: elapsed time at most the
timeout plus a small margin, and the peak RSS growth of this process under a small cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from agent.core.credentials import SecretResolver, generate_key
from agent.core.results import ErrorClass
from agent.discovery import discoverer_for
from agent.probes import kubernetes
from tests.support.hostile_kube import hostile_kube, huge_page

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024
MARGIN_S = 0.5


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@contextmanager
def peak_rss_growth() -> Iterator[Callable[[], int]]:
    """Sample RSS every 10 ms inside the block; yields a function giving the peak growth."""
    before, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: max(peak[0], rss_bytes()) - before
    finally:
        done.set()
        sampler.join()


@pytest.fixture
def resolver() -> SecretResolver:
    return SecretResolver(generate_key())


def timed_probe(mode: str, resolver, timeout_s: float, **extra):
    with hostile_kube(mode) as server, peak_rss_growth() as growth:
        config = {
            "api_url": server.url,
            "ca_cert": server.ca_pem,
            "token": resolver.encrypt("hostile-test-token"),
        }
        started = time.monotonic()
        result = kubernetes.from_instance("", None, config | extra, resolver, timeout_s).run()
        return result, time.monotonic() - started, growth()


@pytest.mark.parametrize(
    ("mode", "message", "rss_cap"),
    [
        ("endless_readyz", f"GET /readyz: response larger than {256 * 1024} bytes", 16 * MiB),
        ("endless_nodes", f"GET /api/v1/nodes: response larger than {16 * MiB} bytes", 48 * MiB),
    ],
)
def test_an_endless_body_is_abandoned_past_its_cap_with_memory_flat(
    resolver, mode, message, rss_cap
):
    result, elapsed, grown = timed_probe(mode, resolver, timeout_s=10.0)

    assert result.error_class is ErrorClass.PROTOCOL, result.message
    assert message in result.message
    assert elapsed < 10.0
    assert grown < rss_cap, f"RSS grew {grown / MiB:.1f} MiB"


def test_a_smaller_cap_from_the_config_is_the_one_applied(resolver):
    result, _, grown = timed_probe(
        "endless_nodes", resolver, timeout_s=10.0, max_response_bytes=MiB
    )

    assert f"response larger than {MiB} bytes" in result.message
    assert grown < 16 * MiB, f"RSS grew {grown / MiB:.1f} MiB"


def test_100k_nodes_in_one_page_cannot_overshoot_the_deadline(resolver):
    huge_page()  # built before the clock starts: the server's work, not the check's
    caps = {"max_response_bytes": 256 * MiB, "max_items": 1_000_000}  # the deadline decides

    # Reading the whole page (nodes, then as many pods) takes about 1.4 s on a quiet machine
    # of this kind: a 0.5 s deadline must cut it off mid-page.
    result, elapsed, _ = timed_probe("huge_page", resolver, timeout_s=0.5, **caps)

    assert elapsed < 0.5 + MARGIN_S, f"{elapsed:.2f}s for a 0.5 s timeout: {result.message}"
    assert result.error_class is ErrorClass.TIMEOUT, result.message


def test_more_items_than_the_cap_is_a_protocol_error(resolver):
    huge_page()
    caps = {"max_response_bytes": 256 * MiB, "max_items": 1000}

    result, _, _ = timed_probe("huge_page", resolver, timeout_s=10.0, **caps)

    assert result.error_class is ErrorClass.PROTOCOL, result.message
    assert "list nodes: more than 1000 items" in result.message


def test_headers_dripped_a_byte_at_a_time_cannot_hold_the_check(resolver):
    result, elapsed, _ = timed_probe("header_drip", resolver, timeout_s=2.0)

    assert elapsed < 2.0 + MARGIN_S, f"{elapsed:.2f}s for a 2 s timeout"
    assert result.error_class is ErrorClass.TIMEOUT, result.message


def test_invalid_json_in_a_list_is_a_protocol_error(resolver):
    result, _, _ = timed_probe("invalid_json", resolver, timeout_s=5.0)

    assert result.error_class is ErrorClass.PROTOCOL, result.message
    assert "list nodes: the answer is not valid JSON" in result.message


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [
        ("endless_nodes", ErrorClass.PROTOCOL),  # its lists are endless too
        ("invalid_json", ErrorClass.PROTOCOL),
        ("header_drip", ErrorClass.TIMEOUT),
    ],
)
def test_discovery_is_bounded_the_same_way(resolver, mode, error_class):
    with hostile_kube(mode) as server, peak_rss_growth() as growth:
        config = {
            "api_url": server.url,
            "ca_cert": server.ca_pem,
            "token": resolver.encrypt("hostile-test-token"),
        }
        started = time.monotonic()
        outcome = discoverer_for("kubernetes", "", None, config, resolver, 2.0).run()
        elapsed = time.monotonic() - started

    assert outcome.error_class is error_class, outcome.message
    assert elapsed < 2.0 + MARGIN_S
    assert growth() < 48 * MiB
