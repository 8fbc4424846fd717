"""Health checks of MCP servers with the `mcp` SDK: initialize, ping, and the tool list.

`http` servers are reached over streamable HTTP, `sse` servers over the SSE transport. A
check runs the protocol's `initialize` handshake, a `ping`, and `tools/list` (every page),
each timed; the whole exchange ends by the check's deadline (its timeout), and every
response body is capped at `MAX_RESPONSE_BYTES` (past it the check fails as PROTOCOL).
Checks are coroutines on the process's event loop (`agent.probes.aio`): the SDK is async
and httpx2-based, so it runs there as it is (see docs/decisions.md). `stdio` servers are
subprocesses of their client, so no worker can reach them; the SDK has
no WebSocket client; both are recorded as not checkable (health `unknown`), their status left alone.

Only addresses the plugins' address policy permits are connected to, and redirects are not
followed. Each check uses its own HTTP client: cookies and sessions of one tenant's server
never reach another's. The clients share the process's one TLS context. Tool lists are
diffed by `agent.plugins.tools.diff_tools`, written by the store.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation
from pydantic import ValidationError

from agent.connections.address_policy import current
from agent.connections.capped import CappedAsyncTransport
from agent.connections.deadline import remaining_s
from agent.connections.guarded import guard_httpx
from agent.core.addresses import Family
from agent.core.clock import Clock
from agent.core.credentials import SecretResolver
from agent.core.damping import Policy
from agent.core.results import ErrorClass, Observation, ProbeError, ProbeResult, Status, late_result
from agent.plugins.outcome import PluginChecked, Prior, conclude
from agent.plugins.tools import ToolInfo
from agent.probes.aio import each_async, run_on_loop, run_probe
from agent.probes.http import HttpProbe

PLUGIN_TYPE = "mcp_server"
MAX_TOOL_PAGES = 50
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
NOT_CHECKABLE = {
    "stdio": "stdio servers run as a subprocess of their client: a worker cannot reach them",
    "websocket": "the mcp SDK has no WebSocket client transport: not checked",
}
CLIENT_INFO = Implementation(name="infra-agent", version=importlib.metadata.version("infra-agent"))


@dataclass(frozen=True)
class McpSpec:
    """What a check needs from an `mcp_server` row."""

    id: str
    name: str
    endpoint_url: str
    transport_type: str
    tenant_id: str | None = None
    prior: Prior = field(default_factory=Prior)
    policy: Policy = field(default_factory=Policy)


class McpProbe(HttpProbe):
    """Talks MCP (over HTTP) to one server; `tools` is set after a good check."""

    kind = "mcp"

    def __init__(self, spec: McpSpec, timeout_s: float) -> None:
        super().__init__({}, SecretResolver(None), timeout_s)
        self.spec = spec
        self.tools: tuple[ToolInfo, ...] | None = None

    def run(self) -> ProbeResult:
        """The check's result, from any thread but the loop's (which awaits `run_probe`)."""
        return run_on_loop(run_probe(self))

    def check(self) -> Observation:
        """Never called: `run()` goes through `acheck()`."""
        raise NotImplementedError("an MCP check is a coroutine: acheck()")

    async def acheck(self) -> Observation:
        """Run the exchange on the process's loop, as one coroutine among the batch's."""
        reason = NOT_CHECKABLE.get(self.spec.transport_type)
        if reason is not None:
            raise ProbeError(ErrorClass.UNSUPPORTED, reason)
        if self.spec.transport_type not in ("http", "sse"):
            raise ProbeError(ErrorClass.CONFIG, f"unknown transport {self.spec.transport_type!r}")
        try:
            return await self._exchange()
        except BaseExceptionGroup as group:
            raise first_leaf(group)  # noqa: B904  (keeps the leaf's own cause chain)
        except TimeoutError:
            message = f"the MCP exchange did not end within {self.timeout_s:g}s"
            raise ProbeError(ErrorClass.TIMEOUT, message) from None

    def secrets(self) -> list[str]:
        """None: MCP servers are checked without credentials."""
        return []

    def classify(self, exc: BaseException) -> ErrorClass:
        """MCP errors are protocol failures; the rest as for HTTP."""
        if isinstance(exc, BaseExceptionGroup):
            exc = first_leaf(exc)
        if isinstance(exc, MCPError | ValidationError):  # not MCP, or not JSON at all
            return ErrorClass.PROTOCOL
        if isinstance(exc, httpx2.TimeoutException):
            return ErrorClass.TIMEOUT
        if isinstance(exc, httpx2.HTTPStatusError):
            code = exc.response.status_code
            return ErrorClass.AUTH if code in (401, 403) else ErrorClass.PROTOCOL
        return super().classify(exc)

    async def _exchange(self) -> Observation:
        with anyio.fail_after(remaining_s()):
            async with (
                self._connect() as (read, write),
                ClientSession(
                    read, write, read_timeout_seconds=self.timeout_s, client_info=CLIENT_INFO
                ) as session,
            ):
                return await self._converse(session)

    async def _converse(self, session: ClientSession) -> Observation:
        started = time.perf_counter()
        initialized = await session.initialize()
        initialized_at = time.perf_counter()
        await session.send_ping()
        pinged_at = time.perf_counter()
        self.tools = await list_all_tools(session)
        facts = {
            "protocol_version": initialized.protocol_version,
            "server_info": initialized.server_info.model_dump(mode="json", exclude_none=True),
            "capabilities": initialized.capabilities.model_dump(mode="json", exclude_none=True),
            "initialize_ms": _ms(started, initialized_at),
            "ping_ms": _ms(initialized_at, pinged_at),
            "tools_ms": _ms(pinged_at, time.perf_counter()),
            "tool_count": len(self.tools),
        }
        return Observation(facts, {"mcp.initialize": Status.OK, "mcp.ping": Status.OK})

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[tuple[Any, Any]]:
        url = self.spec.endpoint_url
        if self.spec.transport_type == "sse":
            async with sse_client(
                url,
                timeout=self.timeout_s,
                sse_read_timeout=self.timeout_s,
                httpx_client_factory=self._async_client,
            ) as streams:
                yield streams
            return
        async with (
            self._async_client() as http,
            streamable_http_client(url, http_client=http) as streams,
        ):
            yield streams

    def _async_client(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        client = httpx2.AsyncClient(
            headers={"User-Agent": "infra-agent", **(headers or {})},
            timeout=timeout or httpx2.Timeout(self.timeout_s),
            auth=auth,
            trust_env=False,
            follow_redirects=False,
            transport=CappedAsyncTransport(
                MAX_RESPONSE_BYTES,
                verify=tls_context(),
                limits=httpx2.Limits(max_connections=4, max_keepalive_connections=4),
            ),
        )
        return guard_httpx(client, lambda: current(Family.PLUGINS))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context for MCP clients (loading the CA store costs tens of ms)."""
    return httpx2.create_ssl_context(trust_env=False)


async def list_all_tools(session: ClientSession) -> tuple[ToolInfo, ...]:
    """Every tool the server lists, following cursors (at most MAX_TOOL_PAGES pages)."""
    from mcp.types import PaginatedRequestParams

    tools: list[ToolInfo] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools += [ToolInfo(t.name, t.description, _plain(t.input_schema)) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return tuple(tools)
    raise ProbeError(ErrorClass.PROTOCOL, f"tools/list did not end within {MAX_TOOL_PAGES} pages")


def _plain(schema: Any) -> dict[str, Any]:
    # Round-trip through JSON so that what is compared is exactly what JSONB will store.
    plain: dict[str, Any] = json.loads(json.dumps(schema or {}, sort_keys=True, default=str))
    return plain


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    """The first exception in a (nested) exception group that is not a group itself."""
    current: BaseException = group
    while isinstance(current, BaseExceptionGroup) and current.exceptions:
        current = current.exceptions[0]
    return current


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 3)


async def check_mcp_server(
    spec: McpSpec, make_probe: Callable[[McpSpec], McpProbe], clock: Clock
) -> PluginChecked:
    """Check one MCP server and damp the result; its tools ride along in `details`."""
    probe, started = make_probe(spec), clock.now()
    result = await run_probe(probe)
    return concluded(spec, result, started, getattr(probe, "tools", None))


def concluded(
    spec: McpSpec,
    result: ProbeResult,
    started: dt.datetime,
    tools: tuple[ToolInfo, ...] | None = None,
) -> PluginChecked:
    """The damped outcome of one server's check result, dated `started`, with its tools."""
    flags = {"tenant_id": spec.tenant_id, "transport_type": spec.transport_type}
    details = {"tools": tools} if tools is not None else {}
    return conclude(
        PLUGIN_TYPE, spec.id, spec.name, result, spec.prior, spec.policy, flags, details, started
    )


def check_mcp_servers(
    specs: Sequence[McpSpec],
    make_probe: Callable[[McpSpec], McpProbe],
    concurrency: int,
    clock: Clock,
    deadline_s: float | None = None,
) -> list[PluginChecked]:
    """Check every server, at most `concurrency` at once, as coroutines on the process's loop.

    A check still running `deadline_s` from now is cancelled and concluded as a TIMEOUT; every
    check, late or not, is dated by `clock` (the tasks pass the database's).
    """
    return each_async(
        lambda spec: check_mcp_server(spec, make_probe, clock),
        specs,
        concurrency,
        lambda spec: {"mcp_server_id": spec.id},
        deadline_s,
        lambda spec: concluded(spec, late_result(McpProbe.kind, deadline_s or 0.0), clock.now()),
    )
