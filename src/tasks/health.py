"""Health checks of infrastructure instances: the sweep, its batches, and checks on demand.

The sweep selects due instances, leases them to a batch task and sends the batch to the
instance's queue (`health`, or `health.<zone>`); a batch checks its instances concurrently
and writes all results in one transaction. Leases keep sweeps from overlapping and an
instance from being checked twice at once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from sqlalchemy.orm import Session

from agent.api import contract
from agent.connections.known_hosts import MemoryKnownHosts
from agent.core.clock import Clock
from agent.core.damping import Policy
from agent.core.results import ProbeResult
from agent.core.settings import Settings, get_settings
from agent.health import Checked, InstanceSpec, check_all, queue_for
from agent.probes import probe_for
from agent.probes.base import Probe
from models import queries, store
from models.agent import instance_lease
from models.session import session_scope
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
from tasks.sweep import Batch, Due, Sweep

SWEEP_LEASE = "health.sweep"


@shared_task(name="agent.health.sweep", bind=True, **RETRY_ON_INFRASTRUCTURE)
def sweep(self: Any) -> contract.Dispatched | contract.Skipped:
    """Send every due instance to a batch; returns how many, to which queues, the batch ids."""
    holder = self.request.id or str(uuid.uuid4())
    return run_sweep(get_settings(), holder, progress_of(self))


@shared_task(name="agent.health.check_batch", bind=True, **RETRY_ON_INFRASTRUCTURE)
def check_batch(self: Any, instance_ids: list[str]) -> contract.HealthBatch:
    """Check a batch of instances concurrently and write the results together."""
    ids = as_uuids(instance_ids)
    return run_batch(get_settings(), ids, holder=self.request.id, progress=progress_of(self))


@shared_task(name="agent.health.check_instance", bind=True, **RETRY_ON_INFRASTRUCTURE)
def check_instance(self: Any, instance_id: str) -> contract.CheckSummary | contract.NotChecked:
    """Check one instance now; a JSON summary without secrets."""
    return check_now(get_settings(), as_uuid(instance_id), holder=self.request.id)


def run_sweep(settings: Settings, holder: str, progress: Progress = quietly) -> dict[str, Any]:
    """Lease due instances to batches (one transaction), then send the batches."""
    return sweep_core.run_sweep(health_sweep(settings), holder, progress)


def plan_sweep(settings: Settings, holder: str) -> list[Batch] | None:
    """The due instances leased to batches, or None when another sweep ran just before."""
    return sweep_core.plan(health_sweep(settings), holder)


def health_sweep(settings: Settings) -> Sweep:
    """The health sweep: due instances, batched by queue (zone) and kind.

    The sweep's own lease lasts as long as a check stays fresh (`queries.DUE_AFTER_SHARE`),
    so a sweep that runs late does not make the next, punctual one skip its turn.
    """
    interval_s = settings.health_interval_s
    return Sweep(
        lease=SWEEP_LEASE,
        lease_s=interval_s * queries.DUE_AFTER_SHARE,
        skipped="another sweep ran within half an interval",
        due=lambda session: due_instances(session, settings),
        lease_of=lambda _queue, instance_id: instance_lease(instance_id),
        batch_size=settings.health_batch_size,
        batch_lease_s=interval_s + settings.task_time_limit_s,
        task=check_batch,
        expires_s=interval_s,
        label="queue",
        summary=sweep_core.by_queue,
    )


def due_instances(session: Session, settings: Settings) -> list[Due]:
    """The instances due a check, each with its queue and kind."""
    due = queries.due_instances(session, settings.health_interval_s, settings.health_max_per_sweep)
    return [(queue_for(row.tags or ()), row.connection_type, row.id) for row in due]


def run_batch(
    settings: Settings, ids: Sequence[uuid.UUID], holder: str, progress: Progress = quietly
) -> dict[str, Any]:
    """Check the instances of `ids` this holder can lease, and write them in one go."""
    return sweep_core.run_batch(HealthJob(settings), ids, holder, progress)


def check_now(settings: Settings, instance_id: uuid.UUID, holder: str) -> dict[str, Any]:
    """Check one instance right away, unless a check of it is already running."""
    return sweep_core.run_now(HealthJob(settings), instance_id, holder)


@dataclass(frozen=True)
class Taken:
    """What a batch's checks need: the specs, their trusted host keys, the database's clock."""

    specs: list[InstanceSpec]
    known: MemoryKnownHosts
    clock: Clock


class HealthJob:
    """A batch of health checks: the instances' specs in, damped results written together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lease_s = settings.task_time_limit_s + 60
        self.lease_of = instance_lease

    def load(self, session: Session, ids: Sequence[uuid.UUID]) -> Taken:
        """The specs and host keys of `ids`, and the database's clock, read once."""
        clock = Clock.reading(queries.database_time(session))
        specs = instance_specs(session, ids, default_policy(self.settings))
        return Taken(specs, known_hosts(session, specs, ids), clock)

    def refusal(self, taken: Taken) -> str | None:
        """Why a check on demand cannot go ahead."""
        return None if taken.specs else "no such instance, deleted, or a check of it is running"

    def run(self, taken: Taken, progress: Progress | None) -> list[Checked]:
        """Check every instance (a batch spreads its starts; one on demand starts at once)."""
        settings, alone = self.settings, progress is None
        return check_all(
            taken.specs,
            prober(settings, taken.known),
            1 if alone else settings.health_concurrency,
            0.0 if alone else settings.health_jitter_s,
            done=counter(progress or quietly, len(taken.specs), "instances"),
            clock=taken.clock,
            deadline_s=batch_deadline_s(settings.task_soft_time_limit_s),
        )

    def write(
        self, taken: Taken, checked: list[Checked], holder: str, ids: Sequence[uuid.UUID]
    ) -> None:
        """Results, newly trusted host keys, and the leases given back: one transaction."""
        with session_scope() as session:
            health_store.record_health(session, checked)
            learned = learned_keys([c.spec for c in checked], taken.known)
            health_store.remember_host_keys(session, learned)
            store.release_leases(session, [instance_lease(i) for i in ids], holder)

    def tally(self, checked: list[Checked], _written: None) -> dict[str, Any]:
        """Counts for the task result: checked, by status, how many changed, each raw check."""
        return tally(checked)

    def summary(self, checked: list[Checked], _written: None) -> dict[str, Any]:
        """The one check's JSON summary."""
        return checked[0].summary()

    def not_done(self, instance_id: uuid.UUID, reason: str) -> dict[str, Any]:
        """The result of a check on demand that could not go ahead."""
        return {"instance_id": str(instance_id), "status": "not_checked", "message": reason}


def default_policy(settings: Settings) -> Policy:
    """The damping policy from settings, for instances that do not override it."""
    return Policy(settings.health_failures_before_offline, settings.health_successes_before_online)


def prober(settings: Settings, known: MemoryKnownHosts) -> Callable[[InstanceSpec], Probe]:
    """A function that builds the probe for a spec with this worker's secrets and keys."""
    resolver = resolver_for(settings)

    def make(spec: InstanceSpec) -> Probe:
        return probe_for(
            spec.connection_type,
            spec.host,
            spec.port,
            spec.connection_config,
            resolver,
            settings.health_timeout_s,
            known_hosts=known,
        )

    return make


def tally(checked: Sequence[Checked]) -> dict[str, Any]:
    """Counts for the task result: checked, by status, how many changed, and each raw check."""
    return {
        "checked": len(checked),
        "by_status": dict(Counter(c.state.status.value for c in checked)),
        "changed": sum(c.changed for c in checked),
        "checks": [check_outcome(c.result) for c in checked],
    }


def check_outcome(result: ProbeResult) -> dict[str, Any]:
    """What the metrics need of one check: kind, verdict, why, and how long it took."""
    check = result.as_dict()
    return {name: check[name] for name in ("kind", "status", "error_class", "latency_ms")}
