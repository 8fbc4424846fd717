"""Rows for the scheduling tests: a clean slate, TCP instances and an installed service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete

from models import InfrastructureInstance, McpServer, ServiceInstallation, ServiceRegistry, Space
from models.agent import AgentLease
from models.session import session_scope


def nothing_else_due() -> None:
    """Remove every lease and every target a sweep or refresh could pick up."""
    with session_scope() as session:
        for model in (AgentLease, InfrastructureInstance, ServiceInstallation, McpServer):
            session.execute(delete(model))


def tcp_instance(port: int, status: str = "unknown") -> uuid.UUID:
    """A committed TCP instance on a loopback port."""
    with session_scope() as session:
        row = InfrastructureInstance(
            name=f"sched-{uuid.uuid4().hex[:6]}",
            type="vm",
            host="127.0.0.1",
            port=port,
            connection_type="tcp",
            connection_config={},
            status=status,
        )
        session.add(row)
        session.flush()
        return row.id


@contextmanager
def installed_service(base_url: str) -> Iterator[uuid.UUID]:
    """An approved service at `base_url` installed in a new space; removed on the way out."""
    with session_scope() as session:
        space = Space(name=f"space-{uuid.uuid4().hex[:6]}")
        service = ServiceRegistry(
            name="Scheduled service",
            slug=f"svc-{uuid.uuid4().hex[:8]}",
            version="1.0",
            provider="tests",
            status="approved",
            api_base_url=base_url,
            api_auth_type="none",
            api_auth_config={},
            capabilities={},
        )
        session.add_all([space, service])
        session.flush()
        row = ServiceInstallation(service_id=service.id, space_id=space.id, status="active")
        session.add(row)
        session.flush()
        ids = row.id, service.id, space.id
    try:
        yield ids[0]
    finally:
        with session_scope() as session:
            session.execute(delete(ServiceRegistry).where(ServiceRegistry.id == ids[1]))
            session.execute(delete(Space).where(Space.id == ids[2]))
