"""Health checks of installed marketplace services: one GET of `api_base_url` + health path.

The health path comes from the registry entry's `capabilities.health_path` (default
`/health`). The verdict: a 2xx answer is healthy unless its JSON body's `status` says
otherwise (`degraded`/`warn` -> degraded, `fail`/`down`/... -> unhealthy); 401 and 403 are
authentication failures; any other status is unhealthy; no answer is unreachable. Only the
first `MAX_BODY_BYTES` of the body are read. Redirects are not followed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agent.core.clock import Clock
from agent.core.credentials import SecretResolver
from agent.core.damping import Policy
from agent.core.results import ErrorClass, Observation, ProbeError, ProbeResult, Status, late_result
from agent.plugins.auth import Authenticated, TokenCache, authenticate, shared_tokens
from agent.plugins.client import Pool
from agent.plugins.outcome import PluginChecked, Prior, conclude
from agent.probes.aio import each_async, run_on_loop, run_probe
from agent.probes.aiohttp_errors import AiohttpErrors, translated
from agent.probes.http import HttpProbe

PLUGIN_TYPE = "installation"
DEFAULT_HEALTH_PATH = "/health"
MAX_BODY_BYTES = 64 * 1024
CHECKABLE_REGISTRY_STATUSES = ("approved", "deprecated")
DEGRADED_WORDS = frozenset({"degraded", "warn", "warning"})
FAILED_WORDS = frozenset({"fail", "failed", "failing", "down", "error", "unhealthy", "critical"})


@dataclass(frozen=True)
class InstallationSpec:
    """What a check needs from a `service_installations` row and its registry entry."""

    id: str
    name: str
    space_id: str | None
    api_base_url: str | None
    health_path: str = DEFAULT_HEALTH_PATH
    auth_type: str | None = None
    auth_config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    credentials: Mapping[str, Any] = field(default_factory=dict, repr=False)
    registry_status: str | None = "approved"
    prior: Prior = field(default_factory=Prior)
    policy: Policy = field(default_factory=Policy)

    @property
    def deprecated(self) -> bool:
        """Whether the registry deprecated this service (still checked, but flagged)."""
        return self.registry_status == "deprecated"

    def refusal(self) -> str | None:
        """Why this installation must not be called, or None."""
        if self.registry_status not in CHECKABLE_REGISTRY_STATUSES:
            return f"service is {self.registry_status or 'not approved'} in the registry"
        return None

    def url(self) -> str:
        """The health endpoint (parsed by the client: an invalid one is a CONFIG error then)."""
        if not self.api_base_url:
            raise ProbeError(ErrorClass.CONFIG, "the service has no api_base_url")
        base = self.api_base_url.rstrip("/")
        return f"{base}/{self.health_path.lstrip('/')}"


def health_path_of(capabilities: Mapping[str, Any] | None) -> str:
    """The health path a registry entry's capabilities name, or `/health`."""
    path = (capabilities or {}).get("health_path")
    return path if isinstance(path, str) and path.strip() else DEFAULT_HEALTH_PATH


class InstallationProbe(AiohttpErrors, HttpProbe):
    """GETs one installation's health endpoint on the shared pool; judges status and body.

    Its check is a coroutine on the process's loop (`acheck`); `run()` from a thread hands
    it to the loop and waits.
    """

    kind = "plugin.http"

    def __init__(
        self,
        spec: InstallationSpec,
        pool: Pool,
        resolver: SecretResolver,
        tokens: TokenCache = shared_tokens,
    ) -> None:
        super().__init__({}, resolver, pool.limits.timeout_s)
        self.spec, self.pool, self.tokens = spec, pool, tokens
        self._auth = Authenticated()

    def run(self) -> ProbeResult:
        """The check's result, from any thread but the loop's (which awaits `run_probe`)."""
        return run_on_loop(run_probe(self))

    def check(self) -> Observation:
        """Never called: `run()` goes through `acheck()`."""
        raise NotImplementedError("an installation check is a coroutine: acheck()")

    async def acheck(self) -> Observation:
        """Authenticate, send the request, read at most the first 64 KiB of the body."""
        url = self.spec.url()
        self._auth = await authenticate(
            self.spec.auth_type,
            self.spec.auth_config,
            self.spec.credentials,
            self._resolver,
            self.pool,
            self.tokens,
        )
        with translated():
            async with self.pool.session.get(
                url,
                headers=dict(self._auth.headers),
                params=dict(self._auth.params) or None,
                allow_redirects=False,
            ) as response:
                body = await read_upto(response.content, MAX_BODY_BYTES)
        return self._judge(response.status, body)

    def secrets(self) -> list[str]:
        """The resolved credentials and token of this check."""
        return list(self._auth.secrets)

    def _judge(self, status_code: int, body: bytes) -> Observation:
        if status_code in (401, 403):
            if self._auth.token_key:
                self.tokens.forget(self._auth.token_key)
            raise ProbeError(
                ErrorClass.AUTH, f"health endpoint refused the credentials (HTTP {status_code})"
            )
        return judge(status_code, body)


def judge(status_code: int, body: bytes) -> Observation:
    """The verdict on a health answer that is not an authentication failure."""
    facts: dict[str, Any] = {"status_code": status_code}
    if not 200 <= status_code < 300:
        return Observation(
            facts, {"http.status": Status.CRITICAL}, Status.CRITICAL, f"HTTP {status_code}"
        )
    word = _reported_status(body)
    if word is not None:
        facts["reported_status"] = word
    if word in DEGRADED_WORDS:
        return Observation(
            facts, {"plugin.reported": Status.WARNING}, Status.WARNING, f"service reports {word!r}"
        )
    if word in FAILED_WORDS:
        return Observation(
            facts,
            {"plugin.reported": Status.CRITICAL},
            Status.CRITICAL,
            f"service reports {word!r}",
        )
    return Observation(facts, {"http.status": Status.OK}, Status.OK)


def _reported_status(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    word = document.get("status") if isinstance(document, dict) else None
    return word.strip().lower()[:30] if isinstance(word, str) else None


async def read_upto(content: aiohttp.StreamReader, cap_bytes: int) -> bytes:
    """The body up to its end or its first `cap_bytes`, whichever comes first."""
    body = b""
    while len(body) < cap_bytes:
        chunk = await content.read(cap_bytes - len(body))
        if not chunk:
            break
        body += chunk
    return body


async def check_installation(
    spec: InstallationSpec,
    make_probe: Callable[[InstallationSpec], InstallationProbe],
    clock: Clock,
) -> PluginChecked:
    """Check one installation and damp the result; the check is dated when it starts."""
    started = clock.now()
    return concluded(spec, await run_probe(make_probe(spec)), started)


def concluded(spec: InstallationSpec, result: ProbeResult, started: dt.datetime) -> PluginChecked:
    """The damped outcome of one installation's check result, dated `started`."""
    flags = {"space_id": spec.space_id, "deprecated": spec.deprecated}
    return conclude(
        PLUGIN_TYPE, spec.id, spec.name, result, spec.prior, spec.policy, flags, None, started
    )


def check_installations(
    specs: Sequence[InstallationSpec],
    make_probe: Callable[[InstallationSpec], InstallationProbe],
    concurrency: int,
    clock: Clock,
    deadline_s: float | None = None,
) -> list[PluginChecked]:
    """Check every installation, at most `concurrency` at once, hosts taken in turn.

    The checks are coroutines on the process's loop. A check still running `deadline_s` from
    now is cancelled and concluded as a TIMEOUT; every check, late or not, is dated by `clock`
    (the tasks pass the database's).
    """
    return each_async(
        lambda spec: check_installation(spec, make_probe, clock),
        by_host_in_turn(specs),
        concurrency,
        lambda spec: {"installation_id": spec.id},
        deadline_s,
        lambda spec: concluded(
            spec, late_result(InstallationProbe.kind, deadline_s or 0.0), clock.now()
        ),
    )


def by_host_in_turn(specs: Sequence[InstallationSpec]) -> list[InstallationSpec]:
    """`specs` reordered round-robin over their hosts.

    Installations of one service arrive together; checked in that order, every thread would
    queue for the same host's few connection slots while other hosts sit idle.
    """
    queues: dict[str, deque[InstallationSpec]] = {}
    for spec in specs:
        queues.setdefault(_host_of(spec), deque()).append(spec)
    spread: list[InstallationSpec] = []
    while queues:
        for host in list(queues):
            spread.append(queues[host].popleft())
            if not queues[host]:
                del queues[host]
    return spread


def _host_of(spec: InstallationSpec) -> str:
    try:
        return urlsplit(spec.url()).netloc
    except (ProbeError, ValueError):
        return ""
