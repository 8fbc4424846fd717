"""The operator's address rules as values: the target families, CIDR lists, and one verdict.

`AddressPolicy.refusal()` judges one address; resolving names and connecting, where every
check's connection is judged, is `agent.connections.address_policy`. Settings parse the
operator's lists into these values, so they live below everything that reads settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

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
