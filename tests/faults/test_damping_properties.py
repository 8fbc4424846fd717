"""Property tests of the damping state machine (`agent.core.damping`) on generated histories."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from agent.core.damping import (
    IMMEDIATE,
    HealthState,
    InstanceStatus,
    Policy,
    hard_status,
    next_state,
)
from agent.core.results import ErrorClass, ProbeResult, Status

GOOD = (Status.OK, Status.WARNING)
BAD = (Status.CRITICAL, Status.ERROR)
DAMPED_CLASSES = [c for c in ErrorClass if c not in IMMEDIATE]


def result(status: Status, error_class: ErrorClass | None = None) -> ProbeResult:
    return ProbeResult(kind="ssh", status=status, latency_ms=1.0, error_class=error_class)


successes = st.builds(result, st.sampled_from(GOOD))
damped_failures = st.builds(
    result, st.sampled_from(BAD), st.none() | st.sampled_from(DAMPED_CLASSES)
)
immediate_failures = st.builds(result, st.sampled_from(BAD), st.sampled_from(sorted(IMMEDIATE)))
results = successes | damped_failures | immediate_failures
policies = st.builds(Policy, st.integers(1, 6), st.integers(1, 6))
states = st.builds(
    HealthState, st.sampled_from(InstanceStatus), st.integers(0, 8), st.integers(0, 8)
)
fresh_states = st.builds(HealthState, st.sampled_from(InstanceStatus))


def is_success(r: ProbeResult) -> bool:
    return r.status in GOOD


def run(state: HealthState, history: list[ProbeResult], policy: Policy) -> list[HealthState]:
    """Every state the machine passes through, the starting one first."""
    seen = [state]
    for r in history:
        seen.append(next_state(seen[-1], r, policy))
    return seen


@given(states, results, policies)
def test_every_result_extends_its_own_run_and_ends_the_other(state, r, policy):
    """The counters count the current run of like results, whatever came before."""
    after = next_state(state, r, policy)
    if is_success(r):
        assert (after.consecutive_successes, after.consecutive_failures) == (
            state.consecutive_successes + 1,
            0,
        )
    else:
        assert (after.consecutive_failures, after.consecutive_successes) == (
            state.consecutive_failures + 1,
            0,
        )


@given(states, results, policies)
def test_a_success_never_makes_things_worse_and_a_failure_never_better(state, r, policy):
    """A success can only lead to online; a failure only to offline or error."""
    after = next_state(state, r, policy)
    bad = {InstanceStatus.OFFLINE, InstanceStatus.ERROR}
    allowed = {InstanceStatus.ONLINE} if is_success(r) else bad
    assert after.status == state.status or after.status in allowed


@given(states, damped_failures, policies)
def test_a_damped_failure_changes_status_only_once_the_threshold_is_reached(state, r, policy):
    """Below N failures in a row the status stays; at N it is the failure's hard status."""
    after = next_state(state, r, policy)
    if after.consecutive_failures < policy.failures_before_offline:
        assert after.status == state.status
    else:
        assert after.status == hard_status(r)


@given(states, successes, policies)
def test_a_failed_instance_comes_back_only_after_m_successes_in_a_row(state, r, policy):
    """Offline or error turns online at the M-th success in a row, not before."""
    after = next_state(state, r, policy)
    if state.status in (InstanceStatus.OFFLINE, InstanceStatus.ERROR):
        enough = after.consecutive_successes >= policy.successes_before_online
        assert (after.status == InstanceStatus.ONLINE) == enough
    else:
        assert after.status == InstanceStatus.ONLINE


@given(states, immediate_failures, policies)
def test_a_failure_waiting_cannot_fix_is_an_error_at_once(state, r, policy):
    """A changed host key, a bad configuration or an unsupported type needs no run of failures."""
    assert next_state(state, r, policy).status == InstanceStatus.ERROR


@given(states, damped_failures, policies)
def test_n_damped_failures_in_a_row_settle_on_the_hard_status_of_the_last(state, r, policy):
    """Whatever the state, N failures in a row decide the status: offline if unreachable."""
    [*_, last] = run(state, [r] * policy.failures_before_offline, policy)
    expected = InstanceStatus.OFFLINE if not r.reachable else InstanceStatus.ERROR
    assert last.status == expected


@given(states, successes, policies)
def test_m_successes_in_a_row_always_make_an_instance_online(state, r, policy):
    """Whatever the state, M successes in a row make it online."""
    [*_, last] = run(state, [r] * policy.successes_before_online, policy)
    assert last.status == InstanceStatus.ONLINE


@given(
    fresh_states,
    st.lists(st.tuples(successes, damped_failures), min_size=1, max_size=20),
    st.booleans(),
    st.builds(Policy, st.integers(2, 6), st.integers(2, 6)),
)
def test_alternating_results_never_make_the_status_flap(state, pairs, failure_first, policy):
    """With N, M >= 2, success/failure alternation moves status at most once: unknown to online."""
    history = [r for pair in pairs for r in (pair[::-1] if failure_first else pair)]
    statuses = [s.status for s in run(state, history, policy)]
    changes = [(a, b) for a, b in itertools.pairwise(statuses) if a != b]
    assert changes in ([], [(InstanceStatus.UNKNOWN, InstanceStatus.ONLINE)])


@given(fresh_states, st.lists(results, max_size=30), policies)
def test_offline_is_only_ever_reached_through_an_unreachable_target(state, history, policy):
    """A status newly offline always follows a failure that did not reach the target."""
    seen = run(state, history, policy)
    for before, r, after in zip(seen[:-1], history, seen[1:], strict=True):
        if after.status == InstanceStatus.OFFLINE != before.status:
            assert not is_success(r)
            assert not r.reachable
