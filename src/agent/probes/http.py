"""HTTP probe: one GET, its status, its timing phases and, over TLS, the certificate's expiry.

`connection_config` fields:

- `url`; or `scheme` (default `http`), `port` (default: the instance's port) and `path`
  (default `/`), joined with the instance's host;
- `expected_status`: a list of accepted status codes (default: any 2xx or 3xx; redirects
  are not followed);
- `verify_tls` (default true) and `ca_bundle`: a PEM file on the worker to trust instead of
  the system's CAs;
- `headers`: extra request headers, never secret (an `Authorization` header is refused);
- `bearer_token`: a secret reference (`enc:`, `env:`, `file:`), sent as `Bearer`;
- `cert_warning_days` (default 14): a certificate closer than this to expiry is a warning.

Facts: `status_code`, `connect_ms`, `tls_ms`, `first_byte_ms` (request sent to response
headers received: the server's own time plus one round trip), and for https
`cert_not_after` (ISO 8601, UTC) and `cert_days_left`. The body is never read. Proxies
from the environment are ignored: the probe measures the target, not the path to it. Only
addresses the instances' address policy permits are connected to
(`agent.connections.address_policy`), and a redirect is never followed (its 3xx is the answer
judged).

Clients and their TLS contexts are built once per worker process (one per `verify_tls` and
`ca_bundle`, rebuilt when the bundle file changes, and after a fork) and shared by all
checks; connections are not kept between checks, so each check times a full connect. The
whole request, from connect to the last header, ends by the check's deadline
(`agent.connections.deadline`), however slowly the server answers: the policy's guard wraps
the deadline's network backend, so both hold on every connection of the shared clients.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Self

import httpx
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.connections.address_policy import current
from agent.connections.deadline import bounded_transport
from agent.connections.guarded import guard_httpx
from agent.core.addresses import Family
from agent.core.causes import causes
from agent.core.credentials import CredentialError, SecretResolver
from agent.core.results import ErrorClass, Observation, ProbeError, Status, parse_config
from agent.probes.base import Probe, Target

_SEVERITY = (Status.OK, Status.WARNING, Status.CRITICAL)
_PHASES = {
    "connect_ms": ("connection.connect_tcp.started", "connection.connect_tcp.complete"),
    "tls_ms": ("connection.start_tls.started", "connection.start_tls.complete"),
    "first_byte_ms": (
        "http11.send_request_headers.started",
        "http11.receive_response_headers.complete",
    ),
}


# The connection_config fields that hold secrets: references only, never shown.
SECRET_FIELDS: tuple[str, ...] = ("bearer_token",)


class Config(BaseModel):
    """An HTTP target, validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    host: str = Field(
        default="",
        description=(
            "the instance's host, joined with `scheme`, `port` and `path` when there is no `url`"
        ),
    )
    url: str | None = Field(
        default=None, description="the whole URL to GET, instead of `scheme`, `port` and `path`"
    )
    scheme: Literal["http", "https"] = Field(default="http", description="`http` or `https`")
    port: int | None = Field(default=None, ge=1, le=65535, description="the instance's port")
    path: str = Field(default="/", description="the path to GET")
    expected_status: tuple[int, ...] | None = Field(
        default=None,
        description="accepted status codes (default: any 2xx or 3xx; redirects are not followed)",
    )
    verify_tls: bool = Field(default=True, description="verify the server's certificate")
    ca_bundle: str | None = Field(
        default=None, description="a PEM file on the worker to trust instead of the system's CAs"
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="extra request headers, never secret (an `Authorization` header is refused)",
    )
    bearer_token: str | None = Field(default=None, description="sent as `Authorization: Bearer`")
    cert_warning_days: int = Field(
        default=14, ge=0, description="a certificate closer than this to expiry is a warning"
    )

    @field_validator("headers")
    @classmethod
    def _headers_are_not_secret(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.lower() in ("authorization", "proxy-authorization") for name in value):
            raise ValueError("put credentials in bearer_token (a secret reference), not headers")
        return value

    @property
    def target(self) -> str:
        """The URL to GET."""
        if self.url:
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{host}{port}/{self.path.lstrip('/')}"

    def accepts(self, status_code: int) -> bool:
        """Whether a status code counts as healthy."""
        if self.expected_status is None:
            return 200 <= status_code < 400
        return status_code in self.expected_status


class Timings:
    """The moments httpcore reports through the `trace` extension, turned into phases."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def record(self, event: str, info: Mapping[str, Any]) -> None:
        """The `trace` callback: note when each event happened."""
        self._seen.setdefault(event, time.perf_counter())

    def phases(self) -> dict[str, float]:
        """Milliseconds spent in each phase that happened."""
        phases = {}
        for name, (start, end) in _PHASES.items():
            if start in self._seen and end in self._seen:
                phases[name] = round((self._seen[end] - self._seen[start]) * 1000.0, 3)
        return phases


def certificate_facts(der: bytes, now: datetime) -> dict[str, Any]:
    """When a DER certificate expires, and in how many whole days from `now`."""
    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
    days_left = (not_after - now).total_seconds() / 86400.0
    return {"cert_not_after": not_after.isoformat(), "cert_days_left": int(days_left // 1)}


def observe(config: Config, status_code: int, facts: Mapping[str, Any]) -> Observation:
    """The verdict on a response: its status code, then its certificate's expiry."""
    checks = {"http.status": Status.OK if config.accepts(status_code) else Status.CRITICAL}
    messages = [] if checks["http.status"] is Status.OK else [f"HTTP {status_code} not expected"]
    days_left = facts.get("cert_days_left")
    if days_left is not None:
        checks["http.certificate"] = _certificate_status(days_left, config.cert_warning_days)
        if checks["http.certificate"] is not Status.OK:
            messages.append(f"certificate expires {facts['cert_not_after']} ({days_left} days)")
    status = max(checks.values(), key=_SEVERITY.index)
    return Observation(facts=facts, checks=checks, status=status, message="; ".join(messages))


def _certificate_status(days_left: int, warning_days: int) -> Status:
    if days_left < 0:
        return Status.CRITICAL
    return Status.WARNING if days_left < warning_days else Status.OK


class HttpProbe(Probe):
    """GETs one URL and judges the answer."""

    kind = "http"

    def __init__(self, raw: Mapping[str, Any], resolver: SecretResolver, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._raw = raw
        self._resolver = self.tracking(resolver)

    @classmethod
    def of(cls, target: Target) -> Self:
        """The HTTP probe of one instance."""
        return cls(target.raw(), target.resolver, target.timeout_s)

    def config(self) -> Config:
        """The validated connection settings; a CONFIG ProbeError that never echoes a value."""
        return parse_config(Config, self._raw)

    def check(self) -> Observation:
        """Send the request, read only the status line and headers."""
        config = self.config()
        timings = Timings()
        with self._client(config).stream(
            "GET",
            config.target,
            headers=self._headers(config),
            timeout=self.timeout_s,
            extensions={"trace": timings.record},
        ) as response:
            facts = {"status_code": response.status_code, **timings.phases()}
            facts.update(_peer_certificate_facts(response))
        return observe(config, response.status_code, facts)

    def classify(self, exc: BaseException) -> ErrorClass:
        """The error class of an httpx failure, from its innermost known cause."""
        if isinstance(exc, ProbeError):
            return exc.error_class
        if isinstance(exc, CredentialError | httpx.InvalidURL | httpx.UnsupportedProtocol):
            return ErrorClass.CONFIG
        if isinstance(exc, httpx.TimeoutException):
            return ErrorClass.TIMEOUT
        for cause in reversed(list(causes(exc, suppressed=False))):  # innermost first
            found = super().classify(cause)
            if found is not ErrorClass.INTERNAL:
                return found
        if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
            return ErrorClass.PROTOCOL
        if isinstance(exc, httpx.TransportError):
            return ErrorClass.UNREACHABLE
        return ErrorClass.INTERNAL

    def _client(self, config: Config) -> httpx.Client:
        return shared_client(config)

    def _headers(self, config: Config) -> dict[str, str]:
        headers = {"User-Agent": "infra-agent", **config.headers}
        if config.bearer_token is not None:
            token = self._resolver.resolve(config.bearer_token)
            headers["Authorization"] = f"Bearer {token}"
        return headers


_ClientKey = tuple[int, bool, str | None, int | None]
_clients: dict[_ClientKey, httpx.Client] = {}
_clients_lock = threading.Lock()


def shared_client(config: Config) -> httpx.Client:
    """The process's client for the config's TLS settings, built on first use."""
    bundle = config.ca_bundle if config.verify_tls else None
    key = (os.getpid(), config.verify_tls, bundle, _modified(bundle))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(config)
        return client


def _new_client(config: Config) -> httpx.Client:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    transport = bounded_transport(verify=_tls_context(config), limits=limits)
    client = httpx.Client(transport=transport, trust_env=False, follow_redirects=False)
    return guard_httpx(client, lambda: current(Family.INSTANCES))


def _modified(path: str | None) -> int | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime_ns
    except OSError as exc:
        raise ProbeError(ErrorClass.CONFIG, f"ca_bundle cannot be read: {exc.strerror}") from None


def _tls_context(config: Config) -> ssl.SSLContext | bool:
    if not config.verify_tls:
        return False
    try:
        return ssl.create_default_context(cafile=config.ca_bundle)
    except OSError as exc:
        raise ProbeError(ErrorClass.CONFIG, f"ca_bundle cannot be read: {exc.strerror}") from None


def _peer_certificate_facts(response: httpx.Response) -> dict[str, Any]:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(True) if ssl_object is not None else None
    return certificate_facts(der, datetime.now(UTC)) if der else {}


from_instance = HttpProbe.from_instance
