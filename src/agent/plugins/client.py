"""The worker process's one HTTP client for plugin checks: pooled, bounded, strict.

An `aiohttp` session on the process's event loop (`agent.probes.aio`), built once and shared
by every installation check and token fetch of the process (see docs/decisions.md for why
aiohttp). Many installations share a few hosts, so connections are kept alive and reused; at
most `connections_per_host` requests go to one host at once, and a check still waiting for a
connection at its deadline is a timeout. TLS is always verified against the system's CAs,
with one TLS context built with the client. Cookies are never kept: one installation's
session must not ride along on another's request to the same host (they may belong to
different spaces). Proxies from the environment are ignored, redirects are not followed, and
only addresses the plugins' address policy permits are connected to
(`agent.connections.guarded`). After a fork the child builds its own client on its own loop.
Every request ends by its check's deadline: the check is cancelled when it passes
(`agent.probes.aio.run_async`).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass

import aiohttp

from agent.connections.address_policy import current
from agent.connections.guarded import GuardedConnector
from agent.core.addresses import Family
from agent.probes.aio import process_loop

USER_AGENT = "infra-agent"

# httpx logs every request's full URL at INFO, and an API key may travel in the query string
# (`api_auth_config.location: query`); httpcore (and the httpx2 pair MCP uses) trace requests
# and their errors at DEBUG, quoting what the server sent back, the request itself when a
# hostile server echoes it. The worker's log must carry none of it, at any level.
for _name in ("httpx", "httpcore", "httpx2", "httpcore2", "aiohttp"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class ClientLimits:
    """How big and how patient the shared client is."""

    timeout_s: float = 5.0
    max_connections: int = 100
    connections_per_host: int = 8
    keepalive_s: float = 60.0


@dataclass(frozen=True)
class Pool:
    """The session, built on the process's loop, and the limits it was built with."""

    session: aiohttp.ClientSession
    limits: ClientLimits

    def close(self) -> None:
        """Close the session and its connections (from any thread but the loop's)."""
        if not self.session.closed:
            process_loop().run(self.session.close())


def build_pool(limits: ClientLimits) -> Pool:
    """A new client with these limits (the process normally shares one, see `shared_pool`)."""
    loop = process_loop()
    session = loop.run(_new_session(limits))
    loop.on_close(session.close)
    return Pool(session, limits)


async def _new_session(limits: ClientLimits) -> aiohttp.ClientSession:
    connector = GuardedConnector(
        lambda: current(Family.PLUGINS),
        ssl=ssl.create_default_context(),
        limit=limits.max_connections,
        limit_per_host=limits.connections_per_host,
        keepalive_timeout=limits.keepalive_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=limits.timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )


_pool: Pool | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def shared_pool(limits: ClientLimits) -> Pool:
    """The process-wide pool, built on first use (again after a fork or when limits change)."""
    global _pool, _pool_pid
    with _pool_lock:
        stale = _pool is None or _pool_pid != os.getpid() or _pool.limits != limits
        if stale or _pool is None or _pool.session.closed:
            if _pool is not None and _pool_pid == os.getpid():
                _pool.close()
            _pool, _pool_pid = build_pool(limits), os.getpid()
        return _pool


def close_shared_pool() -> None:
    """Close this process's pool (at worker shutdown, or between tests)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.close()
        _pool, _pool_pid = None, None
