"""Which addresses a check may connect to: the operator's CIDR lists, per family of targets.

Rows name the targets, and tenants write rows; the worker sits next to its own Redis,
database and metrics, and often next to a cloud metadata service. So every connection a
check opens goes through `connect()` (or `permitted()`), which resolves the name once,
judges each address, and connects only to an address that passed: there is no second
lookup for a DNS rebinding to slip into.

The rule: the most specific network that contains the address decides (ties go to allow, so
listing a network in allow exempts it from a deny of the same size); an address in no
network is refused. Only the operator's settings make the lists; a row cannot widen them.
Defaults (`AGENT_<FAMILY>_ALLOW_CIDRS` / `AGENT_<FAMILY>_DENY_CIDRS`):

- every family: allow everything, deny link-local (`169.254.0.0/16`, `fe80::/10`, where cloud
  metadata lives) and the unspecified addresses (`0.0.0.0/8`, `::/128`: connecting to them
  reaches the worker itself);
- `plugins` (installations and MCP servers) also deny loopback (`127.0.0.0/8`, `::1/128`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from agent.core.addresses import AddressPolicy, Family, networks
from agent.core.results import ErrorClass, ProbeError
from agent.core.settings import get_settings


def permitted(host: str, port: int, policy: AddressPolicy) -> list[tuple[Any, ...]]:
    """The `getaddrinfo` entries of `host` that the policy permits; a POLICY error if none."""
    return judge(host, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), policy)


def judge(host: str, entries: Sequence[Any], policy: AddressPolicy) -> list[tuple[Any, ...]]:
    """The resolved `entries` of `host` that the policy permits; a POLICY error if none."""
    allowed, refusals = [], []
    for entry in entries:
        reason = policy.refusal(ipaddress.ip_address(entry[4][0].split("%", 1)[0]))
        if reason is None:
            allowed.append(tuple(entry))
        else:
            refusals.append(reason)
    if not allowed:
        raise ProbeError(ErrorClass.POLICY, f"{host}: {refusals[0] if refusals else 'no address'}")
    return allowed


def connect(host: str, port: int, timeout_s: float | None, policy: AddressPolicy) -> socket.socket:
    """A TCP socket connected to a permitted address of `host` (tried in resolver order)."""
    last: OSError | None = None
    for family, kind, proto, _name, address in permitted(host, port, policy):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout_s)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    assert last is not None
    raise last


def first_permitted(host: str, port: int, policy: AddressPolicy) -> str:
    """The first permitted address of `host`, as text (for clients that connect by themselves)."""
    return str(permitted(host, port, policy)[0][4][0])


@lru_cache(maxsize=8)
def _from_settings(settings: Any, family: Family) -> AddressPolicy:
    allow = getattr(settings, f"{family}_allow_cidrs")
    deny = getattr(settings, f"{family}_deny_cidrs")
    return AddressPolicy(family, networks(allow), networks(deny))


def current(family: Family) -> AddressPolicy:
    """The policy of `family` in this process's settings."""
    return _from_settings(get_settings(), family)
