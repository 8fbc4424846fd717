"""The sweep written once: sweep -> lease -> batch, and the same batch for one item now.

A sweep takes its own lease (sweeps of one kind never overlap), asks its family what is due,
groups the due items by where their batch goes and by kind, cuts each group into batches
leased to the batches' future task ids, and sends them. A batch, or a check of one item on
demand, leases its items again under its own task id, loads them in one short transaction,
runs them with no transaction open, and hands the outcomes to its family to write (which
gives the leases back). Health, discovery and plugins each configure a `Sweep` and a `Job`.

Why group by kind as well as by destination: a batch of one kind reuses one set of pooled
clients (SSH transports, the HTTP client, the Kubernetes client), and a slow kind does not
hold up a fast one's batch.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy.orm import Session

from models import store
from models.session import session_scope
from tasks.common import Progress, counter

Batch = tuple[str, str, list[uuid.UUID]]
"""A batch a sweep sends: its task id, its label (a queue, or a plugin type), the ids leased."""

Due = tuple[str, str | None, uuid.UUID]
"""One due item: its label, its kind (items of one kind share a batch), its id."""

Loaded = TypeVar("Loaded")
Done = TypeVar("Done")


@dataclass(frozen=True)
class Sweep:
    """One family's sweep: its own lease, what is due, how batches are leased and sent.

    `label` says what a batch's label is: the queue it is sent to (`queue`), or the first
    argument of its task, sent on the task's own route (`argument`).
    """

    lease: str
    lease_s: float
    skipped: str
    due: Callable[[Any], Iterable[Due]]
    lease_of: Callable[[str, uuid.UUID], str]
    batch_size: int
    batch_lease_s: float
    task: Any
    expires_s: float
    label: Literal["queue", "argument"]
    summary: Callable[[Sequence[Batch]], dict[str, Any]]


class Job(Protocol[Loaded, Done]):
    """What one family's batch does between taking its leases and writing what it found."""

    @property
    def lease_s(self) -> float:
        """How long a batch holds its items' leases."""

    def lease_of(self, item_id: uuid.UUID) -> str:
        """The lease a run on this item holds."""

    def load(self, session: Session, ids: Sequence[uuid.UUID]) -> Loaded:
        """What the runs of `ids` (the ones this holder leased) need, from the database."""

    def refusal(self, loaded: Loaded) -> str | None:
        """Why a run on demand cannot go ahead (nothing loaded, or refused), or None."""

    def run(self, loaded: Loaded, progress: Progress | None) -> Done:
        """Run the batch with no transaction open; `progress` is None for a run on demand."""

    def write(self, loaded: Loaded, done: Done, holder: str, ids: Sequence[uuid.UUID]) -> Any:
        """Write the outcomes and give back the leases of `ids`; what the results report."""

    def tally(self, done: Done, written: Any) -> dict[str, Any]:
        """A batch task's result."""

    def summary(self, done: Done, written: Any) -> dict[str, Any]:
        """A run on demand's result."""

    def not_done(self, item_id: uuid.UUID, reason: str) -> dict[str, Any]:
        """A run on demand's result when it could not go ahead."""


def run_sweep(sweep: Sweep, holder: str, progress: Progress) -> dict[str, Any]:
    """Lease due items to batches (one transaction), then send the batches."""
    batches = plan(sweep, holder)
    if batches is None:
        return {"dispatched": 0, "skipped": sweep.skipped}
    sent = counter(progress, len(batches), "batches")
    for batch in batches:
        send(sweep, batch)
        sent()
    return {
        "dispatched": sum(len(ids) for _, _, ids in batches),
        **sweep.summary(batches),
        "batch_ids": [task_id for task_id, _, _ in batches],
    }


def plan(sweep: Sweep, holder: str) -> list[Batch] | None:
    """The due items leased to batches, or None when another sweep of this kind ran just before."""
    with session_scope() as session:
        if not store.claim_leases(session, [sweep.lease], holder, sweep.lease_s):
            return None
        return lease_batches(session, sweep, sweep.due(session))


def lease_batches(session: Session, sweep: Sweep, due: Iterable[Due]) -> list[Batch]:
    """Due items grouped by label and kind, cut into batches leased to their future task ids."""
    groups: dict[tuple[str, str | None], list[uuid.UUID]] = {}
    for label, kind, item_id in due:
        groups.setdefault((label, kind), []).append(item_id)
    return [
        (task_id, label, ids)
        for (label, _kind), group in groups.items()
        for task_id, ids in lease_chunks(session, sweep, label, group)
    ]


def lease_chunks(
    session: Session, sweep: Sweep, label: str, ids: Sequence[uuid.UUID]
) -> list[tuple[str, list[uuid.UUID]]]:
    """`ids` in chunks of the batch size, each leased to its future task id (the first item).

    Ids another holder leases are left out, and a chunk left with none is dropped.
    """
    chunks, size = [], sweep.batch_size
    for start in range(0, len(ids), size):
        chunk, task_id = ids[start : start + size], str(uuid.uuid4())
        mine = held(session, chunk, task_id, sweep.batch_lease_s, partial(sweep.lease_of, label))
        if mine:
            chunks.append((task_id, mine))
    return chunks


def send(sweep: Sweep, batch: Batch) -> None:
    """Send one batch to its task under its leased task id, by its label's rule."""
    task_id, label, ids = batch
    items = [str(i) for i in ids]
    if sweep.label == "queue":
        sweep.task.apply_async(args=[items], queue=label, task_id=task_id, expires=sweep.expires_s)
    else:
        sweep.task.apply_async(args=[label, items], task_id=task_id, expires=sweep.expires_s)


def by_queue(batches: Sequence[Batch]) -> dict[str, Any]:
    """A sweep's summary where labels are queues: how many batches, and how many per queue."""
    return {"batches": len(batches), "queues": dict(Counter(label for _, label, _ in batches))}


def by_type(batches: Sequence[Batch]) -> dict[str, Any]:
    """A sweep's summary where labels are types: batches and items per type."""
    counts = Counter(label for _, label, _ in batches)
    items = {label: sum(len(ids) for _, b, ids in batches if b == label) for label in counts}
    return {"batches": dict(counts), "by_type": items}


def held(
    session: Session,
    ids: Sequence[uuid.UUID],
    holder: str,
    ttl_s: float,
    lease_of: Callable[[uuid.UUID], str],
) -> list[uuid.UUID]:
    """The ids among `ids` whose leases `holder` now holds (in order)."""
    claimed = store.claim_leases(session, [lease_of(i) for i in ids], holder, ttl_s)
    return [i for i in ids if lease_of(i) in claimed]


def run_batch(job: Job[Loaded, Done], ids: Sequence[uuid.UUID], holder: str, progress: Progress):
    """Run the items of `ids` this holder can lease; write what they found."""
    with session_scope() as session:
        loaded = job.load(session, held(session, ids, holder, job.lease_s, job.lease_of))
    done = job.run(loaded, progress)
    return job.tally(done, job.write(loaded, done, holder, ids))


def run_now(job: Job[Loaded, Done], item_id: uuid.UUID, holder: str) -> dict[str, Any]:
    """Run one item right away, unless it cannot be or a run of it is already going."""
    with session_scope() as session:
        loaded = job.load(session, held(session, [item_id], holder, job.lease_s, job.lease_of))
        refusal = job.refusal(loaded)
        if refusal:
            store.release_leases(session, [job.lease_of(item_id)], holder)
    if refusal:
        return job.not_done(item_id, refusal)
    done = job.run(loaded, None)
    return job.summary(done, job.write(loaded, done, holder, [item_id]))
