"""TCP probe: whether the agent can open a connection to host:port, and how fast.

`connection_config` fields (all optional):

- `port`: the port, when the instance's own `port` is empty;
- `read_banner` (default false): wait for the first line the server sends (SSH, SMTP, FTP
  and friends greet first) and report it; a server that stays silent is then a timeout.

The address connected to must be permitted by the instances' address policy
(`agent.connections.address_policy`): the name is resolved once, without blocking, and only
permitted addresses are tried. Nothing is ever sent. Facts: `connect_ms`, and `banner` when
asked for.

The check is a coroutine on the worker process's event loop (`agent.probes.aio`), like the
HTTP check, so a batch of them needs no thread each; its deadline cancels it. SSH opens its
socket with the blocking `open_socket`, through the same policy.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agent.connections import address_policy
from agent.connections.deadline import remaining_s
from agent.core.addresses import Family
from agent.core.results import (
    ErrorClass,
    Observation,
    ProbeError,
    ProbeResult,
    Status,
    parse_config,
)
from agent.probes.aio import run_on_loop, run_probe
from agent.probes.base import Probe, Target

MAX_BANNER_BYTES = 1024
_Model = TypeVar("_Model", bound=BaseModel)


# The connection_config fields that hold secrets: references only, never shown.
SECRET_FIELDS: tuple[str, ...] = ()


class Config(BaseModel):
    """A TCP target, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field(min_length=1, description="the instance's host")
    port: int = Field(
        ge=1, le=65535, description="the port, when the instance's own `port` is empty"
    )
    read_banner: bool = Field(
        default=False,
        description=(
            "wait for the first line the server sends (SSH, SMTP, FTP greet first) and report it; a"
            " silent server is then a timeout"
        ),
    )


def open_socket(
    host: str, port: int, timeout_s: float, family: Family = Family.INSTANCES
) -> socket.socket:
    """A TCP socket to a permitted address, TCP_NODELAY set; it keeps `timeout_s` for later I/O."""
    sock = address_policy.connect(host, port, timeout_s, address_policy.current(family))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def open_stream(
    host: str, port: int, family: Family = Family.INSTANCES
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to the first permitted address of `host` that accepts (in resolver order)."""
    loop = asyncio.get_running_loop()
    entries = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for kind, sock_type, proto, _name, address in address_policy.judge(
        host, entries, address_policy.current(family)
    ):
        sock = socket.socket(kind, sock_type, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:  # cancelled at the deadline: the socket must not leak
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)
    assert last is not None
    raise last


async def read_banner(reader: asyncio.StreamReader) -> str:
    """The first line a server sends on its own, decoded leniently, by the check's deadline."""
    try:
        async with asyncio.timeout(remaining_s()):
            data = await reader.read(MAX_BANNER_BYTES)
    except TimeoutError:
        raise ProbeError(ErrorClass.TIMEOUT, "connected, but the server sent no banner") from None
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    return line.decode("utf-8", errors="replace")


class TcpProbe(Probe):
    """Connects, optionally reads a banner, and closes."""

    kind = "tcp"

    def __init__(self, raw: Mapping[str, Any], timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._raw = raw

    def config(self) -> Config:
        """The validated connection settings; a CONFIG ProbeError that never echoes a value."""
        return parse_config(Config, self._raw)

    @classmethod
    def of(cls, target: Target) -> Self:
        """The TCP probe of one instance."""
        return cls(target.raw(), target.timeout_s)

    def run(self) -> ProbeResult:
        """The check's result, from any thread but the loop's (which awaits `run_probe`)."""
        return run_on_loop(run_probe(self))

    def check(self) -> Observation:
        """Never called: `run()` goes through `acheck()`."""
        raise NotImplementedError("a TCP check is a coroutine: acheck()")

    async def acheck(self) -> Observation:
        """Connect once and report how long it took."""
        config = self.config()
        started = time.perf_counter()
        reader, writer = await open_stream(config.host, config.port)
        try:
            facts: dict[str, Any] = {"connect_ms": _ms_since(started)}
            if config.read_banner:
                facts["banner"] = await read_banner(reader)
        finally:
            writer.close()
        return Observation(facts=facts, checks={"tcp.can_connect": Status.OK})


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


from_instance = TcpProbe.from_instance
