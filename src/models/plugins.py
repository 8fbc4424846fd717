"""Tables the agent owns for plugin health: damping state per installation, and history.

`service_installations` (seed 002) has no room for the run of results behind its damped
`status`, nor for since when its `health_status` holds and why; rather than alter another
app's table, the agent keeps those in `agent_installation_health`, one row per installation.
MCP servers keep theirs in their own `consecutive_failures` and `health_details` columns.

`plugin_health_history` is a time series like `instance_health_history`: a TimescaleDB
hypertable, or natively range-partitioned by day. One table serves both kinds of plugin
(`plugin_type`), so it has no foreign key; retention removes rows of deleted plugins.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

from sqlalchemy import ForeignKey, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JsonObject, Str20, UpdatedAt
from models.timeseries import SERIES, Series

HISTORY_SERIES = Series("plugin_health_history", "time", "day")
# Registered with the other series, so that housekeeping keeps its partitions ahead and
# applies retention to it like to `instance_health_history`.
SERIES.setdefault(HISTORY_SERIES.table, HISTORY_SERIES)

INSTALLATION: Final = "installation"
MCP_SERVER: Final = "mcp_server"


class AgentInstallationHealth(Base):
    """The damping state of one installation and since when its health holds."""

    __tablename__ = "agent_installation_health"

    installation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("service_installations.id", ondelete="CASCADE"), primary_key=True
    )
    since: Mapped[dt.datetime]
    reason: Mapped[str | None]
    damping: Mapped[JsonObject]
    last_check: Mapped[dict[str, Any] | None]
    updated_at: Mapped[UpdatedAt]


class PluginHealthHistory(Base):
    """One check of one installation or MCP server (the key serves "latest checks of X")."""

    __tablename__ = "plugin_health_history"
    __table_args__ = (PrimaryKeyConstraint("plugin_id", "time"),)

    time: Mapped[dt.datetime]
    plugin_id: Mapped[uuid.UUID]
    plugin_type: Mapped[Str20]
    health_status: Mapped[Str20]
    latency_ms: Mapped[float | None]
    error_class: Mapped[str | None] = mapped_column(String(30))
    message: Mapped[str | None]
    details: Mapped[dict[str, Any] | None]


PLUGIN_LEASE = "plugins."


def plugin_lease(plugin_type: str, plugin_id: uuid.UUID | str) -> str:
    """The lease a check of one plugin holds."""
    return f"{PLUGIN_LEASE}{plugin_type}.{plugin_id}"
