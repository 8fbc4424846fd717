"""The package registry (seed 000, with yapkg's identity from 003) and its benchmark history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    Base,
    CreatedAt,
    Inet,
    Str20,
    Str50,
    Str63,
    Str64,
    Str100,
    Str255,
    UpdatedAt,
    UuidPk,
)


class Package(Base):
    """A package: registry name like `@graph/layer4`, or yapkg's `field` + `full_name` (`foo/bar`).

    yapkg's identity is two nullable columns here rather than a second packages table;
    `full_name` is unique where present.
    """

    __tablename__ = "packages"

    id: Mapped[UuidPk]
    name: Mapped[Str255] = mapped_column(unique=True)
    version: Mapped[Str63 | None]
    description: Mapped[str | None]
    field: Mapped[Str63 | None]
    full_name: Mapped[str | None] = mapped_column(String(127), unique=True)
    type: Mapped[Str63 | None]
    published_at: Mapped[dt.datetime | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Maintainer(Base):
    """A person who maintains packages: team lead, contributor, viewer or admin."""

    __tablename__ = "maintainers"
    __table_args__ = (
        CheckConstraint("role IN ('team-lead', 'contributor', 'viewer', 'admin')", name="role"),
    )

    id: Mapped[UuidPk]
    name: Mapped[Str255]
    email: Mapped[Str255] = mapped_column(unique=True)
    role: Mapped[Str20] = mapped_column(server_default="contributor")
    created_at: Mapped[CreatedAt]


class PackageMaintainer(Base):
    """A maintainer's access to a package, at one scope."""

    __tablename__ = "package_maintainers"
    __table_args__ = (
        UniqueConstraint("package_id", "maintainer_id"),
        CheckConstraint("scope IN ('full-access', 'read-write', 'read-only')", name="scope"),
        Index("idx_package_maintainers_maintainer", "maintainer_id"),
    )

    id: Mapped[UuidPk]
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"))
    maintainer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("maintainers.id", ondelete="CASCADE")
    )
    scope: Mapped[Str20] = mapped_column(server_default="read-only")
    created_at: Mapped[CreatedAt]


class PackageVersion(Base):
    """One published version of a package, with its changelog."""

    __tablename__ = "package_versions"
    __table_args__ = (UniqueConstraint("package_id", "version"),)

    id: Mapped[UuidPk]
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"))
    version: Mapped[Str63]
    changelog: Mapped[str | None]
    published_at: Mapped[CreatedAt | None]
    created_at: Mapped[CreatedAt]


class AccessLog(Base):
    """One access to the registry, kept for a retention period."""

    __tablename__ = "access_logs"
    __table_args__ = (Index("idx_access_logs_created_at", "created_at"),)

    id: Mapped[UuidPk]
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"))
    maintainer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("maintainers.id", ondelete="SET NULL")
    )
    action: Mapped[Str50]
    ip_address: Mapped[Inet | None]
    user_agent: Mapped[str | None]
    created_at: Mapped[CreatedAt]


class Benchmark(Base):
    """One measured value of one benchmark metric in one CI run: a time series on `timestamp`.

    A TimescaleDB hypertable or a natively range-partitioned table (see `models.timeseries`);
    `uq_benchmarks_point` makes ingestion idempotent and, as both require, includes the time.
    """

    __tablename__ = "benchmarks"
    __table_args__ = (
        PrimaryKeyConstraint("id", "timestamp"),
        UniqueConstraint(
            "package_name",
            "benchmark",
            "metric",
            "testbed",
            "run_id",
            "timestamp",
            name="uq_benchmarks_point",
        ),
        Index(
            "idx_benchmarks_series",
            "package_name",
            "benchmark",
            "metric",
            "testbed",
            text('"timestamp" DESC'),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(server_default=text("gen_random_uuid()"))
    timestamp: Mapped[dt.datetime]
    package_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("packages.id", ondelete="SET NULL")
    )
    package_name: Mapped[Str255]
    version: Mapped[Str63 | None]
    benchmark: Mapped[Str255]
    metric: Mapped[Str100]
    value: Mapped[float]
    unit: Mapped[Str20]
    run_id: Mapped[str] = mapped_column(String(128))
    branch: Mapped[Str255 | None]
    commit_sha: Mapped[Str64 | None]
    testbed: Mapped[Str255] = mapped_column(server_default="")
    parameters: Mapped[dict[str, Any] | None]
    source: Mapped[Str50 | None]
    created_at: Mapped[CreatedAt]
