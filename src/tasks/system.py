"""Diagnostic tasks: is a worker consuming, and can it reach the database."""

from __future__ import annotations

import socket
import time

from celery import shared_task

from models.session import ping_database


# No STARTED state: the answer follows within milliseconds, and writing the state would cost
# a result-backend write per ping for a state no caller gets to see.
@shared_task(name="agent.system.ping", acks_late=False, ignore_result=False, track_started=False)
def ping() -> dict[str, object]:
    """Answer with the worker's host name and the database's round-trip time."""
    started = time.perf_counter()
    ping_database()
    return {
        "pong": True,
        "hostname": socket.gethostname(),
        "database_ms": round((time.perf_counter() - started) * 1000, 3),
    }
