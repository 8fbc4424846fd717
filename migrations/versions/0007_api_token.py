"""The MCP gateway's API tokens (seed 001 `apiToken`): adopted where the gateway made them.

The agent deactivates expired tokens as it does `api_keys`. Where the gateway created
`api_token` already, it is checked (`models.adoption`) and adopted as it is; otherwise the
agent creates it and records it as its own.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from models import adoption, ownership

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "api_token"
TSTZ = pg.TIMESTAMP(timezone=True)


def upgrade() -> None:
    bind = op.get_bind()
    [verdict] = adoption.inspect(bind, [TABLE])
    if verdict.problems:
        raise adoption.AdoptionError(list(verdict.problems))
    if verdict.state == "missing":
        _create()
    ownership.record(bind, TABLE, "table", "owned" if verdict.state == "missing" else "adopted")


def _create() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", pg.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()")),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "scopes", pg.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("expires_at", TSTZ, nullable=True),
        sa.Column("last_used_at", TSTZ, nullable=True),
        sa.Column("created_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_token_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_index("idx_api_token_expires_at", TABLE, ["expires_at"])


def downgrade() -> None:
    bind = op.get_bind()
    if TABLE in ownership.owned(bind, "table"):
        for table in ownership.droppable(bind, [TABLE], {TABLE}):
            op.drop_table(table)
    ownership.forget(bind, TABLE)
