import time

import pytest

from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Status
from agent.probes import tcp

pytestmark = pytest.mark.timeout(30)


def probe(port, timeout_s=2.0, host="127.0.0.1", **config):
    return tcp.from_instance(host, port, config, SecretResolver(None), timeout_s)


def test_a_listening_port_is_ok_with_its_connect_time(silent_port):
    result = probe(silent_port).run()
    assert result.status is Status.OK
    assert 0 <= result.facts["connect_ms"] < 1000
    assert "banner" not in result.facts


def test_the_banner_of_a_real_sshd_is_reported(sshd):
    result = probe(sshd.port, read_banner=True).run()
    assert result.status is Status.OK
    assert result.facts["banner"].startswith("SSH-2.0-OpenSSH")


def test_a_server_that_sends_no_banner_times_out_when_one_is_asked_for(silent_port):
    started = time.monotonic()
    result = probe(silent_port, timeout_s=0.5, read_banner=True).run()
    assert result.error_class is ErrorClass.TIMEOUT
    assert time.monotonic() - started < 1.5


def test_a_closed_port_is_refused(closed_port):
    result = probe(closed_port).run()
    assert result.error_class is ErrorClass.REFUSED
    assert result.status is Status.CRITICAL
    assert not result.reachable


def test_an_unknown_host_is_a_dns_error():
    result = probe(80, host="no-such-host.invalid").run()
    assert result.error_class is ErrorClass.DNS


def test_a_missing_port_is_a_config_error():
    result = probe(None).run()
    assert result.error_class is ErrorClass.CONFIG
    assert "port" in result.message


def test_the_port_in_connection_config_is_used_when_the_instance_has_none(silent_port):
    result = tcp.from_instance("127.0.0.1", None, {"port": silent_port}, SecretResolver(None), 2.0)
    assert result.run().status is Status.OK
