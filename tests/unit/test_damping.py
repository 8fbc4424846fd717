import pytest

from agent.core.damping import HealthState, InstanceStatus, Policy, next_state
from agent.core.results import ErrorClass, ProbeResult, Status

POLICY = Policy(failures_before_offline=3, successes_before_online=2)
OK = ProbeResult(kind="ssh", status=Status.OK, latency_ms=1.0)
WARN = ProbeResult(kind="ssh", status=Status.WARNING, latency_ms=1.0)
DOWN = ProbeResult(
    kind="ssh", status=Status.CRITICAL, latency_ms=1.0, error_class=ErrorClass.TIMEOUT
)
AUTH = ProbeResult(kind="ssh", status=Status.ERROR, latency_ms=1.0, error_class=ErrorClass.AUTH)
HOST_KEY = ProbeResult(
    kind="ssh", status=Status.ERROR, latency_ms=1.0, error_class=ErrorClass.HOST_KEY
)
FAILING = ProbeResult(kind="http", status=Status.CRITICAL, latency_ms=1.0)


def run(results, state=None):
    state = state or HealthState()
    for result in results:
        state = next_state(state, result, POLICY)
    return state


def test_a_new_instance_that_answers_is_online_at_once():
    assert run([OK]).status == InstanceStatus.ONLINE


def test_an_online_instance_stays_online_through_two_failures():
    state = run([OK, DOWN, DOWN])
    assert state.status == InstanceStatus.ONLINE
    assert state.consecutive_failures == 2


def test_the_third_failure_in_a_row_makes_it_offline():
    assert run([OK, DOWN, DOWN, DOWN]).status == InstanceStatus.OFFLINE


def test_a_success_between_failures_resets_the_count():
    assert run([OK, DOWN, DOWN, OK, DOWN, DOWN]).status == InstanceStatus.ONLINE


def test_an_offline_instance_needs_two_successes_to_be_online_again():
    offline = run([DOWN, DOWN, DOWN])
    assert run([OK], offline).status == InstanceStatus.OFFLINE
    assert run([OK, WARN], offline).status == InstanceStatus.ONLINE


def test_a_lasting_authentication_failure_is_an_error_not_offline():
    assert run([OK, AUTH, AUTH, AUTH]).status == InstanceStatus.ERROR


def test_a_reachable_target_that_keeps_failing_is_an_error():
    assert run([OK, FAILING, FAILING, FAILING]).status == InstanceStatus.ERROR


def test_a_changed_host_key_is_an_error_at_once():
    assert run([OK, HOST_KEY]).status == InstanceStatus.ERROR


@pytest.mark.parametrize("failures", [1, 2])
def test_a_new_instance_that_never_answered_stays_unknown_until_the_threshold(failures):
    assert run([DOWN] * failures).status == InstanceStatus.UNKNOWN


UNDECRYPTABLE = ProbeResult(
    kind="ssh", status=Status.ERROR, latency_ms=1.0, error_class=ErrorClass.CONFIG, transient=True
)
POLICY_REFUSED = ProbeResult(
    kind="http", status=Status.ERROR, latency_ms=1.0, error_class=ErrorClass.POLICY
)


def test_a_secret_this_worker_cannot_decrypt_is_damped_like_any_failure():
    assert run([OK, UNDECRYPTABLE, UNDECRYPTABLE]).status == InstanceStatus.ONLINE
    assert run([OK, UNDECRYPTABLE, UNDECRYPTABLE, UNDECRYPTABLE]).status == InstanceStatus.ERROR


def test_a_target_the_address_policy_refuses_is_an_error_at_once():
    assert run([OK, POLICY_REFUSED]).status == InstanceStatus.ERROR
