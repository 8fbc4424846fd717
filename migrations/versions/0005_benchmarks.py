"""Benchmark ingestion: runs received, quarantined rows, regression alerts; a faster latest view.

`latest_benchmarks_view` keeps its columns and meaning (the latest point of each package,
benchmark, metric and testbed) but no longer sorts every row of the table: it lists the
series (an index-only scan of `idx_benchmarks_series`) and fetches one row per series
(one index probe each). A filter on `package_name`, `benchmark`, `metric` or `testbed`
reaches the series list, so `WHERE package_name = '@graph/layer4'` reads only that package.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from models import ownership

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = pg.UUID(as_uuid=True)
TSTZ = pg.TIMESTAMP(timezone=True)
FLOAT = pg.DOUBLE_PRECISION()
NOW = sa.text("now()")
ZERO = sa.text("0")

LATEST_VIEW = """
    SELECT b.id, b."timestamp", b.package_id, s.package_name, b.version, s.benchmark,
           s.metric, b.value, b.unit, b.run_id, b.branch, b.commit_sha, s.testbed,
           b.parameters, b.source, b.created_at
    FROM (SELECT DISTINCT package_name, benchmark, metric, testbed FROM benchmarks) AS s
    CROSS JOIN LATERAL (
        SELECT * FROM benchmarks AS p
        WHERE p.package_name = s.package_name AND p.benchmark = s.benchmark
          AND p.metric = s.metric AND p.testbed = s.testbed
        ORDER BY p."timestamp" DESC
        LIMIT 1
    ) AS b
"""

# Revision 0001's definition, put back on downgrade.
PREVIOUS_LATEST_VIEW = """
    SELECT DISTINCT ON (package_name, benchmark, metric, testbed)
           id, "timestamp", package_id, package_name, version, benchmark, metric,
           value, unit, run_id, branch, commit_sha, testbed, parameters, source, created_at
    FROM benchmarks
    ORDER BY package_name, benchmark, metric, testbed, "timestamp" DESC
"""


def upgrade() -> None:
    _ingests()
    _quarantine()
    _alerts()
    if _owns_latest_view():
        op.execute(f"CREATE OR REPLACE VIEW latest_benchmarks_view AS {LATEST_VIEW}")


def downgrade() -> None:
    if _owns_latest_view():
        op.execute(f"CREATE OR REPLACE VIEW latest_benchmarks_view AS {PREVIOUS_LATEST_VIEW}")
    op.drop_table("benchmark_alerts")
    op.drop_table("benchmark_quarantine")
    op.drop_table("benchmark_ingests")


def _owns_latest_view() -> bool:
    """An adopted view is the registry's: its definition is never replaced."""
    return "latest_benchmarks_view" in ownership.owned(op.get_bind(), "view")


def _count(name: str, default: sa.TextClause = ZERO) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default=default, nullable=False)


def _ingests() -> None:
    op.create_table(
        "benchmark_ingests",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(30), nullable=True),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("status", sa.String(20), server_default="running", nullable=False),
        _count("accepted"),
        _count("duplicate"),
        _count("quarantined"),
        _count("skipped"),
        sa.Column("reasons", pg.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _count("times_received", sa.text("1")),
        sa.Column("first_received_at", TSTZ, server_default=NOW, nullable=False),
        sa.Column("last_received_at", TSTZ, server_default=NOW, nullable=False),
        sa.Column("finished_at", TSTZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'rejected')", name=op.f("ck_benchmark_ingests_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_ingests")),
        sa.UniqueConstraint("content_sha256", name=op.f("uq_benchmark_ingests_content_sha256")),
    )


def _quarantine() -> None:
    op.create_table(
        "benchmark_quarantine",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("ingest_id", UUID, nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("created_at", TSTZ, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["ingest_id"],
            ["benchmark_ingests.id"],
            name=op.f("fk_benchmark_quarantine_ingest_id_benchmark_ingests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_quarantine")),
        sa.UniqueConstraint(
            "ingest_id", "row_number", name=op.f("uq_benchmark_quarantine_ingest_id_row_number")
        ),
    )
    op.create_index("idx_benchmark_quarantine_created_at", "benchmark_quarantine", ["created_at"])


def _alerts() -> None:
    op.create_table(
        "benchmark_alerts",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("status", sa.String(20), server_default="open", nullable=False),
        sa.Column("package_id", UUID, nullable=True),
        sa.Column("package_name", sa.String(255), nullable=False),
        sa.Column("benchmark", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("branch", sa.String(255), server_default="", nullable=False),
        sa.Column("testbed", sa.String(255), server_default="", nullable=False),
        sa.Column("timestamp", TSTZ, nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        *(sa.Column(name, FLOAT, nullable=False) for name in ("value", "baseline", "stdev")),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("change", FLOAT, nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("test", sa.String(10), nullable=False),
        *(
            sa.Column(name, FLOAT, nullable=False)
            for name in ("statistic", "p_value", "limit_value")
        ),
        sa.Column("ingest_id", UUID, nullable=True),
        sa.Column("created_at", TSTZ, server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')",
            name=op.f("ck_benchmark_alerts_status"),
        ),
        sa.CheckConstraint(
            "direction IN ('lower', 'higher')", name=op.f("ck_benchmark_alerts_direction")
        ),
        sa.CheckConstraint("test IN ('t_test', 'z_score')", name=op.f("ck_benchmark_alerts_test")),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["packages.id"],
            name=op.f("fk_benchmark_alerts_package_id_packages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ingest_id"],
            ["benchmark_ingests.id"],
            name=op.f("fk_benchmark_alerts_ingest_id_benchmark_ingests"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_alerts")),
        sa.UniqueConstraint(
            "package_name",
            "benchmark",
            "metric",
            "branch",
            "testbed",
            "timestamp",
            "run_id",
            name="uq_benchmark_alerts_point",
        ),
    )
    op.create_index(
        "idx_benchmark_alerts_status",
        "benchmark_alerts",
        ["status", sa.literal_column("created_at DESC")],
    )
