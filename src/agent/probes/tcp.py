"""TCP probe: whether the agent can open a connection to host:port, and how fast.

`connection_config` fields (all optional):

- `port`: the port, when the instance's own `port` is empty;
- `read_banner` (default false): wait for the first line the server sends (SSH, SMTP, FTP
  and friends greet first) and report it; a server that stays silent is then a timeout.

The address connected to must be permitted by the instances' address policy
(`agent.connections.address_policy`); SSH connects through the same function. Nothing is ever sent.
Facts: `connect_ms`, and `banner` when asked for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agent.connections import address_policy
from agent.core.addresses import Family
from agent.core.results import ErrorClass, Observation, ProbeError, Status, parse_config
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


def read_banner(sock: socket.socket) -> str:
    """The first line a server sends on its own, decoded leniently."""
    try:
        data = sock.recv(MAX_BANNER_BYTES)
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

    def check(self) -> Observation:
        """Connect once and report how long it took."""
        config = self.config()
        started = time.perf_counter()
        with open_socket(config.host, config.port, self.timeout_s) as sock:
            facts: dict[str, Any] = {"connect_ms": _ms_since(started)}
            if config.read_banner:
                facts["banner"] = read_banner(sock)
        return Observation(facts=facts, checks={"tcp.can_connect": Status.OK})


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


from_instance = TcpProbe.from_instance
