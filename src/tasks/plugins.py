"""Plugin health: the refresh, its batches, and checks of one installation or MCP server.

The refresh selects due installations and MCP servers, leases them to batch tasks on the
`plugins` queue; a batch checks its plugins concurrently (installations on the worker's one
pooled HTTP client, MCP servers each in their own session) and writes all results in one
transaction. Leases keep refreshes from overlapping and a plugin from being checked twice at
once, exactly as for instance health.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from celery import shared_task
from sqlalchemy.orm import Session

from agent.api import contract
from agent.core.clock import Clock
from agent.core.damping import Policy
from agent.core.settings import Settings, get_settings
from agent.plugins.client import ClientLimits, shared_pool
from agent.plugins.installation import (
    InstallationProbe,
    InstallationSpec,
    check_installations,
    health_path_of,
)
from agent.plugins.mcp import McpProbe, McpSpec, check_mcp_servers
from agent.plugins.outcome import PluginChecked, Prior
from agent.plugins.tools import diff_tools
from models import queries, store
from models.mcp import McpServer
from models.plugins import INSTALLATION, MCP_SERVER, AgentInstallationHealth, plugin_lease
from models.session import session_scope
from models.store import plugins as plugin_store
from tasks import sweep as sweep_core
from tasks.common import (
    RETRY_ON_INFRASTRUCTURE,
    Progress,
    TaskInputError,
    as_uuid,
    as_uuids,
    batch_deadline_s,
    progress_of,
    quietly,
    resolver_for,
)
from tasks.sweep import Batch, Due, Sweep

REFRESH_LEASE = "plugins.refresh"
PluginType = Literal["installation", "mcp_server"]
PLUGIN_TYPES: tuple[PluginType, ...] = (INSTALLATION, MCP_SERVER)


@shared_task(name="agent.plugins.refresh", bind=True, **RETRY_ON_INFRASTRUCTURE)
def refresh(self: Any) -> contract.RefreshDispatched | contract.Skipped:
    """Send every due installation and MCP server to a batch; how many, and the batch ids."""
    holder = self.request.id or str(uuid.uuid4())
    return run_refresh(get_settings(), holder, progress_of(self))


@shared_task(name="agent.plugins.check_batch", bind=True, **RETRY_ON_INFRASTRUCTURE)
def check_batch(self: Any, plugin_type: str, ids: list[str]) -> contract.PluginBatch:
    """Check a batch of one plugin type concurrently and write the results together."""
    kind = as_plugin_type(plugin_type)
    return run_batch(get_settings(), kind, as_uuids(ids, "ids"), holder=self.request.id)


@shared_task(name="agent.plugins.check_installation", bind=True, **RETRY_ON_INFRASTRUCTURE)
def check_installation(
    self: Any, installation_id: str
) -> contract.InstallationSummary | contract.PluginNotChecked:
    """Check one installed service now; a JSON summary without secrets."""
    target = as_uuid(installation_id, "installation_id")
    return check_now(get_settings(), INSTALLATION, target, holder=self.request.id)


@shared_task(name="agent.plugins.check_mcp_server", bind=True, **RETRY_ON_INFRASTRUCTURE)
def check_mcp_server(
    self: Any, server_id: str
) -> contract.McpServerSummary | contract.PluginNotChecked:
    """Check one MCP server now and refresh its tools; a JSON summary."""
    target = as_uuid(server_id, "server_id")
    return check_now(get_settings(), MCP_SERVER, target, holder=self.request.id)


def as_plugin_type(value: object) -> PluginType:
    """`installation` or `mcp_server`, or a TaskInputError."""
    if value not in PLUGIN_TYPES:
        raise TaskInputError(f"plugin_type must be one of {', '.join(PLUGIN_TYPES)}")
    return value  # type: ignore[return-value]


def run_refresh(settings: Settings, holder: str, progress: Progress = quietly) -> dict[str, Any]:
    """Lease due plugins to batches (one transaction), then send the batches."""
    return sweep_core.run_sweep(plugins_refresh(settings), holder, progress)


def plan_refresh(settings: Settings, holder: str) -> list[Batch] | None:
    """The due plugins leased to batches, or None when another refresh ran just before."""
    return sweep_core.plan(plugins_refresh(settings), holder)


def plugins_refresh(settings: Settings) -> Sweep:
    """The plugin refresh: due installations and MCP servers, batched by plugin type."""
    interval_s = settings.plugins_interval_s
    return Sweep(
        lease=REFRESH_LEASE,
        lease_s=interval_s * queries.DUE_AFTER_SHARE,
        skipped="another refresh ran within half an interval",
        due=lambda session: due_plugins(session, settings),
        lease_of=plugin_lease,
        batch_size=settings.plugins_batch_size,
        batch_lease_s=interval_s + settings.task_time_limit_s,
        task=check_batch,
        expires_s=interval_s,
        label="argument",
        summary=sweep_core.by_type,
    )


def due_plugins(session: Session, settings: Settings) -> list[Due]:
    """The installations, then the MCP servers, due a check (at most so many of each)."""
    interval, limit = settings.plugins_interval_s, settings.plugins_max_per_refresh
    due = {
        INSTALLATION: queries.due_installations(session, interval, limit),
        MCP_SERVER: queries.due_mcp_servers(session, interval, limit),
    }
    return [(kind, kind, plugin_id) for kind, ids in due.items() for plugin_id in ids]


def run_batch(
    settings: Settings, kind: PluginType, ids: Sequence[uuid.UUID], holder: str
) -> dict[str, Any]:
    """Check the plugins of `ids` this holder can lease, and write them in one go."""
    return sweep_core.run_batch(PluginJob(settings, kind), ids, holder, quietly)


def check_now(
    settings: Settings, kind: PluginType, target: uuid.UUID, holder: str
) -> dict[str, Any]:
    """Check one plugin right away, unless it cannot be or a check of it is running."""
    return sweep_core.run_now(PluginJob(settings, kind), target, holder)


@dataclass(frozen=True)
class Taken:
    """What a batch's checks need: the specs and the database's clock."""

    specs: list[Any]
    clock: Clock


class PluginJob:
    """A batch of one plugin type's checks, written together (with MCP servers' tool lists)."""

    def __init__(self, settings: Settings, kind: PluginType) -> None:
        self.settings, self.kind = settings, kind
        self.lease_s = settings.task_time_limit_s + 60
        self.lease_of = partial(plugin_lease, kind)

    def load(self, session: Session, ids: Sequence[uuid.UUID]) -> Taken:
        """The specs of `ids`, and the database's clock, read once."""
        clock = Clock.reading(queries.database_time(session))
        return Taken(specs_of(session, self.kind, ids, self.settings) if ids else [], clock)

    def refusal(self, taken: Taken) -> str | None:
        """Why a check on demand cannot go ahead: no such plugin, or one that cannot be checked."""
        if not taken.specs:
            return "no such plugin, deleted, or a check of it is running"
        spec = taken.specs[0]
        return spec.refusal() if isinstance(spec, InstallationSpec) else None

    def run(self, taken: Taken, _progress: Progress | None) -> list[PluginChecked]:
        """Run the checks (no database, no transaction open), dated by the database's clock."""
        return check(self.settings, self.kind, taken.specs, taken.clock)

    def write(
        self, _taken: Taken, checked: list[PluginChecked], holder: str, ids: Sequence[uuid.UUID]
    ) -> dict[str, dict[str, int]]:
        """Results and the leases given back: one transaction. Tool changes by server."""
        with session_scope() as session:
            return write(session, self.kind, checked, holder, ids)

    def tally(self, checked: list[PluginChecked], tools: dict[str, Any]) -> dict[str, Any]:
        """Counts for the task result, and the MCP servers' tool changes."""
        return {**tally(checked), **({"tools": tools} if tools else {})}

    def summary(self, checked: list[PluginChecked], tools: dict[str, Any]) -> dict[str, Any]:
        """The one check's JSON summary, with its tool changes."""
        summary = checked[0].summary()
        return {**summary, "tools": tools[checked[0].plugin_id]} if tools else summary

    def not_done(self, target: uuid.UUID, reason: str) -> dict[str, Any]:
        """The result of a check on demand that could not go ahead."""
        kind, status = self.kind, "not_checked"
        return {"plugin_type": kind, "id": str(target), "status": status, "message": reason}


def specs_of(
    session: Session, kind: PluginType, ids: Sequence[uuid.UUID], settings: Settings
) -> list[Any]:
    """What the checks of `ids` need, with the damping policy from settings."""
    policy = Policy(
        settings.plugins_failures_before_error, settings.plugins_successes_before_active
    )
    if kind == INSTALLATION:
        return [
            installation_spec(*row, policy) for row in queries.installations_to_check(session, ids)
        ]
    return [mcp_spec(row, policy) for row in queries.mcp_servers(session, ids)]


def installation_spec(
    installation: Any, service: Any, health: AgentInstallationHealth | None, policy: Policy
) -> InstallationSpec:
    """The plain values a check needs from an installation, its service and its state."""
    damping = health.damping if health else {}
    return InstallationSpec(
        id=str(installation.id),
        name=service.slug or service.name,
        space_id=str(installation.space_id) if installation.space_id else None,
        api_base_url=service.api_base_url,
        health_path=health_path_of(service.capabilities),
        auth_type=service.api_auth_type,
        auth_config=dict(service.api_auth_config or {}),
        credentials=dict(installation.credentials or {}),
        registry_status=service.status,
        prior=Prior(
            installation.status or "active",
            installation.health_status,
            health.since if health else None,
            _count(damping.get("consecutive_failures")),
            _count(damping.get("consecutive_successes")),
        ),
        policy=policy,
    )


def mcp_spec(server: McpServer, policy: Policy) -> McpSpec:
    """The plain values a check needs from an MCP server row."""
    details = server.health_details or {}
    return McpSpec(
        id=str(server.id),
        name=server.name,
        endpoint_url=server.endpoint_url,
        transport_type=server.transport_type,
        tenant_id=str(server.tenant_id) if server.tenant_id else None,
        prior=Prior(
            server.status,
            server.health_status,
            _since(details.get("since")),
            _count(server.consecutive_failures),
            _count(details.get("consecutive_successes")),
        ),
        policy=policy,
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _since(value: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def check(
    settings: Settings, kind: PluginType, specs: Sequence[Any], clock: Clock
) -> list[PluginChecked]:
    """Run the checks of one batch (no database, no transaction open), dated by `clock`."""
    deadline_s = batch_deadline_s(settings.task_soft_time_limit_s)
    if kind == MCP_SERVER:
        return check_mcp_servers(
            specs,
            lambda spec: McpProbe(spec, settings.plugins_timeout_s),
            settings.plugins_concurrency,
            clock,
            deadline_s,
        )
    pool, resolver = shared_pool(limits_of(settings)), resolver_for(settings)
    checkable = [spec for spec in specs if spec.refusal() is None]
    return check_installations(
        checkable,
        lambda spec: InstallationProbe(spec, pool, resolver),
        settings.plugins_concurrency,
        clock,
        deadline_s,
    )


def limits_of(settings: Settings) -> ClientLimits:
    """The shared HTTP client's limits from settings."""
    return ClientLimits(
        timeout_s=settings.plugins_timeout_s,
        max_connections=settings.plugins_max_connections,
        connections_per_host=settings.plugins_connections_per_host,
    )


def write(
    session: Session,
    kind: PluginType,
    checked: Sequence[PluginChecked],
    holder: str,
    ids: Sequence[uuid.UUID],
) -> dict[str, dict[str, int]]:
    """Results and the leases given back: one transaction. Returns tool changes by server."""
    tools = {}
    if kind == INSTALLATION:
        plugin_store.record_installations(session, checked)
    else:
        tools = sync_tools(session, plugin_store.record_mcp_servers(session, checked))
    store.release_leases(session, [plugin_lease(kind, i) for i in ids], holder)
    return tools


def sync_tools(session: Session, kept: Sequence[PluginChecked]) -> dict[str, dict[str, int]]:
    """The written servers' tool rows made to match their listings; the changes by server."""
    listed = {uuid.UUID(c.plugin_id): c.details["tools"] for c in kept if "tools" in c.details}
    if not listed:
        return {}
    recorded = plugin_store.recorded_tools(session, list(listed))
    changes = {sid: diff_tools(recorded.get(sid, {}), tools) for sid, tools in listed.items()}
    plugin_store.write_tools(session, changes)
    return {str(server_id): change.counts() for server_id, change in changes.items()}


def tally(checked: Sequence[PluginChecked]) -> dict[str, Any]:
    """Counts for the task result: checked, by health, and how many changed status."""
    return {
        "checked": len(checked),
        "by_health": dict(Counter(c.health.value for c in checked)),
        "changed": sum(c.changed for c in checked),
    }
