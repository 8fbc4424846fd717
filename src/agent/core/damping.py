"""Status damping: one bad check does not make an instance offline, one good one not online.

In the spirit of Icinga's `max_check_attempts` (a host is hard DOWN after N failed checks in
a row) and Consul's `success_before_passing` (M passes in a row before passing again). Raw
results always go to history; only the instance's `status` is damped.

Failures the target cannot recover from by itself (a changed host key, a bad configuration,
an unsupported connection type, a target the address policy refuses) are reported at once:
waiting would only hide them. Except an `enc:` secret this worker cannot decrypt (class
`config`, but `transient`): a worker with another key is damped like any other failure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from agent.core.results import ErrorClass, ProbeResult, Status


class InstanceStatus(StrEnum):
    """The vocabulary of `infrastructure_instances.status`."""

    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"
    UNKNOWN = "unknown"


IMMEDIATE = frozenset(
    {ErrorClass.HOST_KEY, ErrorClass.CONFIG, ErrorClass.UNSUPPORTED, ErrorClass.POLICY}
)


@dataclass(frozen=True)
class Policy:
    """How many results in a row it takes to change status."""

    failures_before_offline: int = 3
    successes_before_online: int = 2


@dataclass(frozen=True)
class HealthState:
    """An instance's damped status and the run of results behind it."""

    status: InstanceStatus = InstanceStatus.UNKNOWN
    consecutive_failures: int = 0
    consecutive_successes: int = 0


def next_state(state: HealthState, result: ProbeResult, policy: Policy) -> HealthState:
    """The state after `result`."""
    if result.status in (Status.OK, Status.WARNING):
        return _after_success(state, policy)
    return _after_failure(state, result, policy)


def _after_success(state: HealthState, policy: Policy) -> HealthState:
    successes = state.consecutive_successes + 1
    recovered = state.status in (InstanceStatus.ONLINE, InstanceStatus.UNKNOWN)
    if recovered or successes >= policy.successes_before_online:
        status = InstanceStatus.ONLINE
    else:
        status = state.status
    return HealthState(status, consecutive_failures=0, consecutive_successes=successes)


def _after_failure(state: HealthState, result: ProbeResult, policy: Policy) -> HealthState:
    failures = state.consecutive_failures + 1
    failed = replace(state, consecutive_failures=failures, consecutive_successes=0)
    if result.error_class in IMMEDIATE and not result.transient:
        return replace(failed, status=InstanceStatus.ERROR)
    if failures < policy.failures_before_offline:
        return failed
    return replace(failed, status=hard_status(result))


def hard_status(result: ProbeResult) -> InstanceStatus:
    """The status a failure earns once it has lasted: offline if unreachable, else error."""
    return InstanceStatus.OFFLINE if not result.reachable else InstanceStatus.ERROR
