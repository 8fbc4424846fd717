"""Service discovery: the sweep, its batches, and discovery of one instance on demand.

The sweep leases every live instance discovery can read (`ssh`, `docker_api`,
`kubernetes`) to batch tasks and sends them to `discovery`, or `discovery.<zone>` for an
instance tagged `zone:<zone>`. A batch discovers its instances concurrently with no
transaction open, then reconciles each instance that answered in its own short
transaction (`models.store.discovery.reconcile`); one that did not answer is left as it
was. Leases keep sweeps from overlapping and an instance from being discovered twice at
once.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from celery import shared_task
from sqlalchemy.orm import Session

from agent.api import contract
from agent.connections.known_hosts import MemoryKnownHosts
from agent.core.concurrency import each
from agent.core.damping import Policy
from agent.core.results import ErrorClass
from agent.core.settings import Settings, get_settings
from agent.discovery import MODULES, Discoverer, Discovery, discoverer_for
from agent.discovery.matching import PluginRule, plugin_for, rules_from
from agent.health import InstanceSpec, instance_fields, zone_of
from models import queries, store
from models.session import session_scope
from models.store import discovery as discovery_store
from models.store import health as health_store
from tasks.common import (
    RETRY_ON_INFRASTRUCTURE,
    Batch,
    Progress,
    as_uuid,
    as_uuids,
    batch_deadline_s,
    counter,
    lease_chunks,
    progress_of,
    quietly,
    resolver_for,
    send_batches,
)
from tasks.instances import spec_of, ssh_entry, trusted_keys

log = logging.getLogger(__name__)

SWEEP_LEASE = "discovery.sweep"
INSTANCE_LEASE = "discovery.instance."
QUEUE = "discovery"

Discovered = tuple[InstanceSpec, Discovery]


@shared_task(name="agent.discovery.sweep", bind=True, **RETRY_ON_INFRASTRUCTURE)
def sweep(self: Any) -> contract.Dispatched | contract.Skipped:
    """Send every discoverable instance to a batch; how many, to which queues, the batch ids."""
    holder = self.request.id or str(uuid.uuid4())
    return run_sweep(get_settings(), holder, progress_of(self))


@shared_task(name="agent.discovery.discover_batch", bind=True, **RETRY_ON_INFRASTRUCTURE)
def discover_batch(self: Any, instance_ids: list[str]) -> contract.DiscoveryBatch:
    """Discover a batch of instances concurrently; reconcile each in its own transaction."""
    ids = as_uuids(instance_ids)
    return run_batch(get_settings(), ids, holder=self.request.id, progress=progress_of(self))


@shared_task(name="agent.discovery.discover_instance", bind=True, **RETRY_ON_INFRASTRUCTURE)
def discover_instance(
    self: Any, instance_id: str
) -> contract.DiscoverySummary | contract.NotDiscovered:
    """Discover one instance now; counts new, updated, missing and matched services."""
    return discover_now(get_settings(), as_uuid(instance_id), holder=self.request.id)


def instance_lease(instance_id: uuid.UUID | str) -> str:
    """The lease a discovery of one instance holds."""
    return f"{INSTANCE_LEASE}{instance_id}"


def queue_for(tags: Sequence[str]) -> str:
    """`discovery`, or `discovery.<zone>` for an instance tagged `zone:<zone>`."""
    zone = zone_of(tags)
    return f"{QUEUE}.{zone}" if zone else QUEUE


def run_sweep(settings: Settings, holder: str, progress: Progress = quietly) -> dict[str, Any]:
    """Lease the instances to batches (one transaction), then send the batches."""
    ttl_s = settings.discovery_interval_s + settings.task_time_limit_s
    with session_scope() as session:
        if not store.claim_leases(
            session, [SWEEP_LEASE], holder, settings.discovery_interval_s * 0.9
        ):
            return {"dispatched": 0, "skipped": "another sweep ran within this interval"}
        rows = queries.discovery_candidates(
            session, sorted(MODULES), INSTANCE_LEASE, settings.discovery_max_per_sweep
        )
        batches = lease_batches(session, rows, settings.discovery_batch_size, ttl_s)
    return send_batches(discover_batch, batches, settings.discovery_interval_s, progress)


def lease_batches(session: Session, rows: Sequence[Any], size: int, ttl_s: float) -> list[Batch]:
    """Group rows by queue into batches, each leased to its future task id."""
    groups: dict[str, list[uuid.UUID]] = {}
    for row in rows:
        groups.setdefault(queue_for(row.tags or ()), []).append(row.id)
    return [
        (task_id, queue, ids)
        for queue, group in groups.items()
        for task_id, ids in lease_chunks(session, group, size, ttl_s, instance_lease)
    ]


def take(
    session: Session, ids: Sequence[uuid.UUID], holder: str, settings: Settings
) -> tuple[list[InstanceSpec], MemoryKnownHosts, list[PluginRule]]:
    """Lease `ids` to `holder`; load their specs, trusted host keys and the plugin rules."""
    ttl_s = settings.task_time_limit_s + 60
    held = store.claim_leases(session, [instance_lease(i) for i in ids], holder, ttl_s)
    mine = [i for i in ids if instance_lease(i) in held]
    specs = [spec_of(row, Policy()) for row in (queries.instances(session, mine) if mine else [])]
    known = MemoryKnownHosts(trusted_keys(specs, queries.known_host_keys(session, mine)))
    return specs, known, rules_from(queries.managing_plugins(session))


def discoverer(settings: Settings, known: MemoryKnownHosts) -> Callable[[InstanceSpec], Discoverer]:
    """A function that builds the discoverer for a spec with this worker's secrets and keys."""
    resolver = resolver_for(settings)

    def make(spec: InstanceSpec) -> Discoverer:
        return discoverer_for(
            spec.connection_type,
            spec.host,
            spec.port,
            spec.connection_config,
            resolver,
            settings.discovery_timeout_s,
            known_hosts=known,
        )

    return make


def discover_all(
    specs: Sequence[InstanceSpec],
    make: Callable[[InstanceSpec], Discoverer],
    concurrency: int,
    done: Callable[[], None] = lambda: None,
    deadline_s: float | None = None,
) -> list[Discovered]:
    """Discover every instance, at most `concurrency` at once; no transaction is open.

    A discovery still running `deadline_s` from now is a TIMEOUT: nothing of that instance
    is reconciled (no service marked missing), the others are.
    """

    def discover(spec: InstanceSpec) -> Discovery:
        found = make(spec).run()
        done()
        return found

    def late(spec: InstanceSpec) -> Discovery:
        made = make(spec)
        message = f"the discovery was still running at the batch deadline ({deadline_s:g}s)"
        return Discovery(made.kind, made.types, error_class=ErrorClass.TIMEOUT, message=message)

    found = each(discover, specs, concurrency, instance_fields, deadline_s, late)
    return list(zip(specs, found, strict=True))


def reconcile_one(
    found: Discovered, rules: Sequence[PluginRule], known: MemoryKnownHosts, holder: str
) -> dict[str, Any]:
    """One short transaction: this instance's services (if it answered), keys, its lease."""
    spec, discovery = found
    instance_id = uuid.UUID(spec.id)
    with session_scope() as session:
        counts = None
        if discovery.ok:
            plugins = {(s.name, s.type): plugin_for(s, rules) for s in discovery.services}
            counts = discovery_store.reconcile(
                session, instance_id, discovery.services, discovery.types, plugins, discovery.unread
            )
            health_store.remember_host_keys(session, learned_key(spec, known))
        store.release_leases(session, [instance_lease(instance_id)], holder)
    if not discovery.ok or discovery.unread:
        what = "failed" if not discovery.ok else "was partial"
        log.warning("discovery of %s %s: %s", spec.id, what, discovery.message)
    return summary(spec, discovery, counts)


def learned_key(spec: InstanceSpec, known: MemoryKnownHosts) -> dict[uuid.UUID, tuple[str, str]]:
    """The host key this discovery trusted on first use, to be recorded like health's."""
    entry = ssh_entry(spec)
    if spec.connection_type != "ssh" or entry not in known.learned:
        return {}
    return {uuid.UUID(spec.id): (entry, known.learned[entry])}


def summary(
    spec: InstanceSpec, discovery: Discovery, counts: discovery_store.Reconciled | None
) -> dict[str, Any]:
    """A JSON summary of one instance's discovery, without secrets."""
    return {
        "instance_id": spec.id,
        "name": spec.name,
        "status": "discovered" if counts is not None else "failed",
        **(counts or discovery_store.Reconciled()).as_dict(),
        "discovery": discovery.summary(),
    }


def run_batch(
    settings: Settings, ids: Sequence[uuid.UUID], holder: str, progress: Progress = quietly
) -> dict[str, Any]:
    """Discover the instances of `ids` this holder can lease, and reconcile each."""
    with session_scope() as session:
        specs, known, rules = take(session, ids, holder, settings)
    found = discover_all(
        specs,
        discoverer(settings, known),
        settings.discovery_concurrency,
        done=counter(progress, len(specs), "instances"),
        deadline_s=batch_deadline_s(settings.task_soft_time_limit_s),
    )
    done = [reconcile_one(item, rules, known, holder) for item in found]
    totals: Counter[str] = Counter()
    for item in done:
        totals.update({k: item[k] for k in ("seen", "new", "updated", "missing", "matched")})
    return {
        "discovered": sum(d["status"] == "discovered" for d in done),
        "failed": sum(d["status"] == "failed" for d in done),
        **{k: totals[k] for k in ("seen", "new", "updated", "missing", "matched")},
    }


def discover_now(settings: Settings, instance_id: uuid.UUID, holder: str) -> dict[str, Any]:
    """Discover one instance right away, unless a discovery of it is already running."""
    with session_scope() as session:
        specs, known, rules = take(session, [instance_id], holder, settings)
        if not specs:
            store.release_leases(session, [instance_lease(instance_id)], holder)
    if not specs:
        return {
            "instance_id": str(instance_id),
            "status": "not_discovered",
            "message": "no such instance, deleted, or a discovery of it is running",
        }
    deadline_s = batch_deadline_s(settings.task_soft_time_limit_s)
    [found] = discover_all(specs, discoverer(settings, known), 1, deadline_s=deadline_s)
    return reconcile_one(found, rules, known, holder)
