"""The MCP registry gateway (seed 001): tenants, MCP servers, their tools, API tokens.

The gateway's Drizzle schema names its tables in the singular, like Better-Auth's
`user`/`session`; these follow it (`tenant`, `mcp_server`, `mcp_tool`) with snake_case columns.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, Str50, TextArray, UpdatedAt, UuidPk


class Tenant(Base):
    """An organisation using the gateway."""

    __tablename__ = "tenant"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended', 'pending', 'cancelled')", name="status"),
        CheckConstraint(
            "plan_type IN ('free', 'starter', 'professional', 'enterprise')", name="plan_type"
        ),
    )

    id: Mapped[UuidPk]
    name: Mapped[str]
    slug: Mapped[str] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(server_default="active")
    plan_type: Mapped[str] = mapped_column(server_default="free")
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class McpServer(Base):
    """A registered MCP server; `tenant_id` null means global. The agent keeps its health."""

    __tablename__ = "mcp_server"
    __table_args__ = (
        CheckConstraint(
            "transport_type IN ('http', 'websocket', 'stdio', 'sse')", name="transport_type"
        ),
        CheckConstraint("status IN ('active', 'inactive', 'error', 'maintenance')", name="status"),
        Index("idx_mcp_server_tenant", "tenant_id"),
        Index("idx_mcp_server_status", "status"),
    )

    id: Mapped[UuidPk]
    name: Mapped[str]
    endpoint_url: Mapped[str]
    transport_type: Mapped[str] = mapped_column(server_default="http")
    status: Mapped[str] = mapped_column(server_default="active")
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    last_health_check: Mapped[dt.datetime | None]
    health_status: Mapped[Str50 | None]
    health_details: Mapped[dict[str, Any] | None]
    server_info: Mapped[dict[str, Any] | None]
    consecutive_failures: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class McpTool(Base):
    """A tool an MCP server lists; tools that disappear are marked removed, not deleted."""

    __tablename__ = "mcp_tool"
    __table_args__ = (
        UniqueConstraint("server_id", "name"),
        CheckConstraint("status IN ('active', 'removed')", name="status"),
    )

    id: Mapped[UuidPk]
    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mcp_server.id", ondelete="CASCADE"))
    name: Mapped[str]
    description: Mapped[str | None]
    input_schema: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(server_default="active")
    last_seen_at: Mapped[dt.datetime | None]
    removed_at: Mapped[dt.datetime | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class ApiToken(Base):
    """An API token of the gateway (`apiToken`), stored as its SHA-256 hash; it expires.

    The agent deactivates expired tokens as it does `api_keys`, with one audit row each.
    """

    __tablename__ = "api_token"
    __table_args__ = (Index("idx_api_token_expires_at", "expires_at"),)

    id: Mapped[UuidPk]
    token_hash: Mapped[str] = mapped_column(unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str | None]
    scopes: Mapped[TextArray] = mapped_column(server_default=text("'{}'::text[]"))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
