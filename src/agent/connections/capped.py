"""Responses read incrementally and abandoned past a size cap, never read whole first.

A target that answers with an endless body (a JSON array that never closes) would otherwise
grow the worker's memory until the kernel kills it. Past the cap the read stops and the
check fails as PROTOCOL, "response larger than N bytes"; the connection is closed with the
response, so nothing more is read from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx2

from agent.core.results import ErrorClass, ProbeError


def too_large(cap_bytes: int) -> ProbeError:
    """The error of a response that went past its cap."""
    return ProbeError(ErrorClass.PROTOCOL, f"response larger than {cap_bytes} bytes")


def read_capped(chunks: Iterable[bytes], cap_bytes: int) -> bytes:
    """All of `chunks` (a streamed body), or a PROTOCOL error once past `cap_bytes`."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > cap_bytes:
            raise too_large(cap_bytes)
    return bytes(body)


class CappedAsyncStream(httpx2.AsyncByteStream):
    """An async response body that fails once more than `cap_bytes` have come through."""

    def __init__(self, inner: Any, cap_bytes: int) -> None:
        self._inner = inner
        self._cap_bytes = cap_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._cap_bytes:
                raise too_large(self._cap_bytes)
            yield chunk

    async def aclose(self) -> None:
        """Close the underlying body (and so give the connection back or drop it)."""
        await self._inner.aclose()


class CappedAsyncTransport(httpx2.AsyncHTTPTransport):
    """An async transport whose every response body is capped at `cap_bytes`."""

    def __init__(self, cap_bytes: int, **options: Any) -> None:
        super().__init__(**options)
        self._cap_bytes = cap_bytes

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request; the response's body is read through the cap."""
        response = await super().handle_async_request(request)
        response.stream = CappedAsyncStream(response.stream, self._cap_bytes)
        return response
