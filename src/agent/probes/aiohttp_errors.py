"""The error classes of aiohttp's failures, in the probes' vocabulary, and their messages.

aiohttp wraps the socket's own error (`os_error`) in its connector errors, so those are
classed by what they wrap; TLS, DNS and the server's malformed answers have classes of their
own. Anything else falls back to the probe's own classification.

aiohttp's own texts quote the request URL (query string included, where an API key may
travel) and the bytes a server sent back (which an echoing server fills with the request):
`translated()` replaces them with a short description the agent writes, so no form of a
secret depends on the scrubber finding it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from agent.core.results import ErrorClass, ProbeError, classify

_OWN_CLASSES: tuple[tuple[type[BaseException], ErrorClass], ...] = (
    (aiohttp.InvalidURL, ErrorClass.CONFIG),
    (aiohttp.NonHttpUrlClientError, ErrorClass.CONFIG),
    (aiohttp.ClientConnectorDNSError, ErrorClass.DNS),
    (aiohttp.ClientConnectorCertificateError, ErrorClass.TLS),
    (aiohttp.ClientSSLError, ErrorClass.TLS),
    (aiohttp.ServerTimeoutError, ErrorClass.TIMEOUT),
    (aiohttp.ServerDisconnectedError, ErrorClass.PROTOCOL),
    (aiohttp.ClientPayloadError, ErrorClass.PROTOCOL),
    (aiohttp.ClientResponseError, ErrorClass.PROTOCOL),
)


_DESCRIPTIONS: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.InvalidURL, "the URL is not a valid HTTP URL"),
    (aiohttp.NonHttpUrlClientError, "the URL is not an http or https URL"),
    (aiohttp.ClientConnectorDNSError, "the host name does not resolve"),
    (aiohttp.ClientConnectorCertificateError, "the TLS certificate did not verify"),
    (aiohttp.ClientSSLError, "the TLS handshake failed"),
    (aiohttp.ServerTimeoutError, "the server did not answer in time"),
    (aiohttp.ServerDisconnectedError, "the server closed the connection without an answer"),
    (aiohttp.ClientPayloadError, "the response body is malformed"),
    (aiohttp.ClientResponseError, "the answer is not well-formed HTTP"),
)


@contextmanager
def translated() -> Iterator[None]:
    """Turn aiohttp's failures in the block into ProbeErrors with agent-written messages."""
    try:
        yield
    except aiohttp.ClientError as exc:
        raise ProbeError(aiohttp_class(exc) or ErrorClass.UNREACHABLE, describe(exc)) from None


def describe(exc: aiohttp.ClientError) -> str:
    """What went wrong, in words that quote nothing the request or the server carried."""
    for kind, text in _DESCRIPTIONS:
        if isinstance(exc, kind):
            return text
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    return f"the HTTP exchange failed ({type(exc).__name__})"


def aiohttp_class(exc: BaseException) -> ErrorClass | None:
    """The error class of an aiohttp failure, or None when `exc` is not one."""
    for kind, error_class in _OWN_CLASSES:
        if isinstance(exc, kind):
            return error_class
    if isinstance(exc, aiohttp.ClientConnectorError):
        found = classify(exc.os_error)
        return found if found is not ErrorClass.INTERNAL else ErrorClass.UNREACHABLE
    if isinstance(exc, aiohttp.ClientError):
        return ErrorClass.UNREACHABLE
    return None


class AiohttpErrors:
    """A probe mixin: aiohttp's failures classed first, the rest as the probe classes them."""

    def classify(self, exc: BaseException) -> ErrorClass:
        """The error class of `exc`."""
        found = aiohttp_class(exc)
        return found if found is not None else super().classify(exc)  # type: ignore[misc]
