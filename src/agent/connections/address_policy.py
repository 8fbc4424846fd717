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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from agent.probes.base import ErrorClass, ProbeError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

EVERYWHERE = ("0.0.0.0/0", "::/0")
NEVER = ("169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128")
LOOPBACK = ("127.0.0.0/8", "::1/128")


class Family(StrEnum):
    """The families of targets, each with its own lists."""

    INSTANCES = "instances"
    PLUGINS = "plugins"


DEFAULT_DENY = {Family.INSTANCES: NEVER, Family.PLUGINS: (*NEVER, *LOOPBACK)}


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parsed CIDR networks; a ValueError names the one that does not parse."""
    parsed = []
    for cidr in cidrs:
        try:
            parsed.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not a CIDR network") from None
    return tuple(parsed)


@dataclass(frozen=True)
class AddressPolicy:
    """Allow and deny networks for one family of targets."""

    family: Family
    allow: tuple[Network, ...] = networks(EVERYWHERE)
    deny: tuple[Network, ...] = networks(NEVER)

    @classmethod
    def default(cls, family: Family) -> AddressPolicy:
        """The policy of `family` when the operator configured nothing."""
        return cls(family, networks(EVERYWHERE), networks(DEFAULT_DENY[family]))

    def refusal(self, address: Address) -> str | None:
        """Why `address` is refused, naming the rule; None when it is permitted."""
        address = _unmapped(address)
        allowed = _most_specific(address, self.allow)
        denied = _most_specific(address, self.deny)
        if denied is not None and (allowed is None or allowed.prefixlen < denied.prefixlen):
            return f"address {address} is refused by the {self.family} policy (deny {denied})"
        if allowed is None:
            return f"address {address} is in no network the {self.family} policy allows"
        return None


def _unmapped(address: Address) -> Address:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _most_specific(address: Address, candidates: Sequence[Network]) -> Network | None:
    matching = [n for n in candidates if n.version == address.version and address in n]
    return max(matching, key=lambda n: n.prefixlen, default=None)


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
    from agent.core.settings import get_settings  # settings sits above the probes

    return _from_settings(get_settings(), family)
