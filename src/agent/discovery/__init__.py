"""Service discovery: what runs on an instance, as plain `DiscoveredService` values.

One discoverer per connection type, each reusing its probe's connection handling:
`docker_api` lists containers (`discovery.docker`), `ssh` reads systemd services and
their listening sockets (`discovery.systemd`), `kubernetes` lists workloads and Services
(`discovery.kubernetes`). No database work happens here.
"""

from __future__ import annotations

from agent.core.results import ErrorClass, ProbeError
from agent.discovery.base import DiscoveredService, Discoverer, Discovery
from agent.probes import Factory

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


discoverer_for = Factory[Discoverer](MODULES, UnsupportedDiscoverer)
"""The discoverer of an instance of a connection type; SSH trusts the known host keys."""
