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
from dataclasses import dataclass
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
from tasks import sweep as sweep_core
from tasks.common import (
    RETRY_ON_INFRASTRUCTURE,
    Progress,
    as_uuid,
    as_uuids,
    batch_deadline_s,
    counter,
    progress_of,
    quietly,
    resolver_for,
)
from tasks.instances import instance_specs, known_hosts, learned_keys
from tasks.sweep import Due, Sweep

log = logging.getLogger(__name__)

SWEEP_LEASE = "discovery.sweep"
INSTANCE_LEASE = "discovery.instance."
QUEUE = "discovery"

Discovered = tuple[InstanceSpec, Discovery]
COUNTS = ("seen", "new", "updated", "missing", "matched")


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
    return sweep_core.run_sweep(discovery_sweep(settings), holder, progress)


def discovery_sweep(settings: Settings) -> Sweep:
    """The discovery sweep: every live instance discovery reads, batched by queue and kind."""
    interval_s = settings.discovery_interval_s
    return Sweep(
        lease=SWEEP_LEASE,
        lease_s=interval_s * 0.9,
        skipped="another sweep ran within this interval",
        due=lambda session: candidates(session, settings),
        lease_of=lambda _queue, instance_id: instance_lease(instance_id),
        batch_size=settings.discovery_batch_size,
        batch_lease_s=interval_s + settings.task_time_limit_s,
        task=discover_batch,
        expires_s=interval_s,
        label="queue",
        summary=sweep_core.by_queue,
    )


def candidates(session: Session, settings: Settings) -> list[Due]:
    """The instances discovery can read and no discovery holds, each with its queue and kind."""
    rows = queries.discovery_candidates(
        session, sorted(MODULES), INSTANCE_LEASE, settings.discovery_max_per_sweep
    )
    return [(queue_for(row.tags or ()), row.connection_type, row.id) for row in rows]


@dataclass(frozen=True)
class Taken:
    """What a batch's discoveries need: the specs, their trusted host keys, the plugin rules."""

    specs: list[InstanceSpec]
    known: MemoryKnownHosts
    rules: list[PluginRule]


class DiscoveryJob:
    """A batch of discoveries: each instance that answered reconciled in its own transaction."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lease_s = settings.task_time_limit_s + 60
        self.lease_of = instance_lease

    def load(self, session: Session, ids: Sequence[uuid.UUID]) -> Taken:
        """The specs and host keys of `ids`, and the rules that match plugins to services."""
        specs = instance_specs(session, ids, Policy())
        rules = rules_from(queries.managing_plugins(session))
        return Taken(specs, known_hosts(session, specs, ids), rules)

    def refusal(self, taken: Taken) -> str | None:
        """Why a discovery on demand cannot go ahead."""
        if taken.specs:
            return None
        return "no such instance, deleted, or a discovery of it is running"

    def run(self, taken: Taken, progress: Progress | None) -> list[Discovered]:
        """Discover every instance (one on demand alone), with no transaction open."""
        settings = self.settings
        return discover_all(
            taken.specs,
            discoverer(settings, taken.known),
            1 if progress is None else settings.discovery_concurrency,
            done=counter(progress or quietly, len(taken.specs), "instances"),
            deadline_s=batch_deadline_s(settings.task_soft_time_limit_s),
        )

    def write(
        self, taken: Taken, found: list[Discovered], holder: str, _ids: Sequence[uuid.UUID]
    ) -> list[dict[str, Any]]:
        """Each instance reconciled in its own transaction; a summary of each."""
        return [reconcile_one(item, taken.rules, taken.known, holder) for item in found]

    def tally(self, _found: list[Discovered], reconciled: list[dict[str, Any]]) -> dict[str, Any]:
        """Counts for the task result: discovered, failed, and the services' changes."""
        return tally(reconciled)

    def summary(self, _found: list[Discovered], reconciled: list[dict[str, Any]]) -> dict[str, Any]:
        """The one discovery's JSON summary."""
        return reconciled[0]

    def not_done(self, instance_id: uuid.UUID, reason: str) -> dict[str, Any]:
        """The result of a discovery on demand that could not go ahead."""
        return {"instance_id": str(instance_id), "status": "not_discovered", "message": reason}


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
            health_store.remember_host_keys(session, learned_keys([spec], known))
        store.release_leases(session, [instance_lease(instance_id)], holder)
    if not discovery.ok or discovery.unread:
        what = "failed" if not discovery.ok else "was partial"
        log.warning("discovery of %s %s: %s", spec.id, what, discovery.message)
    return summary(spec, discovery, counts)


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


def tally(done: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts for a batch's result: discovered, failed, and the services' changes."""
    totals: Counter[str] = Counter()
    for item in done:
        totals.update({k: item[k] for k in COUNTS})
    return {
        "discovered": sum(d["status"] == "discovered" for d in done),
        "failed": sum(d["status"] == "failed" for d in done),
        **{k: totals[k] for k in COUNTS},
    }


def run_batch(
    settings: Settings, ids: Sequence[uuid.UUID], holder: str, progress: Progress = quietly
) -> dict[str, Any]:
    """Discover the instances of `ids` this holder can lease, and reconcile each."""
    return sweep_core.run_batch(DiscoveryJob(settings), ids, holder, progress)


def discover_now(settings: Settings, instance_id: uuid.UUID, holder: str) -> dict[str, Any]:
    """Discover one instance right away, unless a discovery of it is already running."""
    return sweep_core.run_now(DiscoveryJob(settings), instance_id, holder)
