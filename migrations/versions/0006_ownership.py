"""Ownership for databases the agent migrated before it could adopt other apps' tables.

Revision 0001 records what it creates and what it adopts in `agent_schema_objects`. A
database migrated before that has no record, and every shared table in it was created by
the agent then: they are recorded as owned, so a downgrade still knows what it may remove.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from models import ownership

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revision 0001's tables and views, as it created them before recording ownership.
TABLES = (
    *("users", "roles", "user_roles", "api_keys", "sessions", "session", "verification"),
    *("audit_logs", "spaces", "service_registry", "service_installations"),
    *("infrastructure_instances", "instance_services", "service_management_assignments"),
    *("instance_health_history", "tenant", "mcp_server", "mcp_tool", "packages"),
    *("maintainers", "package_maintainers", "package_versions", "access_logs", "benchmarks"),
)
VIEWS = ("latest_benchmarks_view", "package_maintainers_view")


def upgrade() -> None:
    bind = op.get_bind()
    if ownership.exists(bind):
        return
    ownership.create(bind)
    for table in TABLES:
        ownership.record(bind, table, "table", "owned")
    for view in VIEWS:
        ownership.record(bind, view, "view", "owned")


def downgrade() -> None:
    """Nothing: revision 0001's downgrade reads the records and removes the table."""
