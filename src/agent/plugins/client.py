"""The worker process's one HTTP client for plugin checks: pooled, bounded, strict.

Many installations share a few hosts, so connections are kept alive and reused; at most
`connections_per_host` requests go to one host at once (httpx bounds only the total), and a
check that cannot get a slot in time is a timeout. TLS is always verified against the
system's CAs. Cookies are never kept: one installation's session must not ride along on
another's request to the same host (they may belong to different spaces). Proxies from the
environment are ignored, redirects are not followed, and only addresses the plugins' address
policy permits are connected to (`agent.connections.address_policy`). After a fork the child builds
its own client. Every request ends by its check's deadline (`agent.connections.deadline`),
however slowly the server answers: the policy's guard wraps the deadline's network backend.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from agent.connections.address_policy import current
from agent.connections.deadline import bounded_transport
from agent.connections.guarded import guard_httpx
from agent.core.addresses import Family
from agent.core.results import ErrorClass, ProbeError

USER_AGENT = "infra-agent"

# httpx logs every request's full URL at INFO, and an API key may travel in the query string
# (`api_auth_config.location: query`); httpcore (and the httpx2 pair MCP uses) trace requests
# and their errors at DEBUG, quoting what the server sent back, the request itself when a
# hostile server echoes it. The worker's log must carry none of it, at any level.
for _name in ("httpx", "httpcore", "httpx2", "httpcore2"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class ClientLimits:
    """How big and how patient the shared client is."""

    timeout_s: float = 5.0
    max_connections: int = 100
    connections_per_host: int = 8
    keepalive_s: float = 60.0


class HostLimiter:
    """At most `per_host` requests at once to each (scheme, host, port)."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._slots: dict[tuple[str, str, int | None], threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, url: httpx.URL, wait_s: float) -> Iterator[None]:
        """Hold one of the host's slots; a TIMEOUT ProbeError if none frees up in `wait_s`."""
        semaphore = self._semaphore((url.scheme, url.host, url.port))
        if not semaphore.acquire(timeout=wait_s):
            raise ProbeError(ErrorClass.TIMEOUT, f"no free connection slot for {url.host}")
        try:
            yield
        finally:
            semaphore.release()

    def _semaphore(self, key: tuple[str, str, int | None]) -> threading.BoundedSemaphore:
        with self._lock:
            if key not in self._slots:
                self._slots[key] = threading.BoundedSemaphore(self.per_host)
            return self._slots[key]


@dataclass(frozen=True)
class Pool:
    """The client and its per-host limiter, built together."""

    client: httpx.Client
    limiter: HostLimiter
    limits: ClientLimits


def build_pool(limits: ClientLimits) -> Pool:
    """A new client with these limits (the process normally shares one, see `shared_pool`)."""
    transport = bounded_transport(
        verify=True,
        limits=httpx.Limits(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_connections,
            keepalive_expiry=limits.keepalive_s,
        ),
    )
    client = httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(limits.timeout_s),
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        headers={"User-Agent": USER_AGENT},
    )
    guard_httpx(client, lambda: current(Family.PLUGINS))
    return Pool(client, HostLimiter(limits.connections_per_host), limits)


_pool: Pool | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def shared_pool(limits: ClientLimits) -> Pool:
    """The process-wide pool, built on first use (again after a fork or when limits change)."""
    global _pool, _pool_pid
    with _pool_lock:
        stale = _pool is None or _pool_pid != os.getpid() or _pool.limits != limits
        if stale:
            if _pool is not None and _pool_pid == os.getpid():
                _pool.client.close()
            _pool, _pool_pid = build_pool(limits), os.getpid()
        assert _pool is not None
        return _pool


def close_shared_pool() -> None:
    """Close this process's pool (at worker shutdown, or between tests)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.client.close()
        _pool, _pool_pid = None, None
