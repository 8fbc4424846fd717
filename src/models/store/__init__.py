"""The one package that writes: one module per job area, plus the leases every job shares.

Each function takes a session and never commits; only the session scope commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from models.agent import AgentLease

_CLAIM = text(
    """
    INSERT INTO agent_leases (name, holder, expires_at)
    SELECT unnest(CAST(:names AS text[])), :holder, now() + make_interval(secs => :ttl_s)
    ON CONFLICT (name) DO UPDATE
        SET holder = excluded.holder, expires_at = excluded.expires_at
        WHERE agent_leases.expires_at < now() OR agent_leases.holder = excluded.holder
    RETURNING name
    """
)


def claim_leases(session: Session, names: Sequence[str], holder: str, ttl_s: float) -> set[str]:
    """The leases among `names` now held by `holder`: free, expired, or already its own."""
    if not names:
        return set()
    rows = session.execute(_CLAIM, {"names": list(names), "holder": holder, "ttl_s": ttl_s})
    return set(rows.scalars())


def release_leases(session: Session, names: Iterable[str], holder: str) -> None:
    """Give back the leases among `names` that `holder` holds."""
    names = list(names)
    if names:
        session.execute(
            delete(AgentLease).where(AgentLease.name.in_(names), AgentLease.holder == holder)
        )
