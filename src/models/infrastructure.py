"""Infrastructure (seed 002): instances, the services found on them, and their health history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    Base,
    CreatedAt,
    JsonList,
    JsonObject,
    Str20,
    Str50,
    Str255,
    TextArray,
    UpdatedAt,
    UuidPk,
)


class InfrastructureInstance(Base):
    """A machine the agent checks: VM, Docker host, Kubernetes cluster or cloud instance."""

    __tablename__ = "infrastructure_instances"
    __table_args__ = (
        Index("idx_infrastructure_instances_space", "space_id"),
        Index("idx_infrastructure_instances_type", "type"),
        Index("idx_infrastructure_instances_status", "status"),
    )

    id: Mapped[UuidPk]
    name: Mapped[Str255]
    type: Mapped[Str50]
    host: Mapped[Str255]
    port: Mapped[int | None]
    protocol: Mapped[str | None] = mapped_column(String(10), server_default="ssh")
    connection_type: Mapped[Str50 | None]
    connection_config: Mapped[JsonObject | None]
    status: Mapped[Str50 | None] = mapped_column(server_default="unknown")
    last_health_check: Mapped[dt.datetime | None]
    health_status: Mapped[JsonObject | None]
    os_type: Mapped[Str50 | None]
    os_version: Mapped[Str50 | None]
    resources: Mapped[dict[str, Any] | None]
    tags: Mapped[TextArray | None]
    space_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("spaces.id"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[CreatedAt | None]
    updated_at: Mapped[UpdatedAt | None]
    deleted_at: Mapped[dt.datetime | None]


class InstanceService(Base):
    """A service discovered on an instance: a container, a systemd unit, a workload."""

    __tablename__ = "instance_services"
    __table_args__ = (
        UniqueConstraint("instance_id", "name", "type"),
        Index("idx_instance_services_instance", "instance_id"),
        Index("idx_instance_services_plugin", "management_plugin_id"),
        Index("idx_instance_services_status", "status"),
    )

    id: Mapped[UuidPk]
    instance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("infrastructure_instances.id", ondelete="CASCADE")
    )
    name: Mapped[Str255]
    type: Mapped[Str50]
    status: Mapped[Str50 | None] = mapped_column(server_default="unknown")
    service_config: Mapped[JsonObject | None]
    endpoints: Mapped[JsonList | None]
    health_check_url: Mapped[str | None]
    management_plugin_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("service_registry.id")
    )
    management_config: Mapped[JsonObject | None]
    discovered_at: Mapped[CreatedAt | None]
    last_seen: Mapped[CreatedAt | None]
    created_at: Mapped[CreatedAt | None]
    updated_at: Mapped[UpdatedAt | None]


class ServiceManagementAssignment(Base):
    """A management plugin assigned to a discovered service."""

    __tablename__ = "service_management_assignments"
    __table_args__ = (
        UniqueConstraint("instance_service_id", "plugin_id"),
        Index("idx_service_management_assignments_service", "instance_service_id"),
        Index("idx_service_management_assignments_plugin", "plugin_id"),
    )

    id: Mapped[UuidPk]
    instance_service_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("instance_services.id", ondelete="CASCADE")
    )
    plugin_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("service_registry.id", ondelete="CASCADE")
    )
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[CreatedAt | None]
    config: Mapped[JsonObject | None]
    credentials: Mapped[JsonObject | None]
    is_active: Mapped[bool | None] = mapped_column(server_default=text("true"))
    last_used: Mapped[dt.datetime | None]


class InstanceHealthHistory(Base):
    """One row per health check of an instance: a time series owned by the agent.

    A TimescaleDB hypertable or a natively range-partitioned table on `time` (decided by
    the migration, see `models.timeseries`), so the primary key includes `time`; it also
    serves "latest checks of instance X" by scanning backwards.
    """

    __tablename__ = "instance_health_history"
    __table_args__ = (PrimaryKeyConstraint("instance_id", "time"),)

    time: Mapped[dt.datetime]
    instance_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("infrastructure_instances.id", ondelete="CASCADE")
    )
    kind: Mapped[Str20]
    status: Mapped[Str20]
    latency_ms: Mapped[float | None]
    error_class: Mapped[str | None] = mapped_column(String(30))
    message: Mapped[str | None]
    details: Mapped[dict[str, Any] | None]
