"""The address policy fitted into the HTTP clients the checks use, at the moment they connect.

Each client resolves a name once, here, keeps only the addresses `agent.connections.address_policy`
permits, and connects to one of those by its address (TLS still verifies the name). So the
policy judges the address actually connected, with no second lookup in between.

- httpx (HTTP instances, installations) and httpx2 (MCP): a network backend in the pool;
- urllib3 (the docker SDK through requests, the Kubernetes client): the pools' connections;
- aiohttp (installations, on the process's event loop): the connector's host resolution.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import anyio
import httpcore
import httpcore2
import requests
import requests.adapters
import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from agent.connections.address_policy import first_permitted, judge
from agent.core.addresses import AddressPolicy

PolicyOf = Callable[[], AddressPolicy]
# httpx or httpx2, sync or async: what guard_httpx is given, it hands back.
_Client = TypeVar("_Client")


class GuardedBackend(httpcore.NetworkBackend):
    """A network backend (httpcore's socket one by default) that connects only where permitted.

    It wraps the backend the pool already had, so the deadline's backend
    (`agent.connections.deadline`) still bounds every connect and read of a guarded client.
    """

    def __init__(self, policy_of: PolicyOf, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy_of = policy_of
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        """Connect to the first permitted address of `host`."""
        address = first_permitted(host, port, self._policy_of())
        return self._inner.connect_tcp(address, port, *args, **kwargs)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        """Never: a row cannot point a check at a socket on the worker."""
        raise ConnectionRefusedError("unix sockets are not reachable by this client")

    def sleep(self, seconds: float) -> None:
        """As the inner backend sleeps."""
        self._inner.sleep(seconds)


class GuardedAsyncBackend(httpcore2.AsyncNetworkBackend):
    """An httpcore2 backend (anyio's by default) connecting only to addresses the policy permits."""

    def __init__(
        self, policy_of: PolicyOf, inner: httpcore2.AsyncNetworkBackend | None = None
    ) -> None:
        self._policy_of = policy_of
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        """Resolve without blocking the loop, judge, connect to the first permitted address."""
        import socket

        entries = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = str(judge(host, entries, self._policy_of())[0][4][0])
        return await self._inner.connect_tcp(address, port, *args, **kwargs)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        """Never: a row cannot point a check at a socket on the worker."""
        raise ConnectionRefusedError("unix sockets are not reachable by this client")

    async def sleep(self, seconds: float) -> None:
        """As the inner backend sleeps."""
        await self._inner.sleep(seconds)


def guard_httpx(client: _Client, policy_of: PolicyOf) -> _Client:
    """`client` (httpx or httpx2, sync or async) with its pool's backend guarded; returned.

    The guard wraps the backend the pool has (a bounded one keeps bounding the connections).
    """
    inner: Any = client  # the pool is private, and not the same class in httpx and httpx2
    pool = inner._transport._pool  # no public way to name the backend of a default transport
    assert hasattr(pool, "_network_backend"), "httpcore changed: the address policy needs a look"
    is_async = isinstance(pool, httpcore2.AsyncConnectionPool)
    guarded = GuardedAsyncBackend if is_async else GuardedBackend
    pool._network_backend = guarded(policy_of, pool._network_backend)
    return client


class _Guarded:
    """A urllib3 connection whose socket goes to a permitted address of its host."""

    policy_of: PolicyOf
    _dns_host: str
    port: int

    def _new_conn(self) -> Any:
        name = self._dns_host
        self._dns_host = first_permitted(name, self.port, self.policy_of())
        try:
            return super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = name  # `host` (TLS name checks) reads it again afterwards


def guard_pool_manager(manager: urllib3.PoolManager, policy_of: PolicyOf) -> None:
    """Make every pool `manager` creates from now on connect through the policy.

    The guard subclasses the pool and connection classes the manager already has, so what
    they do (the Kubernetes deadline watching each socket) still happens on a guarded one.
    """
    classes = {}
    for scheme, default in (("http", HTTPConnectionPool), ("https", HTTPSConnectionPool)):
        pool_class: type[HTTPConnectionPool] = manager.pool_classes_by_scheme.get(scheme, default)
        connection_class = pool_class.ConnectionCls
        guarded = type(
            f"Guarded{connection_class.__name__}",
            (_Guarded, connection_class),
            {"policy_of": staticmethod(policy_of)},
        )
        classes[scheme] = type(
            f"Guarded{pool_class.__name__}", (pool_class,), {"ConnectionCls": guarded}
        )
    manager.pool_classes_by_scheme = classes


def guard_adapter(adapter: requests.adapters.BaseAdapter, policy_of: PolicyOf) -> None:
    """Guard a requests adapter's pool manager, when it has one."""
    manager = getattr(adapter, "poolmanager", None)
    if isinstance(manager, urllib3.PoolManager):
        guard_pool_manager(manager, policy_of)


class GuardedConnector(aiohttp.TCPConnector):
    """An aiohttp connector that connects only to addresses the policy permits.

    aiohttp resolves a name (through its resolver and DNS cache) and then connects to exactly
    the addresses `_resolve_host` returns, TLS still checking the name; IP literals skip the
    resolver but not this method. So the addresses are judged here, after every lookup or
    cache hit, and only those that passed are handed on to be connected.
    """

    def __init__(self, policy_of: PolicyOf, **options: Any) -> None:
        super().__init__(**options)
        self._policy_of = policy_of

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> Any:
        resolved = await super()._resolve_host(host, port, traces=traces)
        policy = self._policy_of()
        allowed = [entry for entry in resolved if _permitted(entry["host"], policy)]
        if not allowed:
            judge(host, [_as_entry(entry) for entry in resolved], policy)  # raises, naming a rule
        return allowed


@functools.lru_cache(maxsize=4096)
def _permitted(address: str, policy: AddressPolicy) -> bool:
    return policy.refusal(ipaddress.ip_address(address.split("%", 1)[0])) is None


def _as_entry(resolved: Any) -> tuple[Any, ...]:
    return (resolved["family"], None, None, "", (resolved["host"], resolved["port"]))
