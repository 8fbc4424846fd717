"""The database's time on a worker: one reading of it, carried forward on the monotonic clock.

Times that decide when a check is due, and the times written beside its results, must not
depend on the worker's wall clock: a worker two hours ahead would date its checks in the
future, and one a month ahead would write history rows that no partition holds. A batch
therefore reads the database's clock once, when it takes its leases, and dates each check by
that reading plus the time elapsed since on `time.monotonic()`, which no wall-clock step moves.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """A reading `at` of some clock, taken at monotonic instant `mono`, carried forward."""

    at: dt.datetime
    mono: float

    @classmethod
    def reading(cls, at: dt.datetime) -> Clock:
        """A clock that reads `at` now and advances with the monotonic clock from here."""
        if at.tzinfo is None:
            raise ValueError("a clock reading must be timezone-aware")
        return cls(at, time.monotonic())

    def now(self) -> dt.datetime:
        """The reading plus the monotonic time elapsed since it was taken."""
        return self.at + dt.timedelta(seconds=time.monotonic() - self.mono)


def worker_clock() -> Clock:
    """The wall clock of this process: only for callers that date nothing the database reads."""
    return Clock.reading(dt.datetime.now(dt.UTC))
