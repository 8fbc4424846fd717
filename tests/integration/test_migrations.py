import datetime as dt
import itertools

import pytest
from sqlalchemy import create_engine, text

from agent.cli import migrate
from agent.core.settings import get_settings, to_sqlalchemy_url
from models import timeseries
from tests.support.databases import new_database

TABLES = {
    "users",
    "roles",
    "user_roles",
    "api_keys",
    "sessions",
    "session",
    "verification",
    "audit_logs",
    "spaces",
    "service_registry",
    "service_installations",
    "infrastructure_instances",
    "instance_services",
    "service_management_assignments",
    "instance_health_history",
    "tenant",
    "mcp_server",
    "mcp_tool",
    "packages",
    "maintainers",
    "package_maintainers",
    "package_versions",
    "access_logs",
    "benchmarks",
    "agent_leases",
    "agent_known_hosts",
    "agent_installation_health",
    "plugin_health_history",
    "benchmark_ingests",
    "benchmark_quarantine",
    "benchmark_alerts",
}
SEED_INDEXES = {
    "idx_users_email",
    "idx_users_username",
    "idx_users_is_active",
    "idx_users_created_at",
    "idx_roles_name",
    "idx_user_roles_user_id",
    "idx_user_roles_role_id",
    "idx_user_roles_composite",
    "idx_api_keys_user_id",
    "idx_api_keys_expires_at",
    "idx_api_keys_active",
    "idx_sessions_user_id",
    "idx_sessions_expires_at",
    "idx_sessions_token_hash",
    "idx_audit_logs_user_id",
    "idx_audit_logs_entity",
    "idx_audit_logs_created_at",
    "idx_service_registry_category",
    "idx_service_registry_status",
    "idx_service_registry_verified",
    "idx_service_installations_space",
    "idx_service_installations_service",
    "idx_service_installations_status",
    "idx_infrastructure_instances_space",
    "idx_infrastructure_instances_type",
    "idx_infrastructure_instances_status",
    "idx_instance_services_instance",
    "idx_instance_services_plugin",
    "idx_instance_services_status",
    "idx_service_management_assignments_service",
    "idx_service_management_assignments_plugin",
}
VIEWS = {"latest_benchmarks_view", "package_maintainers_view"}
OURS = """
    SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I')
      AND c.relname NOT LIKE 'alembic_version%'
"""


@pytest.fixture
def engine(empty_database_url):
    engine = create_engine(to_sqlalchemy_url(empty_database_url))
    yield engine
    engine.dispose()


@pytest.fixture
def migrated(empty_database_url, engine):
    migrate.upgrade(empty_database_url)
    return engine


@pytest.fixture
def timescaledb_required(monkeypatch):
    monkeypatch.setenv("AGENT_TIMESERIES_BACKEND", "timescaledb")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def relations(engine, kinds: str) -> set[str]:
    with engine.connect() as conn:
        return {name for name, kind in conn.execute(text(OURS)) if kind in kinds}


def backend_of(engine, table: str) -> str | None:
    with engine.connect() as conn:
        return timeseries.current_backend(conn, table)


def test_upgrade_creates_every_table_of_the_shared_schema(migrated):
    assert relations(migrated, "rp") >= TABLES


def test_upgrade_creates_the_index_names_the_seeds_give(migrated):
    assert relations(migrated, "iI") >= SEED_INDEXES


def test_constraints_the_seeds_name_have_the_seeds_names(migrated):
    sql = "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE conname = ANY(:n)"
    names = ["email_format", "key_length", "unique_slug"]
    with migrated.connect() as conn:
        found = set(conn.execute(text(sql), {"n": names}).all())
    assert found == {
        ("users", "email_format"),
        ("api_keys", "key_length"),
        ("service_registry", "unique_slug"),
    }


def test_upgrade_creates_both_views(migrated):
    assert relations(migrated, "v") == VIEWS


@pytest.mark.native_partitions
def test_time_series_are_partitioned_from_before_now_to_partitions_ahead(migrated):
    if backend_of(migrated, "benchmarks") != "native":
        pytest.skip("this server gave the time series to TimescaleDB")
    now = dt.datetime.now(dt.UTC)
    ahead = get_settings().partitions_ahead
    for series in timeseries.SERIES.values():
        with migrated.connect() as conn:
            parts = timeseries.partitions(conn, series.table)
        assert all(p.lower is not None and p.upper is not None for p in parts), "no DEFAULT"
        assert parts[0].lower < timeseries.period_start(now, series.interval)
        last = timeseries.shift(
            timeseries.period_start(now, series.interval), series.interval, ahead
        )
        assert parts[-1].lower == last
        assert all(a.upper == b.lower for a, b in itertools.pairwise(parts))


@pytest.mark.timescaledb
def test_time_series_are_hypertables_on_timescaledb(timescaledb_database_url, timescaledb_required):
    migrate.upgrade(timescaledb_database_url)
    engine = create_engine(to_sqlalchemy_url(timescaledb_database_url))
    try:
        for table in timeseries.SERIES:
            assert backend_of(engine, table) == "timescaledb"
        migrate.check(timescaledb_database_url)
        migrate.downgrade(timescaledb_database_url, "base")
        assert relations(engine, "rpv") == set()
    finally:
        engine.dispose()


def test_the_migrated_schema_matches_the_models(migrated, empty_database_url):
    migrate.check(empty_database_url)


def test_downgrade_to_base_leaves_no_table_view_or_sequence_behind(migrated, empty_database_url):
    migrate.downgrade(empty_database_url, "base")
    assert relations(migrated, "rpvmSiI") == set()


def test_upgrade_works_again_after_a_downgrade(migrated, empty_database_url):
    migrate.downgrade(empty_database_url, "base")
    migrate.upgrade(empty_database_url)
    assert relations(migrated, "rp") >= TABLES
    migrate.check(empty_database_url)


@pytest.mark.native_partitions
def test_a_required_timescaledb_that_is_missing_fails_clearly_and_creates_nothing(
    engine, empty_database_url, timescaledb_required
):
    with engine.connect() as conn:
        if timeseries.timescaledb_usable(conn):
            pytest.skip("TimescaleDB is usable on this server")
    with pytest.raises(timeseries.TimeseriesError, match="AGENT_TIMESERIES_BACKEND=timescaledb"):
        migrate.upgrade(empty_database_url)
    assert relations(engine, "rpv") == set()


@pytest.mark.native_partitions
def test_auto_falls_back_to_native_partitions_without_timescaledb(engine):
    with engine.connect() as conn:
        if timeseries.timescaledb_usable(conn):
            pytest.skip("TimescaleDB is usable on this server")
        assert timeseries.choose_backend(conn, "auto") == "native"
        assert timeseries.choose_backend(conn, "native") == "native"


@pytest.fixture
def unpreloaded_database_url(unpreloaded_timescaledb_url):
    """A database on a server where TimescaleDB is installed but not preloaded."""
    with new_database(unpreloaded_timescaledb_url, "agent_unpreloaded") as url:
        yield url


NOT_PRELOADED = "installed but shared_preload_libraries does not name timescaledb"


@pytest.mark.timescaledb
def test_auto_falls_back_to_native_partitions_where_timescaledb_is_not_preloaded(
    unpreloaded_database_url, caplog
):
    engine = create_engine(to_sqlalchemy_url(unpreloaded_database_url))
    try:
        with engine.connect() as conn:
            assert timeseries.timescaledb_available(conn)
        migrate.upgrade(unpreloaded_database_url)
        for table in timeseries.SERIES:
            assert backend_of(engine, table) == "native"
        assert relations(engine, "rp") >= TABLES
    finally:
        engine.dispose()
    [why] = [r.getMessage() for r in caplog.records if "TimescaleDB not usable" in r.getMessage()]
    assert NOT_PRELOADED in why


@pytest.mark.timescaledb
def test_a_required_timescaledb_that_is_not_preloaded_stops_with_the_reason(
    unpreloaded_database_url, timescaledb_required
):
    with pytest.raises(timeseries.TimeseriesError, match=NOT_PRELOADED):
        migrate.upgrade(unpreloaded_database_url)
    engine = create_engine(to_sqlalchemy_url(unpreloaded_database_url))
    try:
        assert relations(engine, "rpv") == set()
    finally:
        engine.dispose()


@pytest.mark.native_partitions
def test_partitions_are_created_once_for_old_rows_and_dropped_for_retention(migrated):
    if backend_of(migrated, "benchmarks") != "native":
        pytest.skip("this server gave the time series to TimescaleDB")
    series = timeseries.SERIES["benchmarks"]
    old = dt.datetime(2020, 2, 29, 23, 30, tzinfo=dt.UTC)
    with migrated.begin() as conn:
        created = timeseries.ensure_partitions_for(conn, series, [old, old])
        again = timeseries.ensure_partitions_for(conn, series, [old])
        dropped = timeseries.drop_older_than(conn, series, dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
        names = [p.name for p in timeseries.partitions(conn, series.table)]
    assert created == again == ["benchmarks_p20200201"]
    assert dropped == ["benchmarks_p20200201"]
    assert "benchmarks_p20200201" not in names


def test_partitions_refuse_a_table_not_partitioned_by_that_column(migrated):
    start = dt.datetime.now(dt.UTC)
    with migrated.connect() as conn, pytest.raises(timeseries.TimeseriesError, match="not range"):
        timeseries.create_partitions(conn, "users", "created_at", "day", start, 1)
