"""Reads the jobs make, each in the caller's short transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import Row, and_, or_, select
from sqlalchemy.orm import Session

from models.agent import INSTANCE_LEASE, AgentKnownHost, AgentLease
from models.infrastructure import InfrastructureInstance

LIVE = InfrastructureInstance.deleted_at.is_(None)


def due_instances(
    session: Session, now: dt.datetime, interval_s: float, limit: int
) -> Sequence[Row]:
    """Instances not deleted, not checked for `interval_s`, and not under a live lease.

    Rows of (id, connection_type, tags), the longest-unchecked first.
    """
    instance = InfrastructureInstance
    leased = select(AgentLease.name).where(
        AgentLease.name == INSTANCE_LEASE + instance.id.cast(AgentLease.name.type),
        AgentLease.expires_at > now,
    )
    stale = or_(
        instance.last_health_check.is_(None),
        instance.last_health_check < now - dt.timedelta(seconds=interval_s),
    )
    query = (
        select(instance.id, instance.connection_type, instance.tags)
        .where(and_(LIVE, stale, ~leased.exists()))
        .order_by(instance.last_health_check.asc().nulls_first())
        .limit(limit)
    )
    return session.execute(query).all()


def instances(session: Session, ids: Sequence[uuid.UUID]) -> Sequence[InfrastructureInstance]:
    """The live instances among `ids`."""
    query = select(InfrastructureInstance).where(InfrastructureInstance.id.in_(ids), LIVE)
    return session.scalars(query).all()


def known_host_keys(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The SSH host key line the agent trusts for each of `ids` that has one."""
    query = select(AgentKnownHost.instance_id, AgentKnownHost.keyline).where(
        AgentKnownHost.instance_id.in_(ids)
    )
    return {instance_id: keyline for instance_id, keyline in session.execute(query)}
