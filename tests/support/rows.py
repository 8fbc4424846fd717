"""Rows a test creates: one factory per kind of row, committed so other transactions see them.

The fixtures in tests/fixtures/rows.py remove what they made; the scheduling tests start
from a clean slate instead (`nothing_else_due`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, select, text

from models import (
    InfrastructureInstance,
    InstanceService,
    McpServer,
    ServiceInstallation,
    ServiceRegistry,
    Space,
)
from models.agent import AgentLease
from models.session import session_scope


def unique_package_name(prefix: str = "@graph/layer4") -> str:
    """A package name no other test uses (the benchmark test files name `@graph/layer4`)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def committed(row: object) -> uuid.UUID:
    """Insert `row` in its own transaction; its id."""
    with session_scope() as session:
        session.add(row)
        session.flush()
        return row.id


def instance_row(connection_type: str, host="127.0.0.1", port=None, config=None, **columns):
    """An infrastructure instance of `connection_type`, named uniquely."""
    return InfrastructureInstance(
        name=columns.pop("name", f"test-{uuid.uuid4().hex[:6]}"),
        type="vm",
        host=host,
        port=port,
        connection_type=connection_type,
        connection_config=config or {},
        **columns,
    )


def service_row(base_url: str, auth_type="none", auth_config=None, **columns) -> ServiceRegistry:
    """A registered service (approved unless `status` says otherwise) at `base_url`."""
    defaults = {"name": "Test service", "status": "approved", "capabilities": {}}
    return ServiceRegistry(
        slug=f"svc-{uuid.uuid4().hex[:8]}",
        version="1.0",
        provider="tests",
        api_base_url=base_url,
        api_auth_type=auth_type,
        api_auth_config=auth_config or {},
        **{**defaults, **columns},
    )


def installed(space_id: uuid.UUID, service: ServiceRegistry, credentials=None, **columns):
    """Register `service` and install it in the space; the installation's id."""
    with session_scope() as session:
        session.add(service)
        session.flush()
        row = ServiceInstallation(
            service_id=service.id, space_id=space_id, credentials=credentials, **columns
        )
        session.add(row)
        session.flush()
        return row.id


def space_row() -> Space:
    """A space, named uniquely."""
    return Space(name=f"space-{uuid.uuid4().hex[:6]}")


def remove_space(space_id: uuid.UUID) -> None:
    """Remove a space with the services installed in it (installations go with them)."""
    with session_scope() as session:
        services = select(ServiceInstallation.service_id).where(
            ServiceInstallation.space_id == space_id
        )
        session.execute(delete(ServiceRegistry).where(ServiceRegistry.id.in_(services)))
        session.execute(delete(Space).where(Space.id == space_id))


def add_sessions(user_id: uuid.UUID, count: int, offset_s: float) -> list[str]:
    """`count` SmartHub sessions expiring `offset_s` from now; their token hashes."""
    statement = text(
        "INSERT INTO sessions (user_id, token_hash, expires_at)"
        " SELECT :uid, encode(sha256(gen_random_uuid()::text::bytea), 'hex'),"
        "   now() + make_interval(secs => :offset)"
        " FROM generate_series(1, :count) RETURNING token_hash"
    )
    with session_scope() as session:
        rows = session.execute(statement, {"uid": user_id, "count": count, "offset": offset_s})
        return [row[0] for row in rows]


def services_of(instance_id: uuid.UUID) -> dict[str, InstanceService]:
    """The services recorded for an instance, by name."""
    with session_scope() as session:
        found = session.scalars(
            select(InstanceService).where(InstanceService.instance_id == instance_id)
        ).all()
    return {row.name: row for row in found}


def nothing_else_due() -> None:
    """Remove every lease and every target a sweep or refresh could pick up."""
    with session_scope() as session:
        for model in (AgentLease, InfrastructureInstance, ServiceInstallation, McpServer):
            session.execute(delete(model))


def tcp_instance(port: int, status: str = "unknown") -> uuid.UUID:
    """A committed TCP instance on a loopback port."""
    return committed(
        instance_row("tcp", port=port, name=f"sched-{uuid.uuid4().hex[:6]}", status=status)
    )


@contextmanager
def installed_service(base_url: str) -> Iterator[uuid.UUID]:
    """An approved service at `base_url` installed in a new space; removed on the way out."""
    space_id = committed(space_row())
    try:
        yield installed(space_id, service_row(base_url, name="Scheduled service"), status="active")
    finally:
        remove_space(space_id)
