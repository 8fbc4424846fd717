"""Fixtures of the fault suite: a database, a Redis and listeners that each test owns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import migrate
from tests.support.databases import new_database
from tests.support.servers import RedisServer
from tests.support.stack import Database, Listener


@pytest.fixture
def fault_db(postgres_server_url: str) -> Iterator[Database]:
    """A new, migrated database no other test touches (sweeps select every instance in it)."""
    with new_database(postgres_server_url, "agent_faults") as url:
        migrate.upgrade(url)
        yield Database(url)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server without persistence, the test's own to crash and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.crash()


@pytest.fixture
def silent_listener() -> Iterator[Listener]:
    """A TCP port that accepts and then says nothing: a banner check waits out its timeout."""
    listener = Listener(hold=True)
    yield listener
    listener.close()
