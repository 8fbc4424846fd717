"""How a batch runs its checks: bounded threads, jitter that spreads starts, results in order."""

import asyncio
import datetime as dt
import random
import threading
import time

import pytest

from agent import health
from agent.core.clock import Clock
from agent.core.results import ErrorClass, Observation
from agent.health import InstanceSpec, check_all
from agent.probes.base import Probe


class Recording(Probe):
    """A probe that only notes when it started."""

    kind = "tcp"

    def __init__(self, starts: list[float]) -> None:
        super().__init__()
        self.starts = starts

    def check(self) -> Observation:
        self.starts.append(time.monotonic())  # list.append is atomic under the GIL
        return Observation()


def specs(count: int) -> list[InstanceSpec]:
    return [
        InstanceSpec(id=str(n), name=f"i{n}", connection_type="tcp", host="h", port=1)
        for n in range(count)
    ]


def test_results_come_back_in_the_order_of_the_specs():
    batch = specs(40)
    checked = check_all(batch, lambda spec: Recording([]), concurrency=8, jitter_s=0.05)
    assert [c.spec.id for c in checked] == [s.id for s in batch]


class ThreadClocks:
    """`time` for agent.health in which every thread keeps its own clock, starting at 0.

    Sleeping moves the calling thread's clock on at once. Threads whose work takes no time
    see exactly this, so start times are measured without waiting and without a busy
    machine's delays.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def monotonic(self) -> float:
        return getattr(self._local, "now", 0.0)

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self._local.now = self.monotonic() + seconds


class Timed(Probe):
    """A probe that notes, by instance, when its thread's clock says it started."""

    kind = "tcp"

    def __init__(self, spec: InstanceSpec, clock: ThreadClocks, starts: dict[str, float]) -> None:
        super().__init__()
        self.spec, self.clock, self.starts = spec, clock, starts

    def check(self) -> Observation:
        self.starts[self.spec.id] = self.clock.monotonic()
        return Observation()


def test_each_check_starts_at_its_jittered_moment_and_the_sleeps_do_not_add_up(monkeypatch):
    clock, jitter_s, seed = ThreadClocks(), 0.3, 7
    monkeypatch.setattr(health, "time", clock)
    monkeypatch.setattr(health, "random", random.Random(seed))
    batch, starts = specs(64), {}
    check_all(batch, lambda spec: Timed(spec, clock, starts), concurrency=8, jitter_s=jitter_s)
    drawn = random.Random(seed)
    planned = {spec.id: drawn.uniform(0, jitter_s) for spec in batch}
    # Sleeps that added up would start the last checks after about 64 x 0.15 / 8 = 1.2 s.
    assert starts == pytest.approx(planned)
    assert max(starts.values()) <= jitter_s


class Stuck(Probe):
    """A probe that runs until the test releases it (a check no deadline of its own ends)."""

    kind = "ssh"

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def check(self) -> Observation:
        self.release.wait(10)
        return Observation()


def test_a_check_late_at_the_batch_deadline_is_a_timeout_dated_by_the_batch_clock():
    # The database's clock, read when the batch took its leases, is far from this machine's.
    database = Clock.reading(dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.UTC))
    release = threading.Event()
    try:
        [late] = check_all(
            specs(1), lambda spec: Stuck(release), concurrency=1, clock=database, deadline_s=0.2
        )
    finally:
        release.set()
    assert late.result.error_class == ErrorClass.TIMEOUT
    assert "batch deadline" in late.result.message
    assert dt.timedelta(0) < late.checked_at - database.at < dt.timedelta(seconds=5)


class Waving(Probe):
    """A threaded probe that waits until the coroutine check has started, then says so."""

    kind = "ssh"

    def __init__(self, started: threading.Event, answered: threading.Event) -> None:
        super().__init__()
        self.started, self.answered = started, answered

    def check(self) -> Observation:
        assert self.started.wait(5), "the coroutine check never started"
        self.answered.set()
        return Observation()


class WavingBack(Probe):
    """A coroutine probe that waits (without blocking its loop) for the threaded one."""

    kind = "tcp"

    def __init__(self, started: threading.Event, answered: threading.Event) -> None:
        super().__init__(timeout_s=5.0)
        self.started, self.answered = started, answered

    def check(self) -> Observation:
        raise NotImplementedError

    async def acheck(self) -> Observation:
        self.started.set()
        while not self.answered.is_set():
            await asyncio.sleep(0.01)
        return Observation()


def test_a_mixed_batch_runs_its_coroutine_and_threaded_checks_at_once():
    started, answered = threading.Event(), threading.Event()
    batch = specs(2)
    probes = {"0": Waving(started, answered), "1": WavingBack(started, answered)}
    checked = check_all(batch, lambda spec: probes[spec.id], concurrency=1, deadline_s=10)
    assert [c.result.kind for c in checked] == ["ssh", "tcp"]
    assert all(c.result.error_class is None for c in checked), [c.result for c in checked]


def test_a_check_that_ends_after_its_batch_returned_reports_no_progress():
    # Its thread goes on past the deadline; a report then would overwrite the task's result.
    release, reported = threading.Event(), []
    check_all(
        specs(1),
        lambda spec: Stuck(release),
        concurrency=1,
        done=lambda: reported.append(threading.current_thread().name),
        deadline_s=0.2,
    )
    release.set()
    time.sleep(0.5)  # long enough for the released check to end and call done()
    assert reported == []


def test_checks_done_before_the_deadline_each_report_once():
    reported = []
    check_all(specs(5), lambda spec: Recording([]), concurrency=2, done=lambda: reported.append(1))
    assert len(reported) == 5
