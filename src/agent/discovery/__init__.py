"""Service discovery: what runs on an instance, as plain `DiscoveredService` values.

One discoverer per connection type, each reusing its probe's connection handling:
`docker_api` lists containers (`discovery.docker`), `ssh` reads systemd services and
their listening sockets (`discovery.systemd`), `kubernetes` lists workloads and Services
(`discovery.kubernetes`). No database work happens here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.connections.known_hosts import KnownHosts
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, ProbeError
from agent.discovery.base import DiscoveredService, Discoverer, Discovery
from agent.probes import from_instance

MODULES = {
    "docker_api": "agent.discovery.docker",
    "ssh": "agent.discovery.systemd",
    "kubernetes": "agent.discovery.kubernetes",
}

__all__ = ["MODULES", "DiscoveredService", "Discoverer", "Discovery", "discoverer_for"]


class UnsupportedDiscoverer(Discoverer):
    """Stands in for a connection type discovery cannot read; its outcome says so."""

    kind = "unsupported"
    types = frozenset()

    def __init__(self, connection_type: str | None) -> None:
        self.connection_type = connection_type

    def discover(self) -> tuple[list[DiscoveredService], str]:
        """Fail with a message naming the types discovery supports."""
        raise ProbeError(
            ErrorClass.UNSUPPORTED,
            f"discovery does not read connection_type {self.connection_type!r}"
            f" (supported: {', '.join(sorted(MODULES))})",
        )


def discoverer_for(
    connection_type: str | None,
    host: str,
    port: int | None,
    connection_config: Mapping[str, Any],
    resolver: SecretResolver,
    timeout_s: float,
    known_hosts: KnownHosts | None = None,
) -> Discoverer:
    """The discoverer for an instance of `connection_type`; SSH trusts `known_hosts`."""
    args = (host, port, connection_config, resolver, timeout_s, known_hosts)
    made = from_instance(Discoverer, MODULES, connection_type, *args)
    return made if made is not None else UnsupportedDiscoverer(connection_type)
