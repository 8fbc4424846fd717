"""The conversation with an MCP server through the `mcp` SDK: transport, session, tool pages.

Imported by `agent.plugins.mcp` at a process's first MCP check, not at start-up: the SDK
brings its server side along (starlette, uvicorn, sse-starlette, opentelemetry) and costs a
process 16-18 MiB, which a worker that checks no MCP server should not carry
(docs/performance.md, "Worker memory"). A worker consuming the `plugins` queue imports it
in its parent before forking (`agent.runtime.preload`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import Implementation, PaginatedRequestParams
from pydantic import ValidationError

from agent.core.results import ErrorClass, ProbeError
from agent.plugins.tools import ToolInfo

MAX_TOOL_PAGES = 50


def is_protocol_error(exc: BaseException) -> bool:
    """An error of the MCP protocol itself, or a reply that was not MCP (not even JSON)."""
    return isinstance(exc, MCPError | ValidationError)


@functools.cache
def client_info() -> Implementation:
    """How the agent introduces itself in `initialize`."""
    return Implementation(name="infra-agent", version=importlib.metadata.version("infra-agent"))


@asynccontextmanager
async def session(
    url: str, transport_type: str, timeout_s: float, client: Callable[..., Any]
) -> AsyncIterator[ClientSession]:
    """An MCP session over `transport_type` ("http" or "sse"), its HTTP clients from `client`."""
    async with (
        streams(url, transport_type, timeout_s, client) as (read, write),
        ClientSession(
            read, write, read_timeout_seconds=timeout_s, client_info=client_info()
        ) as opened,
    ):
        yield opened


@asynccontextmanager
async def streams(
    url: str, transport_type: str, timeout_s: float, client: Callable[..., Any]
) -> AsyncIterator[tuple[Any, Any]]:
    """The read and write streams of the transport; `client` makes the HTTP client."""
    if transport_type == "sse":
        async with sse_client(
            url, timeout=timeout_s, sse_read_timeout=timeout_s, httpx_client_factory=client
        ) as pair:
            yield pair
        return
    async with client() as http, streamable_http_client(url, http_client=http) as pair:
        yield pair


async def list_all_tools(opened: ClientSession) -> tuple[ToolInfo, ...]:
    """Every tool the server lists, following cursors (at most MAX_TOOL_PAGES pages)."""
    tools: list[ToolInfo] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await opened.list_tools(params=params)
        tools += [ToolInfo(t.name, t.description, _plain(t.input_schema)) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return tuple(tools)
    raise ProbeError(ErrorClass.PROTOCOL, f"tools/list did not end within {MAX_TOOL_PAGES} pages")


def _plain(schema: Any) -> dict[str, Any]:
    # Round-trip through JSON so that what is compared is exactly what JSONB will store.
    plain: dict[str, Any] = json.loads(json.dumps(schema or {}, sort_keys=True, default=str))
    return plain
