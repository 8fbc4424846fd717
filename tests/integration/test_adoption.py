"""The agent deployed into a database the other apps already run on: adopt, work, leave."""

import datetime as dt
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from agent.cli import commands as cli
from agent.cli import migrate
from agent.core.credentials import generate_key
from agent.core.settings import get_settings
from models import session as db
from models.adoption import AdoptionError
from tests.support import seeds
from tests.support.databases import new_database

DATA = Path(__file__).parents[1] / "data"

# The shape and the rows of every relation in `public`: what "left as it was" means.
SHAPE = """
    SELECT c.relname, c.relkind,
        (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum)
         FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname)
         FROM pg_constraint WHERE conrelid = c.oid),
        (SELECT string_agg(pg_get_indexdef(indexrelid), ', ' ORDER BY indexrelid::regclass::text)
         FROM pg_index WHERE indrelid = c.oid),
        CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
    ORDER BY c.relname
"""


def plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def snapshot(url: str) -> dict[str, tuple]:
    """Every table and view of `public`: columns, constraints, indexes, definition, rows."""
    with psycopg.connect(plain(url)) as conn:
        shapes = {row[0]: row[1:] for row in conn.execute(SHAPE)}
        for name, shape in shapes.items():
            rows = conn.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                f' FROM "{name}" AS t'
            ).fetchone()[0]
            shapes[name] = (*shape, rows)
    return shapes


def sql(url: str, statement: str, *params) -> list[tuple]:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        cursor = conn.execute(statement, params or None)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def shared_database_url(postgres_server_url):
    """A database as the other apps left it: seeds 002 and 004 from their own SQL, verbatim,
    and the tables of 000, 001 and 003 as their documents describe them."""
    with new_database(postgres_server_url, "agent_shared") as url:
        with psycopg.connect(plain(url), autocommit=True) as conn:
            seeds.apply(conn, seeds.DESCRIBED, seeds.SEED_004, seeds.SEED_002)
        yield url


@pytest.fixture
def their_rows(shared_database_url):
    """Rows the other apps wrote, in the tables the agent adopts."""
    url = shared_database_url
    [(user_id,)] = sql(
        url,
        "INSERT INTO users (email, username, password_hash) VALUES"
        " ('ada@example.com', 'ada', 'x') RETURNING id",
    )
    sql(url, "INSERT INTO \"user\" (id, email) VALUES ('ba-1', 'ada@example.com')")
    sql(
        url,
        "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES"
        " (%s, repeat('a', 64), now() - interval '1 day'),"
        " (%s, repeat('b', 64), now() + interval '1 day')",
        user_id,
        user_id,
    )
    sql(
        url,
        "INSERT INTO session (id, token, user_id, expires_at) VALUES"
        " ('s-old', 't-old', 'ba-1', now() - interval '1 hour'),"
        " ('s-live', 't-live', 'ba-1', now() + interval '1 hour')",
    )
    sql(
        url,
        "INSERT INTO api_keys (user_id, key_hash, expires_at) VALUES"
        " (%s, repeat('c', 64), now() - interval '1 day')",
        user_id,
    )
    sql(
        url,
        "INSERT INTO packages (name, field, full_name)"
        " VALUES ('@graph/layer4', 'npm', 'graph/layer4')",
    )
    sql(url, "INSERT INTO spaces (name) VALUES ('ops')")
    sql(
        url,
        "INSERT INTO api_token (token_hash, user_id, expires_at) VALUES"
        " ('h-old', 'ba-1', now() - interval '1 day'), ('h-new', 'ba-1', now() + interval '1 day')",
    )
    return user_id


@pytest.fixture
def agent_on(shared_database_url, their_rows):
    """The agent migrated into the shared database and its settings pointed there."""
    migrate.upgrade(shared_database_url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENT_DATABASE_URL", shared_database_url)
        patch.setenv("AGENT_SECRET_KEY", generate_key())
        patch.setenv("AGENT_HEALTH_JITTER_S", "0")
        get_settings.cache_clear()
        db.dispose_engine()
        yield shared_database_url
        db.dispose_engine()
    get_settings.cache_clear()


ADOPTED = {
    "users", "roles", "user_roles", "api_keys", "sessions", "audit_logs", "spaces",
    "service_registry", "service_installations", "infrastructure_instances",
    "instance_services", "service_management_assignments", "session", "verification",
    "tenant", "mcp_server", "mcp_tool", "packages", "maintainers", "package_maintainers",
    "package_versions", "access_logs", "benchmarks", "api_token",
}  # fmt: skip


def test_migrate_adopts_the_apps_tables_untouched_and_creates_only_what_is_missing(
    shared_database_url, their_rows
):
    before = snapshot(shared_database_url)
    migrate.upgrade(shared_database_url)
    after = snapshot(shared_database_url)
    assert {name: after[name] for name in before} == before
    states = {t.table: t.state for t in migrate.status(shared_database_url).tables}
    assert {t for t, state in states.items() if state == "adopted"} == ADOPTED
    assert states["instance_health_history"] == states["agent_leases"] == "owned"
    assert not migrate.status(shared_database_url).drifted


def test_migrate_check_prints_each_tables_state_and_exits_zero_without_drift(agent_on, monkeypatch):
    result = CliRunner().invoke(cli.main, ["migrate", "--check"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines() if "  " in line)
    assert lines["users"].strip() == "adopted"
    assert lines["benchmark_ingests"].strip() == "owned"
    assert result.output.rstrip().endswith("drift: none")


def test_migrate_check_exits_non_zero_on_a_missing_table_and_names_it(agent_on):
    sql(agent_on, "DROP TABLE agent_known_hosts")
    result = CliRunner().invoke(cli.main, ["migrate", "--check"])
    assert result.exit_code == 1
    assert any(
        line.split() == ["agent_known_hosts", "missing"] for line in result.output.splitlines()
    )


INCOMPATIBLE = {
    "a missing column": (
        "ALTER TABLE instance_services DROP COLUMN last_seen",
        "instance_services: no column last_seen (timestamp with time zone);"
        " the agent reads or writes it",
    ),
    "a missing unique key": (
        "ALTER TABLE instance_services DROP CONSTRAINT instance_services_instance_id_name_type_key",
        "instance_services: no unique key on (instance_id, name, type);"
        " the agent's upserts (ON CONFLICT) need one",
    ),
    "text where a uuid is needed": (
        "ALTER TABLE audit_logs ALTER COLUMN entity_id TYPE text",
        "audit_logs.entity_id: text, the agent needs uuid",
    ),
    "a NOT NULL column the agent cannot fill": (
        "ALTER TABLE mcp_tool ADD COLUMN category text NOT NULL",
        "mcp_tool.category: NOT NULL without a default; the agent's inserts leave it empty",
    ),
}


@pytest.mark.parametrize("change", INCOMPATIBLE, ids=list(INCOMPATIBLE))
def test_an_incompatible_table_stops_migrate_before_any_change_and_is_named(
    shared_database_url, change
):
    statement, problem = INCOMPATIBLE[change]
    sql(shared_database_url, statement)
    before = snapshot(shared_database_url)
    with pytest.raises(AdoptionError) as raised:
        migrate.upgrade(shared_database_url)
    assert raised.value.problems == [problem]
    assert snapshot(shared_database_url) == before


def test_the_cli_lists_every_problem_one_line_each_and_exits_non_zero(
    shared_database_url, monkeypatch
):
    for statement, _ in INCOMPATIBLE.values():
        sql(shared_database_url, statement)
    monkeypatch.setenv("AGENT_DATABASE_URL", shared_database_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli.main, ["migrate"])
    get_settings.cache_clear()
    assert result.exit_code == 1
    for _, problem in INCOMPATIBLE.values():
        assert problem in result.output.splitlines()


def test_downgrade_after_adoption_leaves_every_adopted_table_and_its_rows(
    shared_database_url, their_rows
):
    before = snapshot(shared_database_url)
    migrate.upgrade(shared_database_url)
    migrate.downgrade(shared_database_url, "base")
    assert snapshot(shared_database_url) == before


def test_a_table_the_agent_created_is_kept_on_downgrade_once_others_wrote_to_it(
    empty_database_url,
):
    migrate.upgrade(empty_database_url)
    sql(empty_database_url, "INSERT INTO roles (name) VALUES ('admin')")
    migrate.downgrade(empty_database_url, "base")
    assert sql(empty_database_url, "SELECT name FROM roles") == [("admin",)]
    assert sql(empty_database_url, "SELECT to_regclass('users')") == [(None,)]


def test_indexes_the_agent_needs_on_adopted_tables_are_printed_or_created_concurrently(
    shared_database_url, their_rows
):
    sql(shared_database_url, "DROP INDEX idx_api_keys_expires_at")
    lines = migrate.upgrade(shared_database_url)
    # Seed 004 had one on api_keys (dropped here); the gateway never made one on verification.
    assert lines == [
        "api_keys: the agent needs an index on (expires_at); owner can run:"
        ' CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_api_keys_expires_at"'
        ' ON "api_keys" ("expires_at");',
        "verification: the agent needs an index on (expires_at); owner can run:"
        ' CREATE INDEX CONCURRENTLY IF NOT EXISTS "ix_verification_expires_at"'
        ' ON "verification" ("expires_at");',
    ]
    created = migrate.upgrade(shared_database_url, create_indexes=True)
    assert created == [
        "api_keys: created index idx_api_keys_expires_at on (expires_at) concurrently",
        "verification: created index ix_verification_expires_at on (expires_at) concurrently",
    ]
    assert migrate.upgrade(shared_database_url) == []
    migrate.downgrade(shared_database_url, "base")
    gone = (
        "SELECT to_regclass('idx_api_keys_expires_at'), to_regclass('ix_verification_expires_at')"
    )
    assert sql(shared_database_url, gone) == [(None, None)]


# --- every job of the agent against the adopted tables ---------------------------------


def test_health_checks_write_the_adopted_instances_and_the_agents_history(agent_on):
    from tasks import health

    port = make_url(agent_on).port or 5432
    [(instance_id,)] = sql(
        agent_on,
        "INSERT INTO infrastructure_instances (name, type, host, port, connection_type)"
        " VALUES ('db', 'vm', '127.0.0.1', %s, 'tcp') RETURNING id",
        port,
    )
    summary = health.check_now(get_settings(), instance_id, holder=str(uuid.uuid4()))
    assert summary["status"] == "online"
    assert sql(agent_on, "SELECT status FROM infrastructure_instances") == [("online",)]
    assert sql(agent_on, "SELECT count(*) FROM instance_health_history") == [(1,)]


def test_discovery_upserts_into_the_adopted_instance_services(
    agent_on, podman_socket, podman_containers
):
    from tasks import discovery

    config = json.dumps({"docker_host": f"unix://{podman_socket}"})
    [(instance_id,)] = sql(
        agent_on,
        "INSERT INTO infrastructure_instances (name, type, host, connection_type,"
        " connection_config) VALUES ('pod', 'docker_host', 'localhost', 'docker_api', %s)"
        " RETURNING id",
        config,
    )
    summary = discovery.discover_now(get_settings(), instance_id, holder=str(uuid.uuid4()))
    assert summary["status"] == "discovered", summary
    again = discovery.discover_now(get_settings(), instance_id, holder=str(uuid.uuid4()))
    assert again["new"] == 0
    [(count,)] = sql(agent_on, "SELECT count(*) FROM instance_services")
    assert count == summary["seen"] >= 7


def test_mcp_health_and_tools_land_in_the_gateways_tables(agent_on, mcp_servers):
    from tasks import plugins

    [(server_id,)] = sql(
        agent_on,
        "INSERT INTO mcp_server (name, endpoint_url) VALUES ('tools', %s) RETURNING id",
        mcp_servers.http_url,
    )
    summary = plugins.check_now(get_settings(), "mcp_server", server_id, str(uuid.uuid4()))
    assert summary["health_status"] == "healthy", summary
    [(tools,)] = sql(agent_on, "SELECT count(*) FROM mcp_tool WHERE status = 'active'")
    assert tools > 0


def test_benchmarks_go_into_the_registrys_plain_benchmarks_table(agent_on):
    from tasks import benchmarks

    with (DATA / "benchmarks" / "pytest_benchmark.json").open("rb") as stream:
        result = benchmarks.ingest_stream(get_settings(), stream, None, {}, "test")
    assert result["status"] == "done"
    [(count,)] = sql(agent_on, "SELECT count(*) FROM latest_benchmarks_view")
    assert count == result["accepted"] > 0


def test_housekeeping_prunes_expires_and_keeps_retention_on_adopted_tables(agent_on):
    from tasks import housekeeping

    settings = get_settings()
    pruned = housekeeping.run_prune(settings)
    assert pruned["deleted"] == {"sessions": 1, "session": 1, "verification": 0}
    assert housekeeping.run_expire_keys(settings)["deactivated"] == 2
    assert sql(agent_on, "SELECT is_active FROM api_keys") == [(False,)]
    tokens = sql(agent_on, "SELECT token_hash, is_active FROM api_token ORDER BY token_hash")
    assert tokens == [("h-new", True), ("h-old", False)]
    audited = "SELECT entity_type, count(*) FROM audit_logs GROUP BY 1 ORDER BY 1"
    assert sql(agent_on, audited) == [("api_keys", 1), ("api_token", 1), ("housekeeping.prune", 1)]
    kept = housekeeping.run_retention(settings, dt.datetime.now(dt.UTC))
    assert kept["dropped"]["benchmarks"] == []  # a plain table: its owner keeps it
    assert sql(agent_on, "SELECT count(*) FROM sessions") == [(1,)]
