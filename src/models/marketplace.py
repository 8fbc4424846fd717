"""The marketplace (seed 002): spaces, the plugins on offer and where they are installed."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    Base,
    CreatedAt,
    JsonObject,
    Str50,
    Str100,
    Str255,
    TextArray,
    UpdatedAt,
    UuidPk,
)

FALSE = text("false")
ZERO = text("0")


class Space(Base):
    """A workspace; other apps own this table, the agent only needs it for foreign keys."""

    __tablename__ = "spaces"

    id: Mapped[UuidPk]
    name: Mapped[Str255]
    created_at: Mapped[CreatedAt | None]
    updated_at: Mapped[UpdatedAt | None]


class ServiceRegistry(Base):
    """A plugin (service) offered in the marketplace."""

    __tablename__ = "service_registry"
    __table_args__ = (
        UniqueConstraint("slug", name="unique_slug"),
        CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'deprecated')", name="status"
        ),
        Index("idx_service_registry_category", "category"),
        Index("idx_service_registry_status", "status"),
        Index("idx_service_registry_verified", "verified"),
    )

    id: Mapped[UuidPk]
    name: Mapped[Str255]
    slug: Mapped[Str255]
    description: Mapped[str | None]
    version: Mapped[Str50]
    provider: Mapped[Str255]
    provider_url: Mapped[str | None]
    category: Mapped[Str100 | None]
    status: Mapped[Str50 | None] = mapped_column(server_default="pending")
    capabilities: Mapped[JsonObject | None]
    api_base_url: Mapped[str | None]
    api_auth_type: Mapped[Str50 | None]
    api_auth_config: Mapped[JsonObject | None]
    ui_type: Mapped[Str50 | None]
    ui_config: Mapped[JsonObject | None]
    webhook_supported: Mapped[bool | None] = mapped_column(server_default=FALSE)
    webhook_events: Mapped[TextArray | None]
    icon_url: Mapped[str | None]
    screenshots: Mapped[TextArray | None]
    documentation_url: Mapped[str | None]
    support_url: Mapped[str | None]
    pricing_info: Mapped[dict[str, Any] | None]
    installation_count: Mapped[int | None] = mapped_column(server_default=ZERO)
    rating: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    review_count: Mapped[int | None] = mapped_column(server_default=ZERO)
    verified: Mapped[bool | None] = mapped_column(server_default=FALSE)
    security_audit: Mapped[dict[str, Any] | None]
    created_at: Mapped[CreatedAt | None]
    updated_at: Mapped[UpdatedAt | None]
    deleted_at: Mapped[dt.datetime | None]


class ServiceInstallation(Base):
    """A plugin installed in a space; the agent keeps its health fields true."""

    __tablename__ = "service_installations"
    __table_args__ = (
        UniqueConstraint("service_id", "space_id"),
        CheckConstraint("status IN ('active', 'inactive', 'error')", name="status"),
        Index("idx_service_installations_space", "space_id"),
        Index("idx_service_installations_service", "service_id"),
        Index("idx_service_installations_status", "status"),
    )

    id: Mapped[UuidPk]
    service_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("service_registry.id", ondelete="CASCADE")
    )
    space_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    installed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    config: Mapped[JsonObject | None]
    credentials: Mapped[JsonObject | None]
    status: Mapped[Str50 | None] = mapped_column(server_default="active")
    last_health_check: Mapped[dt.datetime | None]
    health_status: Mapped[Str50 | None]
    permissions: Mapped[JsonObject | None]
    installed_at: Mapped[CreatedAt | None]
    updated_at: Mapped[UpdatedAt | None]
    deleted_at: Mapped[dt.datetime | None]
