"""The health-check job, between the database and the probes: no database work here.

A batch of instance specs goes in; probes run concurrently (bounded, start times spread
with jitter); out comes one `Checked` per instance with the raw result, the damped state,
and the values the store writes: the operator's `health_status` document, OS and resources.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.core.clock import Clock, worker_clock
from agent.core.concurrency import each
from agent.core.damping import HealthState, InstanceStatus, Policy, next_state
from agent.core.results import ProbeResult, late_result
from agent.probes import instance_facts
from agent.probes.aio import run_probe, start_each_async
from agent.probes.base import InstanceFacts, Probe

ZONE_TAG = "zone:"
HEALTH_QUEUE = "health"


@dataclass(frozen=True)
class InstanceSpec:
    """What a check needs to know about one `infrastructure_instances` row."""

    id: str
    name: str
    connection_type: str | None
    host: str
    port: int | None
    connection_config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    tags: tuple[str, ...] = ()
    state: HealthState = field(default_factory=HealthState)
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class Checked:
    """One instance after its check: the raw result and the state it leads to."""

    spec: InstanceSpec
    result: ProbeResult
    state: HealthState
    checked_at: dt.datetime
    # What the instance row keeps of the check, read by the probe kind's own reader.
    row_facts: InstanceFacts = field(default_factory=InstanceFacts)

    @property
    def changed(self) -> bool:
        """Whether the damped status moved."""
        return self.state.status != self.spec.state.status

    def health_status(self) -> dict[str, Any]:
        """The JSON document an operator reads in `infrastructure_instances.health_status`."""
        return {
            "status": self.state.status.value,
            "checked_at": self.checked_at.isoformat(),
            "consecutive_failures": self.state.consecutive_failures,
            "consecutive_successes": self.state.consecutive_successes,
            "check": self.result.as_dict(),
        }

    def summary(self) -> dict[str, Any]:
        """A JSON summary for task results and the CLI: nothing secret in it."""
        return {
            "instance_id": self.spec.id,
            "name": self.spec.name,
            "previous_status": self.spec.state.status.value,
            **self.health_status(),
        }


def zone_of(tags: Sequence[str]) -> str | None:
    """The zone named by a `zone:<name>` tag, if any."""
    for tag in tags:
        if tag.startswith(ZONE_TAG) and len(tag) > len(ZONE_TAG):
            return tag[len(ZONE_TAG) :]
    return None


def queue_for(tags: Sequence[str]) -> str:
    """`health`, or `health.<zone>` for an instance tagged `zone:<zone>`."""
    zone = zone_of(tags)
    return f"{HEALTH_QUEUE}.{zone}" if zone else HEALTH_QUEUE


def policy_for(connection_config: Mapping[str, Any], default: Policy) -> Policy:
    """The damping policy: the default, unless `connection_config.health` overrides it."""
    override = connection_config.get("health")
    if not isinstance(override, Mapping):
        return default
    failures = _positive(override.get("failures_before_offline"), default.failures_before_offline)
    successes = _positive(override.get("successes_before_online"), default.successes_before_online)
    return Policy(failures, successes)


def _positive(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    )


def state_from(status: str | None, health_status: Mapping[str, Any] | None) -> HealthState:
    """The damped state stored with an instance (unknown when never checked by the agent)."""
    doc = health_status or {}
    try:
        current = InstanceStatus(status or "unknown")
    except ValueError:
        current = InstanceStatus.UNKNOWN
    return HealthState(
        current,
        consecutive_failures=_count(doc.get("consecutive_failures")),
        consecutive_successes=_count(doc.get("consecutive_successes")),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def instance_fields(spec: InstanceSpec) -> dict[str, str]:
    """The log fields of work on one instance."""
    return {"instance_id": spec.id}


def check_one(spec: InstanceSpec, probe: Probe, clock: Clock) -> Checked:
    """Run the probe for `spec` and damp its result; the check is dated when it starts.

    Dating the start keeps a check's time independent of how long its probe took (up to the
    timeout), so the next sweep finds it due one interval later whether it answered or not.
    """
    started = clock.now()
    return concluded(spec, probe.run(), started)


async def check_one_async(spec: InstanceSpec, probe: Probe, clock: Clock) -> Checked:
    """`check_one` for a probe whose check is a coroutine, on the process's loop."""
    started = clock.now()
    return concluded(spec, await run_probe(probe), started)


def concluded(spec: InstanceSpec, result: ProbeResult, started: dt.datetime) -> Checked:
    """The damped outcome of one check's result."""
    state = next_state(spec.state, result, spec.policy)
    return Checked(spec, result, state, started, instance_facts(result))


@dataclass
class _Plan:
    """A batch's probes and each check's start, as offsets from `origin` (monotonic)."""

    specs: Sequence[InstanceSpec]
    probes: Sequence[Probe]
    starts: Sequence[float]
    origin: float
    clock: Clock
    done: Callable[[], None]
    deadline_s: float | None

    def fields(self, index: int) -> dict[str, str]:
        return instance_fields(self.specs[index])

    def late(self, index: int) -> Checked:
        return late_check(self.specs[index], self.deadline_s or 0.0, self.clock)

    def wait_s(self, index: int) -> float:
        return self.origin + self.starts[index] - time.monotonic()

    def on_thread(self, index: int) -> Checked:
        wait_s = self.wait_s(index)
        if wait_s > 0:
            time.sleep(wait_s)
        checked = check_one(self.specs[index], self.probes[index], self.clock)
        self.done()
        return checked

    async def on_loop(self, index: int) -> Checked:
        wait_s = self.wait_s(index)
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        checked = await check_one_async(self.specs[index], self.probes[index], self.clock)
        self.done()  # the task's progress report: throttled to twice a second, so it is brief
        return checked


class UntilClosed:
    """A `done` callback passed on until `close()`, and dropped after it.

    A check still running at its batch's deadline goes on in its thread after the batch has
    returned; its `done()` then must not report progress over the task's final state.
    """

    def __init__(self, done: Callable[[], None]) -> None:
        self._done, self._open, self._lock = done, True, threading.Lock()

    def __call__(self) -> None:
        """Pass the call on, unless closed."""
        with self._lock:
            if self._open:
                self._done()

    def close(self) -> None:
        """Drop every later call (one running now finishes first)."""
        with self._lock:
            self._open = False


def check_all(
    specs: Sequence[InstanceSpec],
    make_probe: Callable[[InstanceSpec], Probe],
    concurrency: int,
    jitter_s: float = 0.0,
    done: Callable[[], None] = lambda: None,
    clock: Clock | None = None,
    deadline_s: float | None = None,
) -> list[Checked]:
    """Check every instance, at most `concurrency` at once, each start delayed by up to jitter.

    Checks that are coroutines (HTTP, TCP) run on the process's event loop while the others
    (SSH, Docker, Kubernetes) run on threads, both groups at once. Start times are drawn up
    front and handed out in order, so a check waits only until its own start is due: jitter
    spreads a batch over `jitter_s` instead of adding its sleeps. `done()` is called after
    each check. Checks are dated by `clock` (the tasks pass the database's); without one, by
    this process's wall clock. A check still running `deadline_s` from now is a TIMEOUT
    (`late_check`), so the rest is written.
    """
    clock = clock or worker_clock()
    report = UntilClosed(done)
    plan = _Plan(
        specs,
        [make_probe(spec) for spec in specs],
        [random.uniform(0, jitter_s) for _ in specs],  # noqa: S311  (load spreading)
        time.monotonic(),
        clock,
        report,
        deadline_s,
    )
    order = sorted(range(len(specs)), key=plan.starts.__getitem__)
    coroutines = [i for i in order if hasattr(plan.probes[i], "acheck")]
    threaded = [i for i in order if not hasattr(plan.probes[i], "acheck")]
    looping = start_each_async(
        plan.on_loop, coroutines, concurrency, plan.fields, deadline_s, plan.late
    )
    on_threads = each(plan.on_thread, threaded, concurrency, plan.fields, deadline_s, plan.late)
    looped = looping.result()
    report.close()
    by_index = dict(zip(threaded, on_threads, strict=True))
    by_index.update(zip(coroutines, looped, strict=True))
    return [by_index[index] for index in range(len(specs))]


def late_check(spec: InstanceSpec, deadline_s: float, clock: Clock) -> Checked:
    """The outcome of a check that had not ended by its batch's deadline: a TIMEOUT.

    It is dated by `clock` (the database's, like every other check), when the deadline passed.
    """
    result = late_result(spec.connection_type or "unknown", deadline_s)
    state = next_state(spec.state, result, spec.policy)
    return Checked(spec, result, state, clock.now(), instance_facts(result))
