"""New, empty databases on a test server, dropped when the test is done with them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


def admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE and DROP DATABASE need that)."""
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def new_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on `server_url`, dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')
