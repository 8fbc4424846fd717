"""What a plugin check concludes: its health word, its damped status, since when and why.

`health_status` is the verdict of this one check, in a fixed vocabulary; `status` is damped
with `agent.core.damping` (N failures in a row before `error`, M successes before `active`).
The damping machine's ONLINE is a plugin's `active`, OFFLINE and ERROR are its `error`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.core.damping import HealthState, InstanceStatus, Policy, next_state
from agent.core.results import ErrorClass, ProbeResult, Status

ACTIVE = "active"
ERROR = "error"


class Health(StrEnum):
    """The vocabulary of a plugin's `health_status`."""

    HEALTHY = "healthy"  # answered, and says it is fine
    DEGRADED = "degraded"  # answered, and says something is wrong but it works
    UNHEALTHY = "unhealthy"  # answered with a failure, or refused our credentials or TLS
    UNREACHABLE = "unreachable"  # no answer: DNS, refused, timeout
    UNKNOWN = "unknown"  # cannot be checked from a worker (stdio, unsupported transport)


def health_of(result: ProbeResult) -> Health:
    """The health word of one check result."""
    if result.status is Status.OK:
        return Health.HEALTHY
    if result.status is Status.WARNING:
        return Health.DEGRADED
    if result.error_class is ErrorClass.UNSUPPORTED:
        return Health.UNKNOWN
    return Health.UNHEALTHY if result.reachable else Health.UNREACHABLE


@dataclass(frozen=True)
class Prior:
    """What the database says about a plugin before this check."""

    status: str | None = ACTIVE
    health_status: str | None = None
    since: dt.datetime | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0

    def damping_state(self) -> HealthState:
        """The damping machine's state for this plugin's status."""
        current = InstanceStatus.ERROR if self.status == ERROR else InstanceStatus.ONLINE
        return HealthState(current, self.consecutive_failures, self.consecutive_successes)


@dataclass(frozen=True)
class PluginChecked:
    """One plugin after its check: the raw result and everything the store writes."""

    plugin_type: str
    plugin_id: str
    name: str
    result: ProbeResult
    prior: Prior
    health: Health
    status: str | None
    state: HealthState
    checked_at: dt.datetime
    since: dt.datetime
    flags: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the damped status moved."""
        return self.status != self.prior.status

    @property
    def reason(self) -> str | None:
        """Why the plugin is not healthy, in one line; None when it is."""
        if self.health is Health.HEALTHY:
            return None
        return self.result.message or str(self.result.error_class or self.health.value)

    def summary(self) -> dict[str, Any]:
        """A JSON summary for task results and the CLI: nothing secret in it."""
        return {
            "plugin_type": self.plugin_type,
            "id": self.plugin_id,
            "name": self.name,
            "health_status": self.health.value,
            "status": self.status,
            "previous_status": self.prior.status,
            "since": self.since.isoformat(),
            "checked_at": self.checked_at.isoformat(),
            "reason": self.reason,
            "latency_ms": round(self.result.latency_ms, 3),
            "error_class": self.result.error_class.value if self.result.error_class else None,
            **self.flags,
        }


def conclude(
    plugin_type: str,
    plugin_id: str,
    name: str,
    result: ProbeResult,
    prior: Prior,
    policy: Policy,
    flags: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    checked_at: dt.datetime | None = None,
) -> PluginChecked:
    """Damp `result` against `prior`; a plugin that cannot be checked keeps its status.

    The check is dated `checked_at` (the tasks pass the database's time when it started);
    without one, by this process's wall clock.
    """
    health = health_of(result)
    now = checked_at or dt.datetime.now(dt.UTC)
    if health is Health.UNKNOWN:
        health, state, status = Health.UNKNOWN, prior.damping_state(), prior.status
    else:
        state = next_state(prior.damping_state(), result, policy)
        status = ACTIVE if state.status is InstanceStatus.ONLINE else ERROR
    same = prior.health_status == health.value and prior.since is not None
    since = prior.since if same and prior.since else now
    return PluginChecked(
        plugin_type,
        plugin_id,
        name,
        result,
        prior,
        health,
        status,
        state,
        checked_at=now,
        since=since,
        flags=dict(flags or {}),
        details=dict(details or {}),
    )
