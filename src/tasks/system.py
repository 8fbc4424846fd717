"""Diagnostic tasks: is a worker consuming, and can it reach the database."""

from __future__ import annotations

import socket
import time

from celery import shared_task
from sqlalchemy import text

from models.session import session_scope


@shared_task(name="agent.system.ping", acks_late=False, ignore_result=False)
def ping() -> dict[str, object]:
    """Answer with the worker's host name and the database's round-trip time."""
    started = time.perf_counter()
    with session_scope() as session:
        session.execute(text("SELECT 1"))
    return {
        "pong": True,
        "hostname": socket.gethostname(),
        "database_ms": round((time.perf_counter() - started) * 1000, 3),
    }
