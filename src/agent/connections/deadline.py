"""One absolute deadline per check, enforced on every socket operation of the HTTP clients.

httpx's timeouts bound each read, not the request: a server that drips its status line at
one byte a second never trips them. `Probe.run()` opens a `deadline_scope` for its check;
the network backend installed by `bounded_transport` gives every connect, TLS handshake,
read and write at most the time left, and refuses to start one once the deadline has passed.
The deadline lives in a context variable, so it follows the check into whatever code it
calls on its thread (the OAuth2 token fetch, the docker SDK through `DockerAdapter`), and a
pooled client shared by many checks still bounds each by its own deadline.
"""

from __future__ import annotations

import contextvars
import math
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("deadline", default=math.inf)


@contextmanager
def deadline_scope(timeout_s: float) -> Iterator[float]:
    """Run the block against a deadline `timeout_s` from now (or the caller's, if sooner)."""
    deadline = min(time.monotonic() + timeout_s, _deadline.get())
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def remaining_s() -> float:
    """Seconds left before the current deadline (infinite outside any scope, 0 when passed)."""
    return max(_deadline.get() - time.monotonic(), 0.0)


def bounded(timeout_s: float | None, exc: type[Exception] = httpcore.ReadTimeout) -> float:
    """`timeout_s` cut to the time left; raises `exc` when the deadline has passed."""
    left = remaining_s()
    if left <= 0:
        raise exc("the check's deadline passed")
    return left if timeout_s is None else min(timeout_s, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read, waiting at most until the deadline."""
        return self._inner.read(max_bytes, bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write, waiting at most until the deadline."""
        self._inner.write(buffer, bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the underlying stream."""
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """The TLS handshake, finished by the deadline."""
        limit = bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, limit))

    def get_extra_info(self, info: str) -> Any:
        """What the underlying stream says (its socket, its TLS object)."""
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, with connects and streams bound by the deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A TCP connection made by the deadline."""
        limit = bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, limit, local_address, socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """A unix socket connection made by the deadline."""
        limit = bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.connect_unix_socket(path, limit, socket_options))

    def sleep(self, seconds: float) -> None:
        """Sleep, never past the deadline."""
        self._inner.sleep(min(seconds, remaining_s()))


def bounded_transport(**options: Any) -> httpx.HTTPTransport:
    """An httpx transport (same options) whose connections obey the deadline.

    httpx does not take a network backend, so it is put into the connection pool it built.
    """
    transport = httpx.HTTPTransport(**options)
    pool = transport._pool
    pool._network_backend = DeadlineBackend(pool._network_backend)
    return transport
