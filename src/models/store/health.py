"""Writes of the health job: instance status, history, audit, trusted host keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from agent.health import Checked
from models.agent import AgentKnownHost
from models.auth import AuditLog
from models.session import driver_connection

AGENT_USER_AGENT = "infra-agent"

# One statement for the whole batch: the rows travel as one JSON document.
_UPDATE_INSTANCES = text(
    """
    UPDATE infrastructure_instances AS i SET
        status = v.status,
        last_health_check = v.checked_at,
        health_status = v.health_status,
        os_type = COALESCE(v.os_type, i.os_type),
        os_version = COALESCE(v.os_version, i.os_version),
        resources = COALESCE(v.resources, i.resources),
        updated_at = CASE WHEN i.status IS DISTINCT FROM v.status THEN now() ELSE i.updated_at END
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        id uuid, status text, checked_at timestamptz, health_status jsonb,
        os_type text, os_version text, resources jsonb)
    WHERE i.id = v.id AND i.deleted_at IS NULL
    RETURNING i.id
    """
)

_HISTORY_COPY = (
    "COPY instance_health_history "
    "(time, instance_id, kind, status, latency_ms, error_class, message, details) FROM STDIN"
)


def record_health(session: Session, checked: Sequence[Checked]) -> set[uuid.UUID]:
    """Write a batch of checks: one UPDATE of the instances, one COPY of history, the audit.

    Instances deleted meanwhile are left out of all three; the ids written are returned.
    """
    if not checked:
        return set()
    rows = json.dumps([_instance_row(c) for c in checked])
    written = set(session.execute(_UPDATE_INSTANCES, {"rows": rows}).scalars())
    kept = [c for c in checked if uuid.UUID(c.spec.id) in written]
    _copy_history(session, kept)
    _audit_transitions(session, [c for c in kept if c.changed])
    return written


def _instance_row(checked: Checked) -> dict[str, Any]:
    facts = checked.row_facts
    return {
        "id": checked.spec.id,
        "status": checked.state.status.value,
        "checked_at": checked.checked_at.isoformat(),
        "health_status": checked.health_status(),
        "os_type": facts.os_type,
        "os_version": facts.os_version,
        "resources": facts.resources,
    }


def _copy_history(session: Session, checked: Sequence[Checked]) -> None:
    raw = driver_connection(session)
    with raw.cursor() as cursor, cursor.copy(_HISTORY_COPY) as copy:
        for c in checked:
            copy.write_row(_history_row(c))


def _history_row(checked: Checked) -> tuple[Any, ...]:
    result = checked.result.as_dict()
    details = {"checks": result["checks"], "facts": result["facts"]}
    return (
        checked.checked_at,
        checked.spec.id,
        result["kind"],
        result["status"],
        result["latency_ms"],
        result["error_class"],
        result["message"] or None,
        json.dumps(details),
    )


def _audit_transitions(session: Session, changed: Sequence[Checked]) -> None:
    if changed:
        session.execute(insert(AuditLog), [_audit_row(c) for c in changed])


def _audit_row(checked: Checked) -> dict[str, Any]:
    return {
        "entity_type": "infrastructure_instances",
        "entity_id": uuid.UUID(checked.spec.id),
        "action": "UPDATE",
        "changes": {
            "before": {"status": checked.spec.state.status.value},
            "after": {"status": checked.state.status.value},
            "reason": checked.result.as_dict(),
        },
        "user_agent": AGENT_USER_AGENT,
    }


def remember_host_keys(session: Session, keys: Mapping[uuid.UUID, tuple[str, str]]) -> None:
    """Record host keys learned on first use; a key already recorded is never replaced."""
    if not keys:
        return
    rows = [
        {"instance_id": instance_id, "host_entry": entry, "keyline": keyline}
        for instance_id, (entry, keyline) in keys.items()
    ]
    session.execute(pg_insert(AgentKnownHost).on_conflict_do_nothing(), rows)
