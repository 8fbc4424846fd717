"""The agent's bookkeeping tables: leases, SSH host keys, key fingerprints, ownership."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class AgentLease(Base):
    """A named lease: whoever holds an unexpired one does that piece of work, nobody else.

    Health sweeps take `health.sweep`, each check takes `health.instance.<id>`, so a sweep
    never overlaps the previous one and no instance is checked twice at once; beat's leader
    holds `beat.leader`, and each periodic run `beat.run.<entry>` (`agent.runtime.beat`). A
    holder that dies loses its lease when it expires; its redelivered task (same holder) takes it
    back.
    """

    __tablename__ = "agent_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime]


class AgentKnownHost(Base):
    """The SSH host key the agent trusts for an instance (recorded on trust-on-first-use)."""

    __tablename__ = "agent_known_hosts"

    instance_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("infrastructure_instances.id", ondelete="CASCADE"), primary_key=True
    )
    host_entry: Mapped[str] = mapped_column(String(300))
    keyline: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[CreatedAt]


class AgentKey(Base):
    """The fingerprint of a secret key the agent's workers may run with.

    Recorded at the first start, replaced by `infra-agent secret rotate`; a worker whose
    keys match none of these refuses to start (`agent.runtime.key_check`).
    """

    __tablename__ = "agent_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[CreatedAt]


INSTANCE_LEASE = "health.instance."


def instance_lease(instance_id: uuid.UUID | str) -> str:
    """The lease a health check of one instance holds."""
    return f"{INSTANCE_LEASE}{instance_id}"


class AgentSchemaObject(Base):
    """A table, view or index of the shared schema, and whether the agent created or adopted it.

    `owned`: the agent's migrations created it, so a downgrade may remove it (but see
    `models.ownership`: never while other rows live in it). `adopted`: it was there before
    the agent (another app's), so nothing of the agent's ever drops or alters it.
    """

    __tablename__ = "agent_schema_objects"
    __table_args__ = (
        CheckConstraint("kind IN ('table', 'view', 'index')", name="kind"),
        CheckConstraint("ownership IN ('owned', 'adopted')", name="ownership"),
    )

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    ownership: Mapped[str] = mapped_column(String(10))
    recorded_at: Mapped[CreatedAt]
