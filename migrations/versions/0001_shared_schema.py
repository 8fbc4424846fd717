"""The shared schema: every table the agent reads or writes, its time series and its views.

Other apps usually created some of these tables before the agent arrived: a table that
exists is checked against what the agent needs (`models.adoption`) and adopted, not
created; one the agent cannot work with stops the migration before anything changes, with
one line per problem. `agent_schema_objects` records what was created and what adopted,
and the downgrade removes only what the agent created (`models.ownership`).

The time-series tables (`instance_health_history`, `benchmarks`) become TimescaleDB
hypertables when the extension can be used, else natively range-partitioned tables with
partitions created ahead (see `models.timeseries` and AGENT_TIMESERIES_BACKEND).

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

from agent.core.settings import get_settings
from models import adoption, ownership, timeseries
from models.queries import database_time

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic")

UUID = pg.UUID(as_uuid=True)
TSTZ = pg.TIMESTAMP(timezone=True)
JSONB = pg.JSONB()
TEXT_ARRAY = pg.ARRAY(sa.Text())
NOW = sa.text("now()")
EMPTY_OBJECT = sa.text("'{}'::jsonb")
TRUE = sa.text("true")
FALSE = sa.text("false")
EMAIL_FORMAT = r"email ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}$'"

# In creation order; downgrade drops the ones it created in reverse (partitions go along).
TABLES = adoption.SHARED_TABLES_0001

VIEWS = {
    "latest_benchmarks_view": """
        SELECT DISTINCT ON (package_name, benchmark, metric, testbed)
               id, "timestamp", package_id, package_name, version, benchmark, metric,
               value, unit, run_id, branch, commit_sha, testbed, parameters, source, created_at
        FROM benchmarks
        ORDER BY package_name, benchmark, metric, testbed, "timestamp" DESC
    """,
    "package_maintainers_view": """
        SELECT p.id AS package_id, p.name, p.version, p.published_at,
               m.id AS maintainer_id, m.name AS maintainer_name,
               m.email AS maintainer_email, m.role AS maintainer_role, pm.scope
        FROM packages p
        JOIN package_maintainers pm ON pm.package_id = p.id
        JOIN maintainers m ON m.id = pm.maintainer_id
    """,
}


def _id() -> sa.Column:
    return sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False)


def _at(name: str, nullable: bool = False, default: sa.TextClause | None = NOW) -> sa.Column:
    return sa.Column(name, TSTZ, server_default=default, nullable=nullable)


def _ref(name: str, target: str, nullable: bool = True, ondelete: str | None = None) -> sa.Column:
    return sa.Column(name, UUID, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)


def _json(name: str, default: sa.TextClause | None = EMPTY_OBJECT) -> sa.Column:
    return sa.Column(name, JSONB, server_default=default, nullable=True)


def _str(name: str, length: int | None, nullable: bool = True, default: str | None = None):
    kind = sa.String(length) if length else sa.Text()
    return sa.Column(name, kind, server_default=default, nullable=nullable)


# The tables that were there before this upgrade: adopted, never created or altered.
_present: set[str] = set()
# Only the agent writes these; the rest may hold other apps' rows.
AGENT_ONLY = {"instance_health_history"}


def _create_table(name: str, *elements, **options) -> None:
    if name not in _present:
        op.create_table(name, *elements, **options)


def _indexes(table: str, *indexes: tuple[str, list]) -> None:
    if table in _present:
        return
    for name, columns in indexes:
        op.create_index(name, table, columns)


def _adopt() -> None:
    """Check the tables that exist already; stop before any change if one will not do."""
    bind = op.get_bind()
    verdicts = adoption.inspect(bind, TABLES)
    problems = [problem for verdict in verdicts for problem in verdict.problems]
    if problems:
        raise adoption.AdoptionError(problems)
    _present.clear()
    _present.update(verdict.table for verdict in verdicts if verdict.state != "missing")
    for table in sorted(_present):
        log.info("%s: exists and has what the agent needs; adopted", table)
    ownership.create(bind)


def _record() -> None:
    bind = op.get_bind()
    for table in TABLES:
        ownership.record(bind, table, "table", "adopted" if table in _present else "owned")
    for view in VIEWS:
        ownership.record(bind, view, "view", "adopted" if view in _present else "owned")


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("revision 0001 inspects the server for TimescaleDB: run it online")
    _adopt()
    _auth()
    _marketplace()
    _infrastructure()
    _mcp()
    _registry()
    if not {"instance_health_history", "benchmarks"} <= _present:
        backend = _choose_backend()
        _instance_health_history(backend)
        _benchmarks(backend)
    _present.update(name for name in VIEWS if _relation_exists(name))
    for name, sql in VIEWS.items():
        if name not in _present:
            op.execute(f"CREATE VIEW {name} AS {sql}")
    _record()


def _relation_exists(name: str) -> bool:
    sql = sa.text("SELECT to_regclass(:name) IS NOT NULL")
    return op.get_bind().execute(sql, {"name": name}).scalar()


def downgrade() -> None:
    bind = op.get_bind()
    for index in ownership.owned(bind, "index"):
        op.execute(f'DROP INDEX IF EXISTS "{index}"')
    views = ownership.owned(bind, "view")
    for name in reversed(VIEWS):
        if name in views:
            op.execute(f"DROP VIEW IF EXISTS {name}")
    owned = ownership.owned(bind, "table")
    candidates = [table for table in reversed(TABLES) if table in owned]
    for table in ownership.droppable(bind, candidates, set(TABLES) - AGENT_ONLY):
        op.drop_table(table)
    op.drop_table(ownership.TABLE)


def _auth() -> None:
    _create_table(
        "users",
        _id(),
        _str("email", 255, nullable=False),
        _str("username", 100),
        _str("password_hash", 255),
        _str("first_name", 100),
        _str("last_name", 100),
        _str("avatar_url", 512),
        sa.Column("is_active", sa.Boolean(), server_default=TRUE),
        sa.Column("email_verified", sa.Boolean(), server_default=FALSE),
        _at("email_verified_at", nullable=True, default=None),
        _at("last_login_at", nullable=True, default=None),
        _str("name", None),
        _str("image", None),
        _at("created_at"),
        _at("updated_at"),
        _at("deleted_at", nullable=True, default=None),
        sa.CheckConstraint(EMAIL_FORMAT, name=op.f("ck_users_email_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    _indexes(
        "users",
        ("idx_users_email", ["email"]),
        ("idx_users_username", ["username"]),
        ("idx_users_is_active", ["is_active"]),
        ("idx_users_created_at", [sa.literal_column("created_at DESC")]),
    )
    _create_table(
        "roles",
        _id(),
        _str("name", 100, nullable=False),
        _str("description", None),
        sa.Column("is_system", sa.Boolean(), server_default=FALSE),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("name", name=op.f("uq_roles_name")),
    )
    _indexes("roles", ("idx_roles_name", ["name"]))
    _create_table(
        "user_roles",
        _id(),
        _ref("user_id", "users.id", nullable=False, ondelete="CASCADE"),
        _ref("role_id", "roles.id", nullable=False, ondelete="CASCADE"),
        _at("assigned_at"),
        _ref("assigned_by", "users.id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_roles")),
        sa.UniqueConstraint("user_id", "role_id", name=op.f("uq_user_roles_user_id_role_id")),
    )
    _indexes(
        "user_roles",
        ("idx_user_roles_user_id", ["user_id"]),
        ("idx_user_roles_role_id", ["role_id"]),
        ("idx_user_roles_composite", ["user_id", "role_id"]),
    )
    _api_keys_and_sessions()
    _better_auth()
    _create_table(
        "audit_logs",
        _id(),
        _ref("user_id", "users.id", ondelete="SET NULL"),
        _str("entity_type", 100, nullable=False),
        sa.Column("entity_id", UUID, nullable=False),
        _str("action", 50, nullable=False),
        _json("changes", default=None),
        sa.Column("ip_address", pg.INET()),
        _str("user_agent", None),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
    )
    _indexes(
        "audit_logs",
        ("idx_audit_logs_user_id", ["user_id"]),
        ("idx_audit_logs_entity", ["entity_type", "entity_id"]),
        ("idx_audit_logs_created_at", [sa.literal_column("created_at DESC")]),
    )


def _api_keys_and_sessions() -> None:
    _create_table(
        "api_keys",
        _id(),
        _ref("user_id", "users.id", nullable=False, ondelete="CASCADE"),
        _str("key_hash", 64, nullable=False),
        _str("name", 100),
        _str("description", None),
        _at("last_used_at", nullable=True, default=None),
        _at("expires_at", nullable=True, default=None),
        sa.Column("is_active", sa.Boolean(), server_default=TRUE),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint("LENGTH(key_hash) = 64", name=op.f("ck_api_keys_key_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    _indexes(
        "api_keys",
        ("idx_api_keys_user_id", ["user_id"]),
        ("idx_api_keys_expires_at", ["expires_at"]),
        ("idx_api_keys_active", ["is_active"]),
    )
    _create_table(
        "sessions",
        _id(),
        _ref("user_id", "users.id", nullable=False, ondelete="CASCADE"),
        _str("token_hash", 64, nullable=False),
        sa.Column("ip_address", pg.INET()),
        _str("user_agent", None),
        _at("expires_at", default=None),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    _indexes(
        "sessions",
        ("idx_sessions_user_id", ["user_id"]),
        ("idx_sessions_expires_at", ["expires_at"]),
        ("idx_sessions_token_hash", ["token_hash"]),
    )


def _better_auth() -> None:
    _create_table(
        "session",
        _str("id", None, nullable=False),
        _at("expires_at", default=None),
        _str("token", None, nullable=False),
        _at("created_at"),
        _at("updated_at"),
        _str("ip_address", None),
        _str("user_agent", None),
        _ref("user_id", "users.id", nullable=False, ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session")),
        sa.UniqueConstraint("token", name=op.f("uq_session_token")),
    )
    _indexes("session", (op.f("ix_session_expires_at"), ["expires_at"]))
    _create_table(
        "verification",
        _str("id", None, nullable=False),
        _str("identifier", None, nullable=False),
        _str("value", None, nullable=False),
        _at("expires_at", default=None),
        _at("created_at", nullable=True),
        _at("updated_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification")),
    )
    _indexes("verification", (op.f("ix_verification_expires_at"), ["expires_at"]))


def _marketplace() -> None:
    _create_table(
        "spaces",
        _id(),
        _str("name", 255, nullable=False),
        _at("created_at", nullable=True),
        _at("updated_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
    )
    _create_table(
        "service_registry",
        _id(),
        _str("name", 255, nullable=False),
        _str("slug", 255, nullable=False),
        _str("description", None),
        _str("version", 50, nullable=False),
        _str("provider", 255, nullable=False),
        _str("provider_url", None),
        _str("category", 100),
        _str("status", 50, default="pending"),
        _json("capabilities"),
        _str("api_base_url", None),
        _str("api_auth_type", 50),
        _json("api_auth_config"),
        _str("ui_type", 50),
        _json("ui_config"),
        sa.Column("webhook_supported", sa.Boolean(), server_default=FALSE),
        sa.Column("webhook_events", TEXT_ARRAY),
        _str("icon_url", None),
        sa.Column("screenshots", TEXT_ARRAY),
        _str("documentation_url", None),
        _str("support_url", None),
        _json("pricing_info", default=None),
        sa.Column("installation_count", sa.Integer(), server_default=sa.text("0")),
        sa.Column("rating", sa.Numeric(3, 2)),
        sa.Column("review_count", sa.Integer(), server_default=sa.text("0")),
        sa.Column("verified", sa.Boolean(), server_default=FALSE),
        _json("security_audit", default=None),
        _at("created_at", nullable=True),
        _at("updated_at", nullable=True),
        _at("deleted_at", nullable=True, default=None),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'deprecated')",
            name=op.f("ck_service_registry_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_registry")),
        sa.UniqueConstraint("slug", name="unique_slug"),
    )
    _indexes(
        "service_registry",
        ("idx_service_registry_category", ["category"]),
        ("idx_service_registry_status", ["status"]),
        ("idx_service_registry_verified", ["verified"]),
    )
    _create_table(
        "service_installations",
        _id(),
        _ref("service_id", "service_registry.id", ondelete="CASCADE"),
        _ref("space_id", "spaces.id", ondelete="CASCADE"),
        _ref("installed_by", "users.id"),
        _json("config"),
        _json("credentials"),
        _str("status", 50, default="active"),
        _at("last_health_check", nullable=True, default=None),
        _str("health_status", 50),
        _json("permissions"),
        _at("installed_at", nullable=True),
        _at("updated_at", nullable=True),
        _at("deleted_at", nullable=True, default=None),
        sa.CheckConstraint(
            "status IN ('active', 'inactive', 'error')",
            name=op.f("ck_service_installations_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_installations")),
        sa.UniqueConstraint(
            "service_id", "space_id", name=op.f("uq_service_installations_service_id_space_id")
        ),
    )
    _indexes(
        "service_installations",
        ("idx_service_installations_space", ["space_id"]),
        ("idx_service_installations_service", ["service_id"]),
        ("idx_service_installations_status", ["status"]),
    )


def _infrastructure() -> None:
    _create_table(
        "infrastructure_instances",
        _id(),
        _str("name", 255, nullable=False),
        _str("type", 50, nullable=False),
        _str("host", 255, nullable=False),
        sa.Column("port", sa.Integer()),
        _str("protocol", 10, default="ssh"),
        _str("connection_type", 50),
        _json("connection_config"),
        _str("status", 50, default="unknown"),
        _at("last_health_check", nullable=True, default=None),
        _json("health_status"),
        _str("os_type", 50),
        _str("os_version", 50),
        _json("resources", default=None),
        sa.Column("tags", TEXT_ARRAY),
        _ref("space_id", "spaces.id"),
        _ref("created_by", "users.id"),
        _at("created_at", nullable=True),
        _at("updated_at", nullable=True),
        _at("deleted_at", nullable=True, default=None),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_infrastructure_instances")),
    )
    _indexes(
        "infrastructure_instances",
        ("idx_infrastructure_instances_space", ["space_id"]),
        ("idx_infrastructure_instances_type", ["type"]),
        ("idx_infrastructure_instances_status", ["status"]),
    )
    _create_table(
        "instance_services",
        _id(),
        _ref("instance_id", "infrastructure_instances.id", ondelete="CASCADE"),
        _str("name", 255, nullable=False),
        _str("type", 50, nullable=False),
        _str("status", 50, default="unknown"),
        _json("service_config"),
        _json("endpoints", default=sa.text("'[]'::jsonb")),
        _str("health_check_url", None),
        _ref("management_plugin_id", "service_registry.id"),
        _json("management_config"),
        _at("discovered_at", nullable=True),
        _at("last_seen", nullable=True),
        _at("created_at", nullable=True),
        _at("updated_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_services")),
        sa.UniqueConstraint(
            "instance_id", "name", "type", name=op.f("uq_instance_services_instance_id_name_type")
        ),
    )
    _indexes(
        "instance_services",
        ("idx_instance_services_instance", ["instance_id"]),
        ("idx_instance_services_plugin", ["management_plugin_id"]),
        ("idx_instance_services_status", ["status"]),
    )
    _create_table(
        "service_management_assignments",
        _id(),
        _ref("instance_service_id", "instance_services.id", ondelete="CASCADE"),
        _ref("plugin_id", "service_registry.id", ondelete="CASCADE"),
        _ref("assigned_by", "users.id"),
        _at("assigned_at", nullable=True),
        _json("config"),
        _json("credentials"),
        sa.Column("is_active", sa.Boolean(), server_default=TRUE),
        _at("last_used", nullable=True, default=None),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_management_assignments")),
        sa.UniqueConstraint(
            "instance_service_id",
            "plugin_id",
            name=op.f("uq_service_management_assignments_instance_service_id_plugin_id"),
        ),
    )
    _indexes(
        "service_management_assignments",
        ("idx_service_management_assignments_service", ["instance_service_id"]),
        ("idx_service_management_assignments_plugin", ["plugin_id"]),
    )


def _mcp() -> None:
    _create_table(
        "tenant",
        _id(),
        _str("name", None, nullable=False),
        _str("slug", None, nullable=False),
        _str("status", None, nullable=False, default="active"),
        _str("plan_type", None, nullable=False, default="free"),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'pending', 'cancelled')",
            name=op.f("ck_tenant_status"),
        ),
        sa.CheckConstraint(
            "plan_type IN ('free', 'starter', 'professional', 'enterprise')",
            name=op.f("ck_tenant_plan_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenant_slug")),
    )
    _create_table(
        "mcp_server",
        _id(),
        _str("name", None, nullable=False),
        _str("endpoint_url", None, nullable=False),
        _str("transport_type", None, nullable=False, default="http"),
        _str("status", None, nullable=False, default="active"),
        _ref("tenant_id", "tenant.id", ondelete="CASCADE"),
        _at("last_health_check", nullable=True, default=None),
        _str("health_status", 50),
        _json("health_details", default=None),
        _json("server_info", default=None),
        sa.Column(
            "consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint(
            "transport_type IN ('http', 'websocket', 'stdio', 'sse')",
            name=op.f("ck_mcp_server_transport_type"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'inactive', 'error', 'maintenance')",
            name=op.f("ck_mcp_server_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_server")),
    )
    _indexes(
        "mcp_server",
        ("idx_mcp_server_tenant", ["tenant_id"]),
        ("idx_mcp_server_status", ["status"]),
    )
    _create_table(
        "mcp_tool",
        _id(),
        _ref("server_id", "mcp_server.id", nullable=False, ondelete="CASCADE"),
        _str("name", None, nullable=False),
        _str("description", None),
        _json("input_schema", default=None),
        _str("status", None, nullable=False, default="active"),
        _at("last_seen_at", nullable=True, default=None),
        _at("removed_at", nullable=True, default=None),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint("status IN ('active', 'removed')", name=op.f("ck_mcp_tool_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_tool")),
        sa.UniqueConstraint("server_id", "name", name=op.f("uq_mcp_tool_server_id_name")),
    )


def _registry() -> None:
    _create_table(
        "packages",
        _id(),
        _str("name", 255, nullable=False),
        _str("version", 63),
        _str("description", None),
        _str("field", 63),
        _str("full_name", 127),
        _str("type", 63),
        _at("published_at", nullable=True, default=None),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packages")),
        sa.UniqueConstraint("name", name=op.f("uq_packages_name")),
        sa.UniqueConstraint("full_name", name=op.f("uq_packages_full_name")),
    )
    _create_table(
        "maintainers",
        _id(),
        _str("name", 255, nullable=False),
        _str("email", 255, nullable=False),
        _str("role", 20, nullable=False, default="contributor"),
        _at("created_at"),
        sa.CheckConstraint(
            "role IN ('team-lead', 'contributor', 'viewer', 'admin')",
            name=op.f("ck_maintainers_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintainers")),
        sa.UniqueConstraint("email", name=op.f("uq_maintainers_email")),
    )
    _create_table(
        "package_maintainers",
        _id(),
        _ref("package_id", "packages.id", nullable=False, ondelete="CASCADE"),
        _ref("maintainer_id", "maintainers.id", nullable=False, ondelete="CASCADE"),
        _str("scope", 20, nullable=False, default="read-only"),
        _at("created_at"),
        sa.CheckConstraint(
            "scope IN ('full-access', 'read-write', 'read-only')",
            name=op.f("ck_package_maintainers_scope"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package_maintainers")),
        sa.UniqueConstraint(
            "package_id",
            "maintainer_id",
            name=op.f("uq_package_maintainers_package_id_maintainer_id"),
        ),
    )
    _indexes("package_maintainers", ("idx_package_maintainers_maintainer", ["maintainer_id"]))
    _create_table(
        "package_versions",
        _id(),
        _ref("package_id", "packages.id", nullable=False, ondelete="CASCADE"),
        _str("version", 63, nullable=False),
        _str("changelog", None),
        _at("published_at", nullable=True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package_versions")),
        sa.UniqueConstraint(
            "package_id", "version", name=op.f("uq_package_versions_package_id_version")
        ),
    )
    _create_table(
        "access_logs",
        _id(),
        _ref("package_id", "packages.id", nullable=False, ondelete="CASCADE"),
        _ref("maintainer_id", "maintainers.id", ondelete="SET NULL"),
        _str("action", 50, nullable=False),
        sa.Column("ip_address", pg.INET()),
        _str("user_agent", None),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_logs")),
    )
    _indexes("access_logs", ("idx_access_logs_created_at", ["created_at"]))


def _choose_backend() -> timeseries.Backend:
    preference = get_settings().timeseries_backend
    backend = timeseries.choose_backend(op.get_bind(), preference)
    log.info("time-series tables: %s (AGENT_TIMESERIES_BACKEND=%s)", backend, preference)
    return backend


def _create_timeseries(backend: timeseries.Backend, table: str, *elements) -> None:
    """Create a time-series table as a hypertable or a range-partitioned table."""
    series = timeseries.SERIES[table]
    if table in _present:
        return
    if backend == "native":
        op.create_table(table, *elements, postgresql_partition_by=f'RANGE ("{series.column}")')
        ahead = get_settings().partitions_ahead
        now = database_time(op.get_bind())
        created = timeseries.ensure_partitions_ahead(op.get_bind(), series, now, ahead)
        log.info(
            "%s: %d %s partitions, %s to %s",
            table,
            len(created),
            series.interval,
            created[0],
            created[-1],
        )
    else:
        op.create_table(table, *elements)
        timeseries.create_hypertable(op.get_bind(), series)
        log.info("%s: hypertable on %s", table, series.column)


def _instance_health_history(backend: timeseries.Backend) -> None:
    _create_timeseries(
        backend,
        "instance_health_history",
        _at("time", default=None),
        _ref("instance_id", "infrastructure_instances.id", nullable=False, ondelete="CASCADE"),
        _str("kind", 20, nullable=False),
        _str("status", 20, nullable=False),
        sa.Column("latency_ms", pg.DOUBLE_PRECISION()),
        _str("error_class", 30),
        _str("message", None),
        _json("details", default=None),
        sa.PrimaryKeyConstraint("instance_id", "time", name=op.f("pk_instance_health_history")),
    )


def _benchmarks(backend: timeseries.Backend) -> None:
    _create_timeseries(
        backend,
        "benchmarks",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        _at("timestamp", default=None),
        _ref("package_id", "packages.id", ondelete="SET NULL"),
        _str("package_name", 255, nullable=False),
        _str("version", 63),
        _str("benchmark", 255, nullable=False),
        _str("metric", 100, nullable=False),
        sa.Column("value", pg.DOUBLE_PRECISION(), nullable=False),
        _str("unit", 20, nullable=False),
        _str("run_id", 128, nullable=False),
        _str("branch", 255),
        _str("commit_sha", 64),
        _str("testbed", 255, nullable=False, default=""),
        _json("parameters", default=None),
        _str("source", 50),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", "timestamp", name=op.f("pk_benchmarks")),
        sa.UniqueConstraint(
            "package_name",
            "benchmark",
            "metric",
            "testbed",
            "run_id",
            "timestamp",
            name="uq_benchmarks_point",
        ),
    )
    series_columns = ["package_name", "benchmark", "metric", "testbed"]
    _indexes(
        "benchmarks",
        ("idx_benchmarks_series", [*series_columns, sa.literal_column('"timestamp" DESC')]),
    )
