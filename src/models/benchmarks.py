"""The agent's benchmark bookkeeping: ingests (runs received), quarantined rows, alerts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, Str20, Str255, UuidPk

ZERO = text("0")


class BenchmarkIngest(Base):
    """One payload received, keyed by the SHA-256 of its content.

    The same content sent again finds this row (and `times_received` goes up) instead of
    making a second one; `accepted` adds up over every receipt, so it is what this content
    added to `benchmarks`. A payload that could not be read is kept as `rejected` with the
    error.
    """

    __tablename__ = "benchmark_ingests"
    __table_args__ = (CheckConstraint("status IN ('running', 'done', 'rejected')", name="status"),)

    id: Mapped[UuidPk]
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str | None] = mapped_column(String(30))
    source: Mapped[Str255 | None]
    status: Mapped[Str20] = mapped_column(server_default="running")
    accepted: Mapped[int] = mapped_column(server_default=ZERO)
    duplicate: Mapped[int] = mapped_column(server_default=ZERO)
    quarantined: Mapped[int] = mapped_column(server_default=ZERO)
    skipped: Mapped[int] = mapped_column(server_default=ZERO)
    reasons: Mapped[list[Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
    times_received: Mapped[int] = mapped_column(server_default=text("1"))
    first_received_at: Mapped[CreatedAt]
    last_received_at: Mapped[CreatedAt]
    finished_at: Mapped[dt.datetime | None]


class BenchmarkQuarantine(Base):
    """A row refused at validation: the raw row as the payload gave it, and the reason."""

    __tablename__ = "benchmark_quarantine"
    __table_args__ = (
        UniqueConstraint("ingest_id", "row_number"),
        Index("idx_benchmark_quarantine_created_at", "created_at"),
    )

    id: Mapped[UuidPk]
    ingest_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("benchmark_ingests.id", ondelete="CASCADE")
    )
    row_number: Mapped[int]
    run_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(200))
    raw: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class BenchmarkAlert(Base):
    """A new point worse than its series' history beyond the threshold (a regression)."""

    __tablename__ = "benchmark_alerts"
    __table_args__ = (
        UniqueConstraint(
            "package_name",
            "benchmark",
            "metric",
            "branch",
            "testbed",
            "timestamp",
            "run_id",
            name="uq_benchmark_alerts_point",
        ),
        CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status"),
        CheckConstraint("direction IN ('lower', 'higher')", name="direction"),
        CheckConstraint("test IN ('t_test', 'z_score')", name="test"),
        Index("idx_benchmark_alerts_status", "status", text("created_at DESC")),
    )

    id: Mapped[UuidPk]
    status: Mapped[Str20] = mapped_column(server_default="open")
    package_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("packages.id", ondelete="SET NULL")
    )
    package_name: Mapped[Str255]
    benchmark: Mapped[Str255]
    metric: Mapped[str] = mapped_column(String(100))
    branch: Mapped[Str255] = mapped_column(server_default="")
    testbed: Mapped[Str255] = mapped_column(server_default="")
    timestamp: Mapped[dt.datetime]
    run_id: Mapped[str] = mapped_column(String(128))
    unit: Mapped[Str20]
    value: Mapped[float]
    baseline: Mapped[float]
    stdev: Mapped[float]
    samples: Mapped[int]
    change: Mapped[float]
    direction: Mapped[str] = mapped_column(String(10))
    test: Mapped[str] = mapped_column(String(10))
    statistic: Mapped[float]
    p_value: Mapped[float]
    limit_value: Mapped[float]
    ingest_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("benchmark_ingests.id", ondelete="SET NULL")
    )
    created_at: Mapped[CreatedAt]
