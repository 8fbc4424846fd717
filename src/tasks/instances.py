"""What the instance jobs (health and discovery) share: an instance row as a spec, its host keys.

The spec is the plain values a check needs; the keys are those recorded for its SSH target.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from agent.connections.known_hosts import MemoryKnownHosts, host_entry
from agent.core.damping import Policy
from agent.health import InstanceSpec, policy_for, state_from
from models import queries
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


def instance_specs(
    session: Session, ids: Sequence[uuid.UUID], default: Policy
) -> list[InstanceSpec]:
    """The specs of the instances of `ids` (none for no ids), in the caller's transaction."""
    return [spec_of(row, default) for row in (queries.instances(session, ids) if ids else [])]


def known_hosts(
    session: Session, specs: Sequence[InstanceSpec], ids: Sequence[uuid.UUID]
) -> MemoryKnownHosts:
    """The recorded host keys of the SSH instances among `specs`, by known-hosts entry."""
    keys = queries.known_host_keys(session, ids)
    return MemoryKnownHosts(
        {
            ssh_entry(spec): keys[uuid.UUID(spec.id)]
            for spec in specs
            if spec.connection_type == "ssh" and uuid.UUID(spec.id) in keys
        }
    )


def learned_keys(
    specs: Sequence[InstanceSpec], known: MemoryKnownHosts
) -> dict[uuid.UUID, tuple[str, str]]:
    """The host keys trusted on first use for `specs` in this run, by instance."""
    learned = {}
    for spec in specs:
        if spec.connection_type == "ssh" and ssh_entry(spec) in known.learned:
            entry = ssh_entry(spec)
            learned[uuid.UUID(spec.id)] = (entry, known.learned[entry])
    return learned
