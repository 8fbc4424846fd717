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

The check is a coroutine on the worker process's event loop (`agent.probes.aio`), on an
`aiohttp` session built once per process and per `verify_tls`/`ca_bundle` (rebuilt when the
bundle file changes, and after a fork), so a batch of HTTP instances shares one TLS context
and one loop instead of a thread each. Connections are not kept between checks, so each
check times a full connect. The whole request, from name resolution to the last header, ends
by the check's deadline however slowly the server answers: the check is cancelled when it
passes (`agent.probes.aio.run_async`). The connector judges every resolved address by the
instances' policy before connecting (`agent.connections.guarded.GuardedConnector`).
aiohttp's error texts are replaced by agent-written ones (`agent.probes.aiohttp_errors`).
"""

from __future__ import annotations

import contextvars
import os
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Self

import aiohttp
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.connections.address_policy import current
from agent.connections.guarded import GuardedConnector
from agent.core.addresses import Family
from agent.core.causes import causes
from agent.core.credentials import CredentialError, SecretResolver
from agent.core.results import (
    ErrorClass,
    Observation,
    ProbeError,
    ProbeResult,
    Status,
    parse_config,
)
from agent.probes.aio import process_loop, run_on_loop, run_probe
from agent.probes.aiohttp_errors import aiohttp_class, translated
from agent.probes.base import Probe, Target

_SEVERITY = (Status.OK, Status.WARNING, Status.CRITICAL)
_PHASES = {
    "connect_ms": ("resolve", "connected"),
    "tls_ms": ("tls", "ready"),
    "first_byte_ms": ("ready", "answered"),
}
_HEADER_BREAKERS = frozenset("\r\n\0")


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
    """The moments of one check's exchange, noted by its connector, turned into phases."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self.peer_certificate: bytes | None = None

    def note(self, moment: str) -> None:
        """Note when `moment` first happened."""
        self._seen.setdefault(moment, time.perf_counter())

    def phases(self) -> dict[str, float]:
        """Milliseconds spent in each phase that happened."""
        phases = {}
        for name, (start, end) in _PHASES.items():
            if start in self._seen and end in self._seen:
                phases[name] = round((self._seen[end] - self._seen[start]) * 1000.0, 3)
        return phases


# The check running in this task: its connector notes the moments here.
_timings: contextvars.ContextVar[Timings | None] = contextvars.ContextVar("timings", default=None)


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
    """GETs one URL and judges the answer: a coroutine on the process's loop (`acheck`)."""

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

    def run(self) -> ProbeResult:
        """The check's result, from any thread but the loop's (which awaits `run_probe`)."""
        return run_on_loop(run_probe(self))

    def check(self) -> Observation:
        """Never called: `run()` goes through `acheck()`."""
        raise NotImplementedError("an HTTP check is a coroutine: acheck()")

    async def acheck(self) -> Observation:
        """Send the request, read only the status line and headers."""
        config = self.config()
        timings = Timings()
        _timings.set(timings)  # this task's own context: no other check sees it
        with translated():
            async with shared_session(config).get(
                config.target, headers=self._headers(config), allow_redirects=False
            ) as response:
                timings.note("answered")
                status_code = response.status
        facts = {"status_code": status_code, **timings.phases()}
        if timings.peer_certificate:
            facts.update(certificate_facts(timings.peer_certificate, datetime.now(UTC)))
        return observe(config, status_code, facts)

    def classify(self, exc: BaseException) -> ErrorClass:
        """The error class of a failure, from aiohttp's class or the innermost known cause."""
        if isinstance(exc, ProbeError):
            return exc.error_class
        if isinstance(exc, CredentialError):
            return ErrorClass.CONFIG
        found = aiohttp_class(exc)
        if found is not None:
            return found
        for cause in reversed(list(causes(exc, suppressed=False))):  # innermost first
            found = super().classify(cause)
            if found is not ErrorClass.INTERNAL:
                return found
        return ErrorClass.INTERNAL

    def _headers(self, config: Config) -> dict[str, str]:
        headers = {"User-Agent": "infra-agent", **config.headers}
        if config.bearer_token is not None:
            token = self._resolver.resolve(config.bearer_token)
            if _HEADER_BREAKERS.intersection(token):
                raise ProbeError(
                    ErrorClass.CONFIG, "bearer_token holds characters a header cannot carry"
                )
            headers["Authorization"] = f"Bearer {token}"
        return headers


class InstanceConnector(GuardedConnector):
    """The instances' guarded connector, noting the moments of each connection for its check.

    Resolution starts the connect phase; the protocol is built once the socket is connected
    and before any TLS handshake (asyncio's `create_connection` on a connected socket), which
    ends it; the connection handed back ends the handshake, and its certificate is kept.
    """

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> Any:
        _note("resolve")
        return await super()._resolve_host(host, port, traces=traces)

    # A private aiohttp hook; its first positional argument is the protocol factory, which
    # the stubs do not name, hence the ignore.
    async def _wrap_create_connection(  # type: ignore[override]
        self, factory: Any, *args: Any, **kwargs: Any
    ) -> Any:
        def connected() -> Any:
            _note("connected")
            if kwargs.get("ssl"):
                _note("tls")
            return factory()

        transport, protocol = await super()._wrap_create_connection(connected, *args, **kwargs)
        _note("ready")
        timings = _timings.get()
        if timings is not None:
            timings.peer_certificate = _peer_certificate(transport)
        return transport, protocol


def _note(moment: str) -> None:
    timings = _timings.get()
    if timings is not None:
        timings.note(moment)


def _peer_certificate(transport: Any) -> bytes | None:
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.getpeercert(True) if ssl_object is not None else None


_SessionKey = tuple[int, bool, str | None, int | None]
_sessions: dict[_SessionKey, aiohttp.ClientSession] = {}


def shared_session(config: Config) -> aiohttp.ClientSession:
    """The process's session for the config's TLS settings, built on first use (on the loop).

    Only the loop's thread calls this, so the table needs no lock.
    """
    bundle = config.ca_bundle if config.verify_tls else None
    key = (os.getpid(), config.verify_tls, bundle, _modified(bundle))
    session = _sessions.get(key)
    if session is None or session.closed:
        session = _sessions[key] = _new_session(config)
        process_loop().on_close(session.close)
    return session


def _new_session(config: Config) -> aiohttp.ClientSession:
    connector = InstanceConnector(
        lambda: current(Family.INSTANCES),
        ssl=_tls_context(config),
        limit=0,  # the batch bounds how many checks run at once
        force_close=True,  # each check times a connect of its own
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),  # the check's deadline cancels it instead
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,
    )


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


from_instance = HttpProbe.from_instance
