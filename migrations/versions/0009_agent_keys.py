"""The fingerprints of the secret keys the workers may run with (issue 15).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_keys",
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column(
            "recorded_at",
            pg.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_agent_keys")),
    )


def downgrade() -> None:
    op.drop_table("agent_keys")
