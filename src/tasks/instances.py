"""What the instance jobs (health and discovery) share: an instance row as a spec, its host keys.

The spec is the plain values a check needs; the keys are those recorded for its SSH target.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from agent.connections.known_hosts import host_entry
from agent.core.damping import Policy
from agent.health import InstanceSpec, policy_for, state_from
from models.infrastructure import InfrastructureInstance

SSH_DEFAULT_PORT = 22


def spec_of(row: InfrastructureInstance, default: Policy) -> InstanceSpec:
    """The plain values a check needs from an instance row."""
    config = dict(row.connection_config or {})
    return InstanceSpec(
        id=str(row.id),
        name=row.name,
        connection_type=row.connection_type,
        host=row.host,
        port=row.port,
        connection_config=config,
        tags=tuple(row.tags or ()),
        state=state_from(row.status, row.health_status),
        policy=policy_for(config, default),
    )


def ssh_entry(spec: InstanceSpec) -> str:
    """The known-hosts entry the SSH probe looks up for `spec` (same port rules as the probe)."""
    port = spec.connection_config.get("port") or spec.port or SSH_DEFAULT_PORT
    return host_entry(spec.host, int(port))


def trusted_keys(specs: Sequence[InstanceSpec], keys: dict[uuid.UUID, str]) -> dict[str, str]:
    """Recorded host keys by known-hosts entry, for the SSH instances among `specs`."""
    return {
        ssh_entry(spec): keys[uuid.UUID(spec.id)]
        for spec in specs
        if spec.connection_type == "ssh" and uuid.UUID(spec.id) in keys
    }
