"""The error classes of aiohttp's failures, in the probes' vocabulary.

aiohttp wraps the socket's own error (`os_error`) in its connector errors, so those are
classed by what they wrap; TLS, DNS and the server's malformed answers have classes of their
own. Anything else falls back to the probe's own classification.
"""

from __future__ import annotations

import aiohttp

from agent.probes.base import ErrorClass, classify

_OWN_CLASSES: tuple[tuple[type[BaseException], ErrorClass], ...] = (
    (aiohttp.InvalidURL, ErrorClass.CONFIG),
    (aiohttp.ClientConnectorDNSError, ErrorClass.DNS),
    (aiohttp.ClientConnectorCertificateError, ErrorClass.TLS),
    (aiohttp.ClientSSLError, ErrorClass.TLS),
    (aiohttp.ServerTimeoutError, ErrorClass.TIMEOUT),
    (aiohttp.ServerDisconnectedError, ErrorClass.PROTOCOL),
    (aiohttp.ClientPayloadError, ErrorClass.PROTOCOL),
    (aiohttp.ClientResponseError, ErrorClass.PROTOCOL),
)


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
