"""Rows into batches of points and rejections, with a tally: memory bounded by the batch."""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.benchmarks.formats import Raw
from agent.benchmarks.validation import Invalid, Point, Validator

EXAMPLES_PER_REASON = 5

T = TypeVar("T")


@dataclass(frozen=True)
class Rejection:
    """A row that goes to quarantine: where it was, why, and what it said."""

    number: int
    reason: str
    original: Any


@dataclass
class Batch:
    """Points to store, rows to quarantine, and the UTC days the points fall on."""

    points: list[Point] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    days: set[dt.date] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.points) + len(self.rejected)


@dataclass
class Tally:
    """Counts of one ingest; `accepted` and `duplicate` are filled in by the store."""

    accepted: int = 0
    duplicate: int = 0
    quarantined: int = 0
    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def reject(self, number: int, reason: str) -> None:
        """Count a quarantined row under its reason, keeping the first few row numbers."""
        self.quarantined += 1
        self.reasons[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < EXAMPLES_PER_REASON:
            seen.append(number)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: counts, and each reason with its count and first row numbers."""
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "reasons": [
                {"reason": reason, "rows": count, "examples": self.examples[reason]}
                for reason, count in self.reasons.most_common()
            ],
        }


def batches(rows: Iterable[Raw], validator: Validator, tally: Tally, size: int) -> Iterator[Batch]:
    """Validate `rows` into batches of about `size` rows."""
    batch = Batch()
    point, points, days = validator.point, batch.points, batch.days
    for raw in rows:
        if raw.skipped:
            tally.skipped += 1
            continue
        try:
            if raw.problem:
                raise Invalid(raw.problem)
            made = point(raw.fields)
        except Invalid as exc:
            tally.reject(raw.number, str(exc))
            batch.rejected.append(Rejection(raw.number, str(exc), raw.original))
        else:
            points.append(made)
            days.add(made[0].date())
        if len(points) + len(batch.rejected) >= size:
            yield batch
            batch = Batch()
            points, days = batch.points, batch.days
    if batch:
        yield batch


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a thread up to `depth` ahead, so producing overlaps consuming.

    An exception in the producer is raised here, in order; stopping early stops it.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                handoff.put(("item", item))
            handoff.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(("error", exc))

    worker = threading.Thread(target=produce, name="bench-parse", daemon=True)
    worker.start()
    try:
        yield from _drain(handoff)
    finally:
        stop.set()
        _unblock(handoff, worker)


def _drain(handoff: queue.Queue[tuple[str, Any]]) -> Iterator[Any]:
    while True:
        kind, value = handoff.get()
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


def _unblock(handoff: queue.Queue[tuple[str, Any]], worker: threading.Thread) -> None:
    # A producer blocked on a full queue needs room to see the stop flag.
    while worker.is_alive():
        with contextlib.suppress(queue.Empty):
            handoff.get(timeout=0.05)
    worker.join()
