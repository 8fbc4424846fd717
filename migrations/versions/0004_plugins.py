"""Plugin health: damping state per installation, and a history of plugin checks.

`plugin_health_history` is a time series like `instance_health_history`: a TimescaleDB
hypertable when the extension can be used, else range-partitioned by day with partitions
created ahead (see `models.timeseries`; the plugins refresh keeps them ahead afterwards).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-22
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from agent.core.settings import get_settings
from models import timeseries
from models.plugins import HISTORY_SERIES
from models.queries import database_time

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic")

UUID = pg.UUID(as_uuid=True)
TSTZ = pg.TIMESTAMP(timezone=True)


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("revision 0004 inspects the server for TimescaleDB: run it online")
    op.create_table(
        "agent_installation_health",
        sa.Column("installation_id", UUID, nullable=False),
        sa.Column("since", TSTZ, nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("damping", pg.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("last_check", pg.JSONB()),
        sa.Column("updated_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["installation_id"],
            ["service_installations.id"],
            name=op.f("fk_agent_installation_health_installation_id_service_installations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("installation_id", name=op.f("pk_agent_installation_health")),
    )
    _plugin_health_history()


def _plugin_health_history() -> None:
    elements = (
        sa.Column("time", TSTZ, nullable=False),
        sa.Column("plugin_id", UUID, nullable=False),
        sa.Column("plugin_type", sa.String(20), nullable=False),
        sa.Column("health_status", sa.String(20), nullable=False),
        sa.Column("latency_ms", pg.DOUBLE_PRECISION()),
        sa.Column("error_class", sa.String(30)),
        sa.Column("message", sa.Text()),
        sa.Column("details", pg.JSONB()),
        sa.PrimaryKeyConstraint("plugin_id", "time", name=op.f("pk_plugin_health_history")),
    )
    bind, series = op.get_bind(), HISTORY_SERIES
    backend = timeseries.current_backend(bind, "instance_health_history")
    if backend is None:
        backend = timeseries.choose_backend(bind, get_settings().timeseries_backend)
    if backend == "native":
        op.create_table(series.table, *elements, postgresql_partition_by='RANGE ("time")')
        now, ahead = database_time(bind), get_settings().partitions_ahead
        created = timeseries.ensure_partitions_ahead(bind, series, now, ahead)
        log.info("%s: %d day partitions from %s", series.table, len(created), created[0])
    else:
        op.create_table(series.table, *elements)
        timeseries.create_hypertable(bind, series)
        log.info("%s: hypertable on time", series.table)


def downgrade() -> None:
    op.drop_table("plugin_health_history")
    op.drop_table("agent_installation_health")
