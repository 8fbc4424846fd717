import socket
import ssl

import pytest

from agent.core.results import (
    MAX_MESSAGE_CHARS,
    SCRUBBED,
    ErrorClass,
    Observation,
    ProbeError,
    Status,
    classify,
    scrub,
)
from agent.probes.base import Probe

pytestmark = pytest.mark.timeout(10)

SECRET = "canary-s3cret-value"


class Raising(Probe):
    kind = "test"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(timeout_s=1.0)
        self.exc = exc

    def check(self) -> Observation:
        raise self.exc

    def secrets(self):
        return [SECRET]


class Returning(Probe):
    kind = "test"

    def __init__(self, seen: Observation) -> None:
        super().__init__(timeout_s=1.0)
        self.seen = seen

    def check(self) -> Observation:
        return self.seen

    def secrets(self):
        return [SECRET]


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (socket.gaierror(-2, "Name or service not known"), ErrorClass.DNS),
        (ConnectionRefusedError(111, "Connection refused"), ErrorClass.REFUSED),
        (TimeoutError("timed out"), ErrorClass.TIMEOUT),
        (ssl.SSLCertVerificationError("certificate verify failed"), ErrorClass.TLS),
        (OSError(113, "No route to host"), ErrorClass.UNREACHABLE),
        (ProbeError(ErrorClass.HOST_KEY, "changed"), ErrorClass.HOST_KEY),
        (KeyError("surprise"), ErrorClass.INTERNAL),
    ],
)
def test_standard_failures_are_classified(exc, error_class):
    assert classify(exc) is error_class


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ConnectionRefusedError(111, "refused"), Status.CRITICAL),
        (TimeoutError(), Status.CRITICAL),
        (ProbeError(ErrorClass.AUTH, "denied"), Status.ERROR),
        (RuntimeError("bug in a probe"), Status.ERROR),
    ],
)
def test_run_turns_every_failure_into_a_result(exc, status):
    result = Raising(exc).run()
    assert result.status is status
    assert result.error_class is classify(exc)
    assert result.latency_ms >= 0


def test_an_exception_without_a_message_is_named_by_its_type():
    assert Raising(TimeoutError()).run().message == "TimeoutError"


def test_unreachable_results_say_so():
    assert not Raising(ConnectionRefusedError()).run().reachable
    assert Raising(ProbeError(ErrorClass.AUTH, "no")).run().reachable


def test_a_keyboard_interrupt_is_not_swallowed():
    with pytest.raises(KeyboardInterrupt):
        Raising(KeyboardInterrupt()).run()


def test_secrets_are_scrubbed_from_failure_messages():
    result = Raising(ProbeError(ErrorClass.AUTH, f"login with {SECRET} refused")).run()
    assert SECRET not in str(result.as_dict())
    assert SCRUBBED in result.message


def test_secrets_are_scrubbed_from_observation_messages():
    result = Returning(Observation(status=Status.WARNING, message=f"saw {SECRET}")).run()
    assert result.status is Status.WARNING
    assert result.message == f"saw {SCRUBBED}"


def test_an_observation_becomes_the_result():
    seen = Observation(facts={"cpu_count": 2}, checks={"x.ok": Status.OK})
    result = Returning(seen).run()
    assert (result.status, result.error_class) == (Status.OK, None)
    assert result.as_dict()["facts"] == {"cpu_count": 2}
    assert result.as_dict()["checks"] == {"x.ok": "ok"}


@pytest.mark.parametrize(
    "message",
    ["password=hunter2", "Password: hunter2", "token = hunter2", "Authorization: hunter2"],
)
def test_things_that_look_like_assignments_of_secrets_are_scrubbed(message):
    assert "hunter2" not in scrub(message)


def test_the_longest_secret_is_scrubbed_first():
    assert scrub("abcdef", ["abc", "abcdef"]) == SCRUBBED


def test_empty_secrets_are_ignored():
    assert scrub("plain message", [""]) == "plain message"


def test_messages_are_capped():
    assert len(scrub("x" * 10_000)) == MAX_MESSAGE_CHARS


@pytest.mark.parametrize("kind", ["http", "kubernetes", "ssh"])
def test_a_secret_encrypted_with_another_key_is_a_transient_config_error(kind):
    from agent.core.credentials import SecretResolver, generate_key
    from agent.probes import probe_for

    foreign = SecretResolver(generate_key()).encrypt("canary-foreign-key")
    field = {"http": "bearer_token", "kubernetes": "token", "ssh": "password"}[kind]
    config = {field: foreign, "username": "u"} if kind == "ssh" else {field: foreign}
    mine = SecretResolver(generate_key())
    result = probe_for(kind, "127.0.0.1", 1, config, mine, 1.0).run()
    assert (result.error_class, result.transient) == (ErrorClass.CONFIG, True)
    assert "does not match AGENT_SECRET_KEY" in result.message


def test_a_refused_reference_is_a_config_error_that_is_not_transient():
    from agent.core.credentials import SecretResolver
    from agent.probes import probe_for

    config = {"bearer_token": "env:AGENT_SECRET_KEY"}
    result = probe_for("http", "127.0.0.1", 1, config, SecretResolver(None), 1.0).run()
    assert (result.error_class, result.transient) == (ErrorClass.CONFIG, False)
