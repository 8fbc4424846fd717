"""Highly available beat: run two (or more) `celery beat` processes; one of them dispatches.

Every beat claims the leader lease `beat.leader` (in `agent_leases`) on each tick, for
AGENT_BEAT_LEASE_TTL_S, and ticks at least three times per TTL: a live leader renews it long
before it runs out, and a standby takes over within one TTL plus one tick of the leader's
death. A leader that stops cleanly gives the lease back, so a standby takes over at its next
tick. A beat that cannot reach the database cannot prove it leads, so it does not dispatch.

Each dispatch also claims a run lease `beat.run.<entry>` for 90% of the entry's interval. A
new leader reads those leases and carries on the old leader's schedule, so a failover neither
runs a job twice within an interval nor makes it wait a whole interval; and a leader paused
past its TTL (that does not know it lost the lead) cannot send an entry that already ran.
The schedule thus lives in the database, and beat needs no schedule file or volume.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from celery.beat import ScheduleEntry, Scheduler
from celery.utils.log import get_logger
from kombu import Producer
from sqlalchemy.exc import SQLAlchemyError

from agent.core.settings import get_settings
from models import queries, store
from models.session import session_scope

LEADER_LEASE = "beat.leader"
RUN_LEASE = "beat.run."
# A run lease outlives most of an interval; the holder's own next run may always reclaim it.
RUN_SHARE = 0.9
TICKS_PER_TTL = 3

logger = get_logger(__name__)


@lru_cache(maxsize=1)
def holder_id(pid: int) -> str:
    """Who beat process `pid` is (unique even across restarts with the same pid)."""
    # Beat builds a second scheduler for its banner; both must name the same holder.
    return f"beat@{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"


def interval_of(entry: ScheduleEntry) -> float | None:
    """The entry's interval in seconds, or None for a schedule without one (crontab)."""
    run_every = getattr(entry.schedule, "run_every", None)
    return run_every.total_seconds() if run_every is not None else None


def resume_from(entries: Mapping[str, ScheduleEntry], expiries: Mapping[str, dt.datetime]) -> int:
    """Set each entry's last run from its run lease; how many entries had one."""
    resumed = 0
    for name, entry in entries.items():
        every, expires = interval_of(entry), expiries.get(RUN_LEASE + name)
        if every is not None and expires is not None:
            entry.last_run_at = expires - dt.timedelta(seconds=every * RUN_SHARE)
            resumed += 1
    return resumed


class LeaderScheduler(Scheduler):
    """Celery's in-memory scheduler that dispatches only while it holds the leader lease."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lease_ttl_s = get_settings().beat_lease_ttl_s
        self.holder = holder_id(os.getpid())
        self.leading: bool | None = None  # unknown until the first tick, which logs it
        super().__init__(*args, **kwargs)
        # Celery has set max_interval by now (never None); its stubs allow ints and None only.
        self.tick_cap_s = min(float(self.max_interval or 0), self.lease_ttl_s / TICKS_PER_TTL)
        self.max_interval = self.tick_cap_s  # type: ignore[assignment]

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One scheduler pass if this beat leads; otherwise wait a tick and try again."""
        if not self._lead():
            return self.tick_cap_s
        return min(super().tick(*args, **kwargs), self.tick_cap_s)

    def _lead(self) -> bool:
        was_leading = self.leading
        try:
            self.leading = self._claim_lead()
        except SQLAlchemyError as exc:
            self.leading = False
            logger.warning("beat: database unreachable (%s), not dispatching", type(exc).__name__)
        if self.leading != was_leading:
            logger.info("beat: %s %s", self.holder, "leads" if self.leading else "stands by")
        return self.leading

    def _claim_lead(self) -> bool:
        with session_scope() as session:
            held = bool(store.claim_leases(session, [LEADER_LEASE], self.holder, self.lease_ttl_s))
            if held and not self.leading:
                names = [RUN_LEASE + name for name in self.schedule]
                resume_from(self.schedule, queries.lease_expiries(session, names))
                self._heap = None  # rebuilt from the resumed last runs on this tick
        return held

    def apply_entry(self, entry: ScheduleEntry, producer: Producer | None = None) -> None:
        """Send the entry unless it already ran within its interval (under any holder)."""
        if self._claim_run(entry):
            super().apply_entry(entry, producer=producer)
        else:
            logger.warning("beat: %s already ran within its interval, not sending", entry.name)

    def _claim_run(self, entry: ScheduleEntry) -> bool:
        every = interval_of(entry)
        if every is None:
            return True
        try:
            with session_scope() as session:
                names = [RUN_LEASE + str(entry.name)]
                return bool(store.claim_leases(session, names, self.holder, every * RUN_SHARE))
        except SQLAlchemyError as exc:
            logger.warning("beat: database unreachable (%s), not sending", type(exc).__name__)
            return False

    def close(self) -> None:
        """Give the leader lease back, so a standby takes over at its next tick."""
        super().close()
        if self.leading:
            self.leading = False
            try:
                with session_scope() as session:
                    store.release_leases(session, [LEADER_LEASE], self.holder)
            except SQLAlchemyError:
                logger.warning("beat: could not give the lead back; it expires on its own")

    @property
    def info(self) -> str:
        """The banner line `celery beat` prints for its scheduler."""
        return f"leader lease {self.lease_ttl_s:g}s, tick {self.max_interval:g}s ({self.holder})"
