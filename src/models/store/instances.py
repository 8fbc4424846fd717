"""Writes of `infra-agent instances`: an instance added by an operator, or soft-deleted."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, insert, update
from sqlalchemy.orm import Session

from models.auth import AuditLog
from models.infrastructure import InfrastructureInstance
from models.store.health import AGENT_USER_AGENT

# What the audit trail keeps of an instance: never its connection_config (secret references).
AUDITED = ("name", "type", "host", "port", "connection_type")


def add_instance(session: Session, values: Mapping[str, Any]) -> uuid.UUID:
    """Insert an instance row and its audit entry; the new id."""
    instance = InfrastructureInstance
    statement = insert(instance).values(**values).returning(instance.id)
    instance_id = session.execute(statement).scalar_one()
    after = {name: values.get(name) for name in AUDITED}
    _audit(session, instance_id, "INSERT", {"after": after})
    return instance_id


def remove_instance(session: Session, instance_id: uuid.UUID) -> bool:
    """Soft-delete a live instance through `deleted_at`; whether one was removed."""
    instance = InfrastructureInstance
    statement = (
        update(instance)
        .where(instance.id == instance_id, instance.deleted_at.is_(None))
        .values(deleted_at=func.now(), updated_at=func.now())
        .returning(instance.id)
    )
    removed = session.execute(statement).scalar_one_or_none() is not None
    if removed:
        _audit(session, instance_id, "DELETE", {"after": {"deleted": True}})
    return removed


def _audit(session: Session, instance_id: uuid.UUID, action: str, changes: dict) -> None:
    row = {
        "entity_type": "infrastructure_instances",
        "entity_id": instance_id,
        "action": action,
        "changes": changes,
        "user_agent": f"{AGENT_USER_AGENT} cli",
    }
    session.execute(insert(AuditLog), [row])
