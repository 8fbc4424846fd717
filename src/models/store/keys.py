"""The fingerprints of the agent's secret keys: read, recorded at first start, replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.agent import AgentKey
from models.infrastructure import InfrastructureInstance, ServiceManagementAssignment
from models.marketplace import ServiceInstallation, ServiceRegistry

KEYS_LOCK = 0x6167656E746B6579  # "agentkey": the advisory lock of the first recording
# The columns whose values may hold `enc:` references (the agent owns those references).
SECRET_COLUMNS = (
    (InfrastructureInstance, "connection_config"),
    (ServiceInstallation, "credentials"),
    (ServiceRegistry, "api_auth_config"),
    (ServiceManagementAssignment, "credentials"),
)


def recorded_keys(session: Session) -> set[str]:
    """The fingerprints of the keys workers may run with."""
    return set(session.scalars(select(AgentKey.fingerprint)))


def record_first_key(session: Session, fingerprint: str) -> set[str]:
    """Record `fingerprint` when none is recorded yet; the recorded set after that.

    A transaction-level advisory lock keeps two first workers from recording two keys.
    """
    session.execute(select(func.pg_advisory_xact_lock(KEYS_LOCK)))
    recorded = recorded_keys(session)
    if not recorded:
        session.execute(insert(AgentKey).values(fingerprint=fingerprint).on_conflict_do_nothing())
        recorded = {fingerprint}
    return recorded


def replace_keys(session: Session, fingerprint: str) -> None:
    """Make `fingerprint` the only key workers may run with."""
    session.execute(delete(AgentKey).where(AgentKey.fingerprint != fingerprint))
    session.execute(insert(AgentKey).values(fingerprint=fingerprint).on_conflict_do_nothing())


def rewrite_references(session: Session, rewrite: Callable[[Any], Any]) -> dict[str, int]:
    """Apply `rewrite` to every secret-bearing JSON column; rows changed, by table.column."""
    changed = {}
    for model, column in SECRET_COLUMNS:
        attribute = getattr(model, column)
        count = 0
        rows = session.execute(
            select(model.id, attribute).where(attribute.is_not(None)).with_for_update()
        )
        for row_id, value in rows:
            new = rewrite(value)
            if new != value:
                session.execute(update(model).where(model.id == row_id).values({column: new}))
                count += 1
        changed[f"{model.__tablename__}.{column}"] = count
    return changed
