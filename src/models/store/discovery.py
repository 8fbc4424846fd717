"""Writes of the discovery job: reconcile one instance's services, and the agent's plugin matches.

`reconcile` is three statements whatever the number of services (the rows travel as one
JSON document): an upsert of everything seen, one UPDATE that marks the unseen `missing`,
and one statement that sets management plugins and their assignment rows. The caller's
transaction makes them one; a failed discovery never gets here, so it changes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from agent.discovery.base import MISSING, DiscoveredService

# New rows get discovered_at; every row seen gets last_seen = now() (the transaction's time,
# which is how the next statement tells seen from unseen). updated_at moves only when
# something an operator reads changed, and that is what RETURNING reports as `changed`.
_UPSERT = text(
    """
    INSERT INTO instance_services AS s (
        instance_id, name, type, status, service_config, endpoints, health_check_url,
        discovered_at, last_seen, created_at, updated_at)
    SELECT i.id, v.name, v.type, v.status, v.service_config, v.endpoints, v.health_check_url,
        now(), now(), now(), now()
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        name text, type text, status text, service_config jsonb, endpoints jsonb,
        health_check_url text)
    JOIN infrastructure_instances AS i ON i.id = :instance_id AND i.deleted_at IS NULL
    ON CONFLICT (instance_id, name, type) DO UPDATE SET
        status = excluded.status,
        service_config = excluded.service_config,
        endpoints = excluded.endpoints,
        health_check_url = excluded.health_check_url,
        last_seen = excluded.last_seen,
        updated_at = CASE
            WHEN (s.status, s.service_config, s.endpoints, s.health_check_url)
                IS DISTINCT FROM (excluded.status, excluded.service_config, excluded.endpoints,
                                  excluded.health_check_url)
            THEN now() ELSE s.updated_at END
    RETURNING s.id, s.name, s.type, (s.xmax = 0) AS inserted,
        (s.xmax <> 0 AND s.updated_at = now()) AS changed
    """
)

# Only the types this discovery owns go missing: a row a person added stays as it is.
_MARK_MISSING = text(
    """
    UPDATE instance_services SET status = :missing, updated_at = now()
    WHERE instance_id = :instance_id
      AND type = ANY(CAST(:types AS text[]))
      AND last_seen IS DISTINCT FROM now()
      AND status IS DISTINCT FROM :missing
      AND NOT EXISTS (
          SELECT 1 FROM jsonb_to_recordset(CAST(:unread AS jsonb)) AS u(type text, prefix text)
          WHERE u.type = instance_services.type AND starts_with(instance_services.name, u.prefix))
    RETURNING id
    """
)

# The agent may set a service's plugin only when no person has a say: no active assignment
# with assigned_by set, and no plugin on the row that the agent did not assign itself.
# Its own earlier assignments that no longer match are deactivated, never deleted.
_ASSIGN = text(
    """
    WITH wanted AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS w(service_id uuid, plugin_id uuid)
    ), free AS (
        SELECT s.id, w.plugin_id AS wanted
        FROM instance_services AS s JOIN wanted AS w ON w.service_id = s.id
        WHERE NOT EXISTS (
                SELECT 1 FROM service_management_assignments AS a
                WHERE a.instance_service_id = s.id AND a.assigned_by IS NOT NULL
                  AND a.is_active IS NOT FALSE)
          AND (s.management_plugin_id IS NULL OR EXISTS (
                SELECT 1 FROM service_management_assignments AS a
                WHERE a.instance_service_id = s.id AND a.plugin_id = s.management_plugin_id
                  AND a.assigned_by IS NULL))
    ), moved AS (
        UPDATE instance_services AS s SET management_plugin_id = f.wanted, updated_at = now()
        FROM free AS f
        WHERE s.id = f.id AND s.management_plugin_id IS DISTINCT FROM f.wanted
        RETURNING s.id
    ), retired AS (
        UPDATE service_management_assignments AS a SET is_active = false
        FROM free AS f
        WHERE a.instance_service_id = f.id AND a.assigned_by IS NULL
          AND a.is_active IS NOT FALSE AND a.plugin_id IS DISTINCT FROM f.wanted
        RETURNING a.id
    ), assigned AS (
        INSERT INTO service_management_assignments AS a (instance_service_id, plugin_id, is_active)
        SELECT f.id, f.wanted, true FROM free AS f WHERE f.wanted IS NOT NULL
        ON CONFLICT (instance_service_id, plugin_id) DO UPDATE SET is_active = true
            WHERE a.assigned_by IS NULL AND a.is_active IS NOT TRUE
        RETURNING a.id
    )
    SELECT (SELECT count(*) FROM moved) AS assigned,
           (SELECT count(*) FROM retired) AS retired,
           (SELECT count(*) FROM wanted WHERE plugin_id IS NOT NULL)
             - (SELECT count(*) FROM free WHERE wanted IS NOT NULL) AS kept_by_people
    """
)


@dataclass(frozen=True)
class Reconciled:
    """What one reconciliation did, in counts."""

    seen: int = 0
    new: int = 0
    updated: int = 0
    missing: int = 0
    matched: int = 0
    assigned: int = 0
    kept_by_people: int = 0

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready form."""
        return dict(self.__dict__)


def reconcile(
    session: Session,
    instance_id: uuid.UUID,
    services: Sequence[DiscoveredService],
    owned_types: Collection[str],
    plugins: Mapping[tuple[str, str], str | None],
    unread: Collection[tuple[str, str]] = (),
) -> Reconciled:
    """Upsert `services`, mark the unseen of `owned_types` missing, and set plugin matches.

    `plugins` maps (name, type) to the id of the plugin that manages it, or None. Services
    of a (type, name prefix) in `unread` were not read, so they are never marked missing.
    """
    seen = _upsert(session, instance_id, services) if services else []
    missing = session.execute(
        _MARK_MISSING,
        {
            "instance_id": instance_id,
            "types": sorted(owned_types),
            "missing": MISSING,
            "unread": json.dumps([{"type": t, "prefix": p} for t, p in unread]),
        },
    ).all()
    wanted = [
        {"service_id": str(row.id), "plugin_id": plugins.get((row.name, row.type))} for row in seen
    ]
    assignment = _assign(session, wanted)
    return Reconciled(
        seen=len(seen),
        new=sum(row.inserted for row in seen),
        updated=sum(bool(row.changed) for row in seen),
        missing=len(missing),
        matched=sum(1 for w in wanted if w["plugin_id"]),
        assigned=assignment["assigned"],
        kept_by_people=assignment["kept_by_people"],
    )


def _upsert(
    session: Session, instance_id: uuid.UUID, services: Sequence[DiscoveredService]
) -> Sequence[Any]:
    rows = json.dumps([service.row() for service in services])
    return session.execute(_UPSERT, {"rows": rows, "instance_id": instance_id}).all()


def _assign(session: Session, wanted: list[dict[str, Any]]) -> dict[str, int]:
    if not wanted:
        return {"assigned": 0, "kept_by_people": 0}
    row = session.execute(_ASSIGN, {"rows": json.dumps(wanted)}).one()
    return {"assigned": row.assigned, "kept_by_people": row.kept_by_people}
