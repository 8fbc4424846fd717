"""The agent's own bookkeeping: leases (no overlapping sweeps) and trusted SSH host keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = pg.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_leases",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", TSTZ, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_agent_leases")),
    )
    op.create_table(
        "agent_known_hosts",
        sa.Column("instance_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("host_entry", sa.String(300), nullable=False),
        sa.Column("keyline", sa.Text(), nullable=False),
        sa.Column("first_seen", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["infrastructure_instances.id"],
            name=op.f("fk_agent_known_hosts_instance_id_infrastructure_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_agent_known_hosts")),
    )


def downgrade() -> None:
    op.drop_table("agent_known_hosts")
    op.drop_table("agent_leases")
