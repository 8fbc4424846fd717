"""One engine per process and the session scope: the only place that commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from agent.core.settings import get_settings

_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None


def get_engine() -> Engine:
    """The process's engine, created on first use from the settings."""
    global _engine, _factory
    if _engine is None:
        _engine = create_engine(
            get_settings().sqlalchemy_url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"application_name": "infra-agent", "connect_timeout": 10},
        )
        _factory = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def dispose_engine(close: bool = True) -> None:
    """Forget the engine; after a fork pass `close=False` so the parent's sockets stay open."""
    global _engine, _factory
    if _engine is not None:
        _engine.dispose(close=close)
    _engine, _factory = None, None


@contextmanager
def session_scope() -> Iterator[Session]:
    """One short transaction: commit on success, roll back on any error."""
    get_engine()
    assert _factory is not None
    with _factory.begin() as session:
        yield session


def ping_database() -> None:
    """One `SELECT 1` on a pooled connection, outside any transaction (no BEGIN, no COMMIT)."""
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("SELECT 1")


def driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under `session`'s transaction, for what only it offers (COPY)."""
    raw = session.connection().connection.driver_connection
    # A connection checked out for a transaction always has its driver's connection.
    assert raw is not None
    return raw
