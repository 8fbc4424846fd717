"""The docker SDK's requests, sent over httpx: bound by the check's deadline, bodies capped.

The docker SDK speaks through `requests` and urllib3, whose timeouts bound each read, and it
reads every answer whole: an engine that drips its headers holds a check for ever, and one
that answers `/containers/json` with an endless array fills the worker's memory. This
adapter stands in for the SDK's own for `unix://` and `tcp://` endpoints; it sends each
request with an httpx client on `agent.connections.deadline`'s transport and reads the body
through `agent.connections.capped`, so the SDK's calls keep their shape and their errors.
(`ssh://` endpoints keep the SDK's paramiko adapter: their requests end by `timeout_s` per
read only.) Given a `policy_of`, its connections go only to addresses that policy permits
(`agent.connections.guarded`, wrapped around the deadline's backend); it never follows a
redirect, so the SDK sees the 3xx itself.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from agent.connections.capped import read_capped
from agent.connections.deadline import bounded_transport
from agent.connections.guarded import PolicyOf, guard_httpx

# Far above any real engine's answer (a thousand containers list in about 2 MB).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
UNIX_PREFIX = "http+docker://"


class DockerAdapter(BaseAdapter):
    """A `requests` adapter for one engine endpoint, built for one check."""

    def __init__(
        self,
        socket_path: str | None,
        cap_bytes: int = MAX_RESPONSE_BYTES,
        policy_of: PolicyOf | None = None,
    ) -> None:
        super().__init__()
        self._socket_path = socket_path
        self._cap_bytes = cap_bytes
        self._policy_of = policy_of
        self._clients: dict[tuple[Any, Any], httpx.Client] = {}

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Send `request`; the answer's body is read whole, up to the cap, before returning."""
        client = self._client(verify, cert)
        with client.stream(
            request.method or "GET",
            self._url(str(request.url)),
            headers=dict(request.headers),
            content=request.body,
            timeout=httpx.Timeout(timeout if isinstance(timeout, int | float) else None),
        ) as answer:
            body = read_capped(answer.iter_bytes(), self._cap_bytes)
        return _as_requests_response(request, answer, body)

    def close(self) -> None:
        """Close the clients (and their connections)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _url(self, url: str) -> str:
        if url.startswith(UNIX_PREFIX):
            return "http://localhost" + urlsplit(url)._replace(scheme="", netloc="").geturl()
        return url

    def _client(self, verify: Any, cert: Any) -> httpx.Client:
        key = (verify, cert)
        if key not in self._clients:
            transport = bounded_transport(uds=self._socket_path, verify=tls_context(verify, cert))
            client = httpx.Client(transport=transport, trust_env=False, follow_redirects=False)
            if self._policy_of is not None:
                guard_httpx(client, self._policy_of)
            self._clients[key] = client
        return self._clients[key]


def tls_context(verify: Any, cert: Any) -> ssl.SSLContext:
    """The TLS context `requests` would use for these `verify` and `cert` values."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if isinstance(cert, tuple):
        context.load_cert_chain(*cert)
    elif cert:
        context.load_cert_chain(cert)
    return context


def _as_requests_response(
    request: requests.PreparedRequest, answer: httpx.Response, body: bytes
) -> requests.Response:
    response = requests.Response()
    response.status_code = answer.status_code
    response.reason = answer.reason_phrase
    response.headers = CaseInsensitiveDict(answer.headers.items())
    response.url = str(request.url)
    response.request = request
    response._content = body
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response
