"""Writes of the plugin-health job: installation and MCP server health, tools, history, audit.

Each function writes a whole batch in a few statements and never commits. A row deleted (or
switched off) while its check ran is left as its owner made it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from agent.plugins.outcome import PluginChecked
from agent.plugins.tools import ToolChanges, ToolInfo
from models.auth import AuditLog
from models.mcp import McpTool
from models.session import driver_connection

AGENT_USER_AGENT = "infra-agent"

# A switched-off installation keeps `inactive`: its owner's word beats a check in flight.
_UPDATE_INSTALLATIONS = text(
    """
    UPDATE service_installations AS si SET
        status = CASE WHEN si.status = 'inactive' THEN si.status ELSE v.status END,
        last_health_check = v.checked_at,
        health_status = v.health_status,
        updated_at = CASE WHEN si.status IS DISTINCT FROM v.status THEN now() ELSE si.updated_at END
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        id uuid, status text, checked_at timestamptz, health_status text)
    WHERE si.id = v.id AND si.deleted_at IS NULL
    RETURNING si.id
    """
)

# `inactive` and `maintenance` are an operator's word; the check leaves them be.
_UPDATE_MCP_SERVERS = text(
    """
    UPDATE mcp_server AS s SET
        status = CASE WHEN s.status IN ('inactive', 'maintenance') THEN s.status
                      ELSE COALESCE(v.status, s.status) END,
        last_health_check = v.checked_at,
        health_status = v.health_status,
        health_details = v.health_details,
        server_info = COALESCE(v.server_info, s.server_info),
        consecutive_failures = v.consecutive_failures,
        updated_at = CASE WHEN s.status IS DISTINCT FROM v.status THEN now() ELSE s.updated_at END
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        id uuid, status text, checked_at timestamptz, health_status text, health_details jsonb,
        server_info jsonb, consecutive_failures int)
    WHERE s.id = v.id
    RETURNING s.id
    """
)

# One statement for a whole batch (the rows travel as one JSON document): a row-by-row
# executemany cost a 1,000-installation refresh about 0.2 s of round trips.
_UPSERT_DAMPING = text(
    """
    INSERT INTO agent_installation_health (installation_id, since, reason, damping, last_check)
    SELECT v.installation_id, v.since, v.reason, v.damping, v.last_check
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        installation_id uuid, since timestamptz, reason text, damping jsonb, last_check jsonb)
    ON CONFLICT (installation_id) DO UPDATE SET
        since = excluded.since,
        reason = excluded.reason,
        damping = excluded.damping,
        last_check = excluded.last_check,
        updated_at = now()
    """
)

_HISTORY_COPY = (
    "COPY plugin_health_history (time, plugin_id, plugin_type, health_status, latency_ms,"
    " error_class, message, details) FROM STDIN"
)


def record_installations(session: Session, checked: Sequence[PluginChecked]) -> set[uuid.UUID]:
    """Installation health, damping state, history and audit for a batch; the ids written."""
    if not checked:
        return set()
    rows = json.dumps([_installation_row(c) for c in checked])
    written = set(session.execute(_UPDATE_INSTALLATIONS, {"rows": rows}).scalars())
    kept = [c for c in checked if uuid.UUID(c.plugin_id) in written]
    _upsert_damping(session, kept)
    _finish(session, kept, "service_installations")
    return written


def _installation_row(checked: PluginChecked) -> dict[str, Any]:
    return {
        "id": checked.plugin_id,
        "status": checked.status,
        "checked_at": checked.checked_at.isoformat(),
        "health_status": checked.health.value,
    }


def _upsert_damping(session: Session, checked: Sequence[PluginChecked]) -> None:
    if checked:
        rows = json.dumps([_damping_row(c) for c in checked], default=str)
        session.execute(_UPSERT_DAMPING, {"rows": rows})


def _damping_row(checked: PluginChecked) -> dict[str, Any]:
    return {
        "installation_id": checked.plugin_id,
        "since": checked.since.isoformat(),
        "reason": checked.reason,
        "damping": _counters(checked),
        "last_check": {**checked.result.as_dict(), **checked.flags},
    }


def _counters(checked: PluginChecked) -> dict[str, int]:
    return {
        "consecutive_failures": checked.state.consecutive_failures,
        "consecutive_successes": checked.state.consecutive_successes,
    }


def record_mcp_servers(session: Session, checked: Sequence[PluginChecked]) -> list[PluginChecked]:
    """MCP server health, history and audit for a batch; the checks whose server was written.

    Their tools are the caller's next step: `recorded_tools`, diff, `write_tools`.
    """
    if not checked:
        return []
    rows = json.dumps([_mcp_row(c) for c in checked])
    written = set(session.execute(_UPDATE_MCP_SERVERS, {"rows": rows}).scalars())
    kept = [c for c in checked if uuid.UUID(c.plugin_id) in written]
    _finish(session, kept, "mcp_server")
    return kept


def _mcp_row(checked: PluginChecked) -> dict[str, Any]:
    facts = checked.result.facts
    return {
        "id": checked.plugin_id,
        "status": checked.status,
        "checked_at": checked.checked_at.isoformat(),
        "health_status": checked.health.value,
        "health_details": {
            "since": checked.since.isoformat(),
            "reason": checked.reason,
            "checked_at": checked.checked_at.isoformat(),
            **_counters(checked),
            "check": checked.result.as_dict(),
        },
        "server_info": _server_info(facts) if "server_info" in facts else None,
        "consecutive_failures": checked.state.consecutive_failures,
    }


def _server_info(facts: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("server_info", "protocol_version", "capabilities")
    return {key: facts[key] for key in keys if key in facts}


def write_tools(session: Session, changes: Mapping[uuid.UUID, ToolChanges]) -> None:
    """Make each server's tool rows match its listing: add, update, mark removed (never delete)."""
    _upsert_tools(session, changes)
    for server_id, change in changes.items():
        _touch_tools(session, server_id, change.unchanged, {})
        _touch_tools(
            session, server_id, change.removed, {"status": "removed", "removed_at": text("now()")}
        )


def recorded_tools(
    session: Session, server_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, ToolInfo | None]]:
    """The tools recorded for each server (None: marked removed), locked until the commit."""
    rows = session.execute(
        McpTool.__table__.select()
        .with_only_columns(
            McpTool.server_id,
            McpTool.name,
            McpTool.description,
            McpTool.input_schema,
            McpTool.status,
        )
        .where(McpTool.server_id.in_(server_ids))
        .with_for_update()
    )
    recorded: dict[uuid.UUID, dict[str, ToolInfo | None]] = {}
    for server_id, name, description, schema, status in rows:
        tool = ToolInfo(name, description, schema or {}) if status == "active" else None
        recorded.setdefault(server_id, {})[name] = tool
    return recorded


def _upsert_tools(session: Session, changes: Mapping[uuid.UUID, ToolChanges]) -> None:
    rows = [
        {
            "server_id": server_id,
            "name": tool.name,
            "description": tool.description,
            "input_schema": dict(tool.input_schema),
        }
        for server_id, change in changes.items()
        for tool in (*change.added, *change.changed)
    ]
    if not rows:
        return
    statement = pg_insert(McpTool).values(status="active", last_seen_at=text("now()"))
    changes_set = {
        "description": statement.excluded.description,
        "input_schema": statement.excluded.input_schema,
        "status": "active",
        "removed_at": None,
        "last_seen_at": text("now()"),
        "updated_at": text("now()"),
    }
    session.execute(
        statement.on_conflict_do_update(index_elements=["server_id", "name"], set_=changes_set),
        rows,
    )


def _touch_tools(
    session: Session, server_id: uuid.UUID, names: Sequence[str], values: Mapping[str, Any]
) -> None:
    if not names:
        return
    bump = {"last_seen_at": text("now()")} if not values else {"updated_at": text("now()")}
    session.execute(
        update(McpTool)
        .where(McpTool.server_id == server_id, McpTool.name.in_(list(names)))
        .values(**bump, **values)
    )


def _finish(session: Session, kept: Sequence[PluginChecked], entity_type: str) -> None:
    _copy_history(session, kept)
    changed = [c for c in kept if c.changed]
    if changed:
        session.execute(insert(AuditLog), [_audit_row(c, entity_type) for c in changed])


def _copy_history(session: Session, checked: Sequence[PluginChecked]) -> None:
    if not checked:
        return
    raw = driver_connection(session)
    with raw.cursor() as cursor, cursor.copy(_HISTORY_COPY) as copy:
        for c in checked:
            copy.write_row(_history_row(c))


def _history_row(checked: PluginChecked) -> tuple[Any, ...]:
    result = checked.result.as_dict()
    details = {"checks": result["checks"], "facts": result["facts"], "flags": dict(checked.flags)}
    return (
        checked.checked_at,
        checked.plugin_id,
        checked.plugin_type,
        checked.health.value,
        result["latency_ms"],
        result["error_class"],
        result["message"] or None,
        json.dumps(details, default=str),
    )


def _audit_row(checked: PluginChecked, entity_type: str) -> dict[str, Any]:
    return {
        "entity_type": entity_type,
        "entity_id": uuid.UUID(checked.plugin_id),
        "action": "UPDATE",
        "changes": {
            "before": {"status": checked.prior.status},
            "after": {"status": checked.status},
            "reason": checked.result.as_dict(),
        },
        "user_agent": AGENT_USER_AGENT,
    }
