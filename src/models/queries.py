"""Reads the jobs make, each in the caller's short transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, text
from sqlalchemy.orm import Session

from models.agent import INSTANCE_LEASE, AgentKnownHost, AgentLease
from models.benchmarks import BenchmarkAlert
from models.infrastructure import InfrastructureInstance, InstanceHealthHistory, InstanceService
from models.marketplace import ServiceInstallation, ServiceRegistry
from models.mcp import McpServer
from models.plugins import INSTALLATION, MCP_SERVER, PLUGIN_LEASE, AgentInstallationHealth

LIVE = InfrastructureInstance.deleted_at.is_(None)

# A target is due once its last check is older than this share of its interval. Sweeps run
# once per interval, and each check is dated a little after the sweep that sent it (queue,
# jitter): were the bar the whole interval, a sweep running a second early would pass over
# every target the last one sent, and each would be checked every other interval.
DUE_AFTER_SHARE = 0.5

# Statement start on the database's clock: every check committed before a statement starts
# is dated before it, and no worker's clock enters.
DB_NOW = func.statement_timestamp()


def database_time(session: Session | Connection) -> dt.datetime:
    """The database's clock, now (read in the caller's transaction)."""
    return session.execute(select(func.clock_timestamp())).scalar_one()


def due(last_check: Any, interval_s: float) -> Any:
    """Whether a target is due: never checked, or checked over half an interval ago.

    A check dated in the future (by a worker whose clock ran ahead) is due as well: waiting
    for that date would stop the target's checks for as long as the clock was off.
    """
    bar = dt.timedelta(seconds=interval_s * DUE_AFTER_SHARE)
    return or_(last_check.is_(None), last_check < DB_NOW - bar, last_check > DB_NOW)


def due_instances(session: Session, interval_s: float, limit: int) -> Sequence[Row]:
    """Instances not deleted, due (see `due`), and not under a live lease.

    Rows of (id, connection_type, tags), the longest-unchecked first.
    """
    instance = InfrastructureInstance
    leased = select(AgentLease.name).where(
        AgentLease.name == INSTANCE_LEASE + instance.id.cast(AgentLease.name.type),
        AgentLease.expires_at > DB_NOW,
    )
    query = (
        select(instance.id, instance.connection_type, instance.tags)
        .where(and_(LIVE, due(instance.last_health_check, interval_s), ~leased.exists()))
        .order_by(instance.last_health_check.asc().nulls_first())
        .limit(limit)
    )
    return session.execute(query).all()


def instances(session: Session, ids: Sequence[uuid.UUID]) -> Sequence[InfrastructureInstance]:
    """The live instances among `ids`."""
    query = select(InfrastructureInstance).where(InfrastructureInstance.id.in_(ids), LIVE)
    return session.scalars(query).all()


def known_host_keys(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The SSH host key line the agent trusts for each of `ids` that has one."""
    query = select(AgentKnownHost.instance_id, AgentKnownHost.keyline).where(
        AgentKnownHost.instance_id.in_(ids)
    )
    return {instance_id: keyline for instance_id, keyline in session.execute(query)}


# --- instances, as `infra-agent instances` shows them --------------------------------------

# Probe verdicts that count as up: reachable (a warning is up, and says what needs attention).
UP_STATUSES = ("ok", "warning")


def instance_overview(session: Session, since: dt.datetime) -> Sequence[Row]:
    """Live instances by name, each with its checks and up checks in the history since `since`."""
    history, instance = InstanceHealthHistory, InfrastructureInstance
    uptime = (
        select(
            history.instance_id,
            func.count().label("checks"),
            func.count().filter(history.status.in_(UP_STATUSES)).label("up"),
        )
        .where(history.time >= since)
        .group_by(history.instance_id)
        .subquery()
    )
    query = (
        select(instance, uptime.c.checks, uptime.c.up)
        .outerjoin(uptime, uptime.c.instance_id == instance.id)
        .where(LIVE)
        .order_by(instance.name, instance.id)
    )
    return session.execute(query).all()


def instances_named(
    session: Session, ref: str, live_only: bool = True
) -> Sequence[InfrastructureInstance]:
    """The instances whose id is `ref` (a UUID), or else whose name is `ref`."""
    instance = InfrastructureInstance
    try:
        match = instance.id == uuid.UUID(ref)
    except ValueError:
        match = instance.name == ref
    query = select(instance).where(match).order_by(instance.created_at, instance.id)
    return session.scalars(query.where(LIVE) if live_only else query).all()


def recent_checks(
    session: Session, instance_id: uuid.UUID, limit: int
) -> Sequence[InstanceHealthHistory]:
    """The newest `limit` history rows of an instance, newest first."""
    history = InstanceHealthHistory
    query = (
        select(history)
        .where(history.instance_id == instance_id)
        .order_by(history.time.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def has_live_instances(session: Session) -> bool:
    """Whether any instance is there to check."""
    return bool(session.scalar(select(select(InfrastructureInstance.id).where(LIVE).exists())))


# --- discovery ---------------------------------------------------------------------------


def discovery_candidates(
    session: Session,
    connection_types: Sequence[str],
    lease_prefix: str,
    limit: int,
) -> Sequence[Row]:
    """Live instances discovery can read and that no discovery holds a live lease on.

    Rows of (id, connection_type, tags), in a stable order.
    """
    instance = InfrastructureInstance
    leased = select(AgentLease.name).where(
        AgentLease.name == lease_prefix + instance.id.cast(AgentLease.name.type),
        AgentLease.expires_at > DB_NOW,
    )
    query = (
        select(instance.id, instance.connection_type, instance.tags)
        .where(LIVE, instance.connection_type.in_(connection_types), ~leased.exists())
        .order_by(instance.id)
        .limit(limit)
    )
    return session.execute(query).all()


def managing_plugins(session: Session) -> Sequence[Row]:
    """(id, slug, capabilities) of approved, not deleted plugins that declare what they manage."""
    plugin = ServiceRegistry
    query = select(plugin.id, plugin.slug, plugin.capabilities).where(
        plugin.status == "approved",
        plugin.deleted_at.is_(None),
        plugin.capabilities.has_key("manages"),
    )
    return session.execute(query).all()


def instance_services(session: Session, instance_id: uuid.UUID) -> Sequence[Row]:
    """The seed's "services on instance" query, newest first, with the managing plugin's slug."""
    query = (
        select(InstanceService, ServiceRegistry.slug.label("plugin_slug"))
        .outerjoin(ServiceRegistry, ServiceRegistry.id == InstanceService.management_plugin_id)
        .where(InstanceService.instance_id == instance_id)
        .order_by(InstanceService.discovered_at.desc(), InstanceService.name)
    )
    return session.execute(query).all()


# For each series touched by an ingest (the arrays, position by position): its newest new
# point, and the values and units of up to :window points before it, newest first.
_SERIES_HISTORY = text(
    """
    SELECT k.package_name, k.benchmark, k.metric, k.branch, k.testbed,
           n."timestamp", n.value, n.unit, n.run_id, n.package_id, h."values", h.units
    FROM unnest(CAST(:packages AS text[]), CAST(:benchmarks AS text[]),
                CAST(:metrics AS text[]), CAST(:branches AS text[]),
                CAST(:testbeds AS text[]), CAST(:latest AS timestamptz[]))
        AS k(package_name, benchmark, metric, branch, testbed, latest)
    CROSS JOIN LATERAL (
        SELECT b."timestamp", b.value, b.unit, b.run_id, b.package_id FROM benchmarks AS b
        WHERE b.package_name = k.package_name AND b.benchmark = k.benchmark
          AND b.metric = k.metric AND b.testbed = k.testbed
          AND b.branch IS NOT DISTINCT FROM k.branch AND b."timestamp" = k.latest
        ORDER BY b.run_id DESC LIMIT 1
    ) AS n
    CROSS JOIN LATERAL (
        SELECT array_agg(w.value ORDER BY w."timestamp" DESC) AS "values",
               array_agg(w.unit ORDER BY w."timestamp" DESC) AS units
        FROM (
            SELECT b.value, b.unit, b."timestamp" FROM benchmarks AS b
            WHERE b.package_name = k.package_name AND b.benchmark = k.benchmark
              AND b.metric = k.metric AND b.testbed = k.testbed
              AND b.branch IS NOT DISTINCT FROM k.branch AND b."timestamp" < k.latest
            ORDER BY b."timestamp" DESC LIMIT :window
        ) AS w
    ) AS h
    """
)


def series_histories(
    session: Session, touched: Sequence[tuple[tuple, dt.datetime]], window: int
) -> Sequence[Row]:
    """The newest new point and the history before it, for each (series key, latest) given.

    A series key is (package_name, benchmark, metric, branch, testbed).
    """
    if not touched:
        return []
    columns = list(zip(*(key for key, _ in touched), strict=True))
    params = {
        "packages": list(columns[0]),
        "benchmarks": list(columns[1]),
        "metrics": list(columns[2]),
        "branches": list(columns[3]),
        "testbeds": list(columns[4]),
        "latest": [latest for _, latest in touched],
        "window": window,
    }
    return session.execute(_SERIES_HISTORY, params).all()


def open_alerts(
    session: Session, limit: int = 100, package: str | None = None
) -> Sequence[BenchmarkAlert]:
    """Open regression alerts, newest first, of one package (by name) or of all."""
    query = select(BenchmarkAlert).where(BenchmarkAlert.status == "open")
    if package:
        query = query.where(BenchmarkAlert.package_name == package)
    query = query.order_by(BenchmarkAlert.created_at.desc(), BenchmarkAlert.id).limit(limit)
    return session.scalars(query).all()


# --- plugin health (issue 5) ---------------------------------------------------------------

CHECKED_REGISTRY_STATUSES = ("approved", "deprecated")
CHECKED_MCP_STATUSES = ("active", "error")


def _not_leased(plugin_type: str, plugin_id: Any) -> Any:
    name = PLUGIN_LEASE + plugin_type + "." + plugin_id.cast(AgentLease.name.type)
    return (
        ~select(AgentLease.name)
        .where(AgentLease.name == name, AgentLease.expires_at > DB_NOW)
        .exists()
    )


def due_installations(session: Session, interval_s: float, limit: int) -> Sequence[uuid.UUID]:
    """Installations to check: live, not switched off, of an approved or deprecated service.

    Due (see `due`) and not under a live lease; the longest-unchecked first.
    """
    si, sr = ServiceInstallation, ServiceRegistry
    query = (
        select(si.id)
        .join(sr, sr.id == si.service_id)
        .where(
            si.deleted_at.is_(None),
            sr.deleted_at.is_(None),
            sr.status.in_(CHECKED_REGISTRY_STATUSES),
            or_(si.status.is_(None), si.status != "inactive"),
            due(si.last_health_check, interval_s),
            _not_leased(INSTALLATION, si.id),
        )
        .order_by(si.last_health_check.asc().nulls_first())
        .limit(limit)
    )
    return session.scalars(query).all()


def installations_to_check(
    session: Session, ids: Sequence[uuid.UUID]
) -> Sequence[Row[ServiceInstallation, ServiceRegistry, AgentInstallationHealth | None]]:
    """The live installations among `ids`, with their registry entry and damping state."""
    si, sr, health = ServiceInstallation, ServiceRegistry, AgentInstallationHealth
    query = (
        select(si, sr, health)
        .join(sr, sr.id == si.service_id)
        .outerjoin(health, health.installation_id == si.id)
        .where(si.id.in_(ids), si.deleted_at.is_(None), sr.deleted_at.is_(None))
    )
    return session.execute(query).all()


def due_mcp_servers(session: Session, interval_s: float, limit: int) -> Sequence[uuid.UUID]:
    """MCP servers to check (active or in error, any tenant or none), longest-unchecked first."""
    query = (
        select(McpServer.id)
        .where(
            McpServer.status.in_(CHECKED_MCP_STATUSES),
            due(McpServer.last_health_check, interval_s),
            _not_leased(MCP_SERVER, McpServer.id),
        )
        .order_by(McpServer.last_health_check.asc().nulls_first())
        .limit(limit)
    )
    return session.scalars(query).all()


def mcp_servers(session: Session, ids: Sequence[uuid.UUID]) -> Sequence[McpServer]:
    """The MCP servers among `ids`."""
    return session.scalars(select(McpServer).where(McpServer.id.in_(ids))).all()


def installed_plugins_for_space(
    session: Session, space_id: uuid.UUID, active_only: bool = False
) -> Sequence[Row]:
    """The seed's "installed plugins for space", with whether each is healthy, since when, why not.

    The seed selects `status = 'active'` only (`active_only=True`); by default installations
    in `error` are listed too, since they are the ones whose reason matters.
    """
    si, sr, health = ServiceInstallation, ServiceRegistry, AgentInstallationHealth
    query = (
        select(
            si.id.label("installation_id"),
            sr.id.label("service_id"),
            sr.name,
            sr.slug,
            sr.status.label("registry_status"),
            si.status,
            si.health_status,
            si.last_health_check,
            health.since,
            health.reason,
        )
        .join(sr, sr.id == si.service_id)
        .outerjoin(health, health.installation_id == si.id)
        .where(si.space_id == space_id, si.deleted_at.is_(None))
        .order_by(sr.name, si.id)
    )
    if active_only:
        query = query.where(si.status == "active")
    return session.execute(query).all()


_PLUGIN_HEALTH = text(
    """
    SELECT 'installation' AS kind, si.id, sr.name, 'space ' || si.space_id AS scope,
           si.status, si.health_status, h.since, si.last_health_check, h.reason,
           sr.status = 'deprecated' AS deprecated, NULL::bigint AS tools
    FROM service_installations si
    JOIN service_registry sr ON sr.id = si.service_id
    LEFT JOIN agent_installation_health h ON h.installation_id = si.id
    WHERE si.deleted_at IS NULL AND sr.deleted_at IS NULL
      AND (CAST(:space_id AS uuid) IS NULL OR si.space_id = CAST(:space_id AS uuid))
      AND CAST(:tenant_id AS uuid) IS NULL
    UNION ALL
    SELECT 'mcp_server', s.id, s.name,
           COALESCE('tenant ' || s.tenant_id, 'global') || ' (' || s.transport_type || ')',
           s.status, s.health_status, CAST(s.health_details ->> 'since' AS timestamptz),
           s.last_health_check, s.health_details ->> 'reason', false,
           (SELECT count(*) FROM mcp_tool t WHERE t.server_id = s.id AND t.status = 'active')
    FROM mcp_server s
    WHERE CAST(:space_id AS uuid) IS NULL
      AND (CAST(:tenant_id AS uuid) IS NULL OR s.tenant_id = CAST(:tenant_id AS uuid))
    ORDER BY kind, name, id
    """
)


def plugin_health(
    session: Session, space_id: uuid.UUID | None = None, tenant_id: uuid.UUID | None = None
) -> Sequence[Row]:
    """One row per installation and MCP server, for `infra-agent plugins`.

    A space narrows to that space's installations, a tenant to that tenant's MCP servers.
    """
    params = {"space_id": space_id, "tenant_id": tenant_id}
    return session.execute(_PLUGIN_HEALTH, params).all()


def lease_expiries(session: Session, names: Sequence[str]) -> dict[str, dt.datetime]:
    """When each of the leases among `names` that exist expires (or expired)."""
    query = select(AgentLease.name, AgentLease.expires_at).where(AgentLease.name.in_(names))
    return {name: expires_at for name, expires_at in session.execute(query)}
