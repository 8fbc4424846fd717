"""Check constraints named as the seeds name them: `email_format` (users), `key_length` (api_keys).

Revision 0001 named them by the naming convention (`ck_users_email_format`); a table the
agent creates should look like the one the owning app (SmartHub, seed 004) creates. Only
tables the agent created are renamed: an adopted table keeps its owner's names.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models import ownership

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, convention name, seed name)
RENAMES = (
    ("users", "ck_users_email_format", "email_format"),
    ("api_keys", "ck_api_keys_key_length", "key_length"),
)


def _rename(table: str, old: str, new: str) -> None:
    bind = op.get_bind()
    sql = sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint"
        " WHERE conrelid = to_regclass(:table) AND conname = :name)"
    )
    owned = table in ownership.owned(bind, "table")
    if owned and bind.execute(sql, {"table": table, "name": old}).scalar():
        op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


def upgrade() -> None:
    for table, convention, seed in RENAMES:
        _rename(table, convention, seed)


def downgrade() -> None:
    for table, convention, seed in RENAMES:
        _rename(table, seed, convention)
