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
    sweep_lease_s,
)
from tasks.instances import spec_of, ssh_entry, trusted_keys

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
    batches = plan_sweep(settings, holder)
    if batches is None:
        return {"dispatched": 0, "skipped": "another sweep ran within half an interval"}
    return send_batches(check_batch, batches, settings.health_interval_s, progress)


def plan_sweep(settings: Settings, holder: str) -> list[Batch] | None:
    """The due instances leased to batches, or None when another sweep ran just before.

    The sweep's own lease lasts as long as a check stays fresh (`queries.DUE_AFTER_SHARE`),
    so a sweep that runs late does not make the next, punctual one skip its turn.
    """
    interval_s = settings.health_interval_s
    with session_scope() as session:
        if not store.claim_leases(session, [SWEEP_LEASE], holder, sweep_lease_s(interval_s)):
            return None
        due = queries.due_instances(session, interval_s, settings.health_max_per_sweep)
        return lease_batches(session, due, settings)


def lease_batches(session: Session, due: Sequence[Any], settings: Settings) -> list[Batch]:
    """Group due rows by queue and kind into batches, each leased to its future task id."""
    groups: dict[tuple[str, str | None], list[uuid.UUID]] = {}
    for row in due:
        groups.setdefault((queue_for(row.tags or ()), row.connection_type), []).append(row.id)
    ttl_s = settings.health_interval_s + settings.task_time_limit_s
    size = settings.health_batch_size
    return [
        (task_id, queue, ids)
        for (queue, _kind), group in groups.items()
        for task_id, ids in lease_chunks(session, group, size, ttl_s, instance_lease)
    ]


def run_batch(
    settings: Settings, ids: Sequence[uuid.UUID], holder: str, progress: Progress = quietly
) -> dict[str, Any]:
    """Check the instances of `ids` this holder can lease, and write them in one go."""
    with session_scope() as session:
        specs, known, clock = take(session, ids, holder, settings)
    checked = check_all(
        specs,
        prober(settings, known),
        settings.health_concurrency,
        settings.health_jitter_s,
        done=counter(progress, len(specs), "instances"),
        clock=clock,
        deadline_s=batch_deadline_s(settings.task_soft_time_limit_s),
    )
    with session_scope() as session:
        write(session, checked, known, holder, ids)
    return tally(checked)


def check_now(settings: Settings, instance_id: uuid.UUID, holder: str) -> dict[str, Any]:
    """Check one instance right away, unless a check of it is already running."""
    with session_scope() as session:
        specs, known, clock = take(session, [instance_id], holder, settings)
        if not specs:
            store.release_leases(session, [instance_lease(instance_id)], holder)
    if not specs:
        return {
            "instance_id": str(instance_id),
            "status": "not_checked",
            "message": "no such instance, deleted, or a check of it is running",
        }
    deadline_s = batch_deadline_s(settings.task_soft_time_limit_s)
    [checked] = check_all(
        specs, prober(settings, known), concurrency=1, clock=clock, deadline_s=deadline_s
    )
    with session_scope() as session:
        write(session, [checked], known, holder, [instance_id])
    return checked.summary()


def take(
    session: Session, ids: Sequence[uuid.UUID], holder: str, settings: Settings
) -> tuple[list[InstanceSpec], MemoryKnownHosts, Clock]:
    """Lease `ids` to `holder` and load what their checks need (the caller's transaction).

    Also the database's clock, read once, by which the checks are dated.
    """
    clock = Clock.reading(queries.database_time(session))
    held = store.claim_leases(
        session, [instance_lease(i) for i in ids], holder, settings.task_time_limit_s + 60
    )
    mine = [i for i in ids if instance_lease(i) in held]
    rows = queries.instances(session, mine) if mine else []
    default = Policy(
        settings.health_failures_before_offline, settings.health_successes_before_online
    )
    specs = [spec_of(row, default) for row in rows]
    known = MemoryKnownHosts(trusted_keys(specs, queries.known_host_keys(session, mine)))
    return specs, known, clock


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


def write(
    session: Session,
    checked: Sequence[Checked],
    known: MemoryKnownHosts,
    holder: str,
    ids: Sequence[uuid.UUID],
) -> None:
    """Results, newly trusted host keys, and the leases given back: one transaction."""
    health_store.record_health(session, checked)
    health_store.remember_host_keys(session, learned_keys(checked, known))
    store.release_leases(session, [instance_lease(i) for i in ids], holder)


def learned_keys(
    checked: Sequence[Checked], known: MemoryKnownHosts
) -> dict[uuid.UUID, tuple[str, str]]:
    """Host keys trusted on first use in this batch, by instance."""
    learned = {}
    for c in checked:
        if c.spec.connection_type == "ssh" and ssh_entry(c.spec) in known.learned:
            entry = ssh_entry(c.spec)
            learned[uuid.UUID(c.spec.id)] = (entry, known.learned[entry])
    return learned


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
