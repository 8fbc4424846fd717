"""The probe for an instance, chosen from `infrastructure_instances.connection_type`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Generic, TypeVar

from agent.connections.known_hosts import KnownHosts
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Observation, ProbeError, ProbeResult
from agent.probes.base import InstanceFacts, Probe

Made = TypeVar("Made")

MODULES = {
    "ssh": "agent.probes.ssh",
    "docker_api": "agent.probes.docker",
    "kubernetes": "agent.probes.kubernetes",
    "http": "agent.probes.http",
    "tcp": "agent.probes.tcp",
}

# The probe kinds whose facts say something the instance row keeps (by `ProbeResult.kind`).
FACT_READERS = {
    "ssh": "agent.probes.ssh",
    "docker": "agent.probes.docker",
    "kubernetes": "agent.probes.kubernetes",
}


class UnsupportedProbe(Probe):
    """Stands in for a connection type the agent does not know; its result says so."""

    kind = "unsupported"

    def __init__(self, connection_type: str | None) -> None:
        super().__init__(timeout_s=0)
        self.connection_type = connection_type

    def config(self) -> None:
        """Refuse, as `check()` does: there are no settings for an unknown type."""
        self.check()

    def check(self) -> Observation:
        """Fail with a message naming the types the agent supports."""
        known = ", ".join(sorted(MODULES))
        raise ProbeError(
            ErrorClass.UNSUPPORTED,
            f"unknown connection_type {self.connection_type!r} (supported: {known})",
        )


@dataclass(frozen=True)
class Factory(Generic[Made]):
    """Makes what checks (or discovers) an instance, by its `connection_type`: one module a type.

    Each module's `from_instance` is `Template.from_instance`, so every type takes the same
    arguments; only SSH reads the known host keys. A type `modules` does not name gets
    `unsupported`, whose outcome says so.
    """

    modules: Mapping[str, str]
    unsupported: Callable[[str | None], Made]

    def __call__(
        self,
        connection_type: str | None,
        host: str,
        port: int | None,
        connection_config: Mapping[str, Any],
        resolver: SecretResolver,
        timeout_s: float,
        known_hosts: KnownHosts | None = None,
    ) -> Made:
        """What checks an instance of `connection_type`; SSH trusts `known_hosts`."""
        name = self.modules.get(connection_type or "")
        if name is None:
            return self.unsupported(connection_type)
        make = import_module(name).from_instance
        return make(host, port, connection_config, resolver, timeout_s, known_hosts=known_hosts)


probe_for = Factory[Probe](MODULES, UnsupportedProbe)
"""The probe that checks an instance of a connection type."""


def validate(
    connection_type: str | None, host: str, port: int | None, connection_config: Mapping[str, Any]
) -> None:
    """Refuse settings the probe of `connection_type` would refuse: a CONFIG ProbeError.

    The probe's own config model decides, built from the instance exactly as a check builds
    it; secrets are not resolved, only their form is checked.
    """
    probe_for(connection_type, host, port, connection_config, SecretResolver(None), 1.0).config()


def secret_fields(connection_type: str | None) -> tuple[str, ...]:
    """The `connection_config` fields of `connection_type` that hold secret references."""
    name = MODULES.get(connection_type or "")
    return import_module(name).SECRET_FIELDS if name else ()


def instance_facts(result: ProbeResult) -> InstanceFacts:
    """The instance-row facts of a result, read the way its probe kind reports them."""
    name = FACT_READERS.get(result.kind)
    if name is None or not result.facts:
        return InstanceFacts()
    return import_module(name).instance_facts(result.facts)
