import os
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.connections import docker as engine_api
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Status
from agent.core.secret_scope import SecretScope
from agent.probes import docker as docker_probe
from tests.support.network import free_port

pytestmark = pytest.mark.timeout(120)

NO_KEY = SecretResolver(None)


def probe(config: dict, timeout_s: float = 10.0) -> docker_probe.DockerProbe:
    return docker_probe.from_instance("podman.test", None, config, NO_KEY, timeout_s)


def on_socket(path: Path, timeout_s: float = 10.0) -> docker_probe.DockerProbe:
    return probe({"docker_host": f"unix://{path}"}, timeout_s)


def tls_config(endpoint, key_reference: str) -> dict:
    return {
        "docker_host": endpoint.url,
        "ca_cert": endpoint.ca_cert,
        "client_cert": endpoint.client_cert,
        "client_key": key_reference,
    }


def test_the_probe_reports_the_engine_and_counts_containers_by_state_and_health(
    podman_socket, podman_containers
):
    result = on_socket(podman_socket).run()
    assert (result.status, result.error_class, result.message) == (Status.OK, None, "")
    by_state = result.facts["containers_by_state"]
    assert {state: by_state[state] for state in podman_containers.by_state} == (
        podman_containers.by_state
    )
    assert by_state["dead"] == 0
    assert result.facts["containers_by_health"] == podman_containers.by_health
    assert result.checks == {
        "docker.can_connect": Status.OK,
        "docker.containers_healthy": Status.OK,
    }


def test_the_probe_reports_what_version_and_info_say(podman_socket, podman_containers):
    facts = on_socket(podman_socket).run().facts
    assert facts["endpoint"] == f"unix://{podman_socket}"
    assert facts["engine"]["os"] == "linux"
    assert facts["engine"]["api_version"].startswith("1.")
    assert facts["engine"]["kernel_version"] == os.uname().release
    assert facts["host"]["ncpu"] == os.cpu_count()
    assert facts["host"]["mem_total_bytes"] > 0
    assert facts["containers"]["total"] == len(podman_containers.ids)
    assert facts["containers"]["paused"] == 1


def test_an_unhealthy_container_turns_the_result_into_a_warning(podman_socket, unhealthy_container):
    result = on_socket(podman_socket).run()
    assert result.status is Status.WARNING
    assert result.message == "1 container unhealthy"
    assert result.facts["containers_by_health"]["unhealthy"] == 1
    assert result.checks["docker.containers_healthy"] is Status.WARNING
    assert result.checks["docker.can_connect"] is Status.OK


def test_a_socket_that_vanishes_gives_a_clear_unreachable_result(short_lived_podman):
    checker = on_socket(short_lived_podman.socket_path, timeout_s=5)
    assert checker.run().status is Status.OK
    short_lived_podman.stop()
    started = time.monotonic()
    result = checker.run()
    assert time.monotonic() - started < 2
    assert (result.status, result.error_class) == (Status.CRITICAL, ErrorClass.UNREACHABLE)
    assert result.message == f"Docker socket {short_lived_podman.socket_path} does not exist"
    assert not result.reachable


def test_a_socket_nobody_listens_on_any_more_is_refused(tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))
    result = on_socket(path).run()
    assert (result.status, result.error_class) == (Status.CRITICAL, ErrorClass.REFUSED)
    assert result.message == f"Docker socket {path} refuses connections: nothing listens on it"


def test_a_path_that_is_not_a_socket_is_a_config_error(tmp_path):
    path = tmp_path / "podman.sock"
    path.write_text("not a socket")
    result = on_socket(path).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    assert result.message == f"Docker endpoint {path} is not a socket"


def test_a_socket_that_never_answers_times_out_without_hanging(tmp_path):
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(str(path))
        silent.listen(8)
        started = time.monotonic()
        result = on_socket(path, timeout_s=0.5).run()
    assert time.monotonic() - started < 5
    assert (result.status, result.error_class) == (Status.CRITICAL, ErrorClass.TIMEOUT)
    assert result.message == f"unix://{path}: no answer within 0.5s"


def test_a_tcp_endpoint_nobody_listens_on_is_refused():
    result = probe({"docker_host": f"tcp://127.0.0.1:{free_port()}", "tls": False}).run()
    assert (result.status, result.error_class) == (Status.CRITICAL, ErrorClass.REFUSED)


def test_an_ssh_endpoint_nobody_listens_on_is_refused():
    result = probe({"docker_host": f"ssh://agent@127.0.0.1:{free_port()}"}).run()
    assert (result.status, result.error_class) == (Status.CRITICAL, ErrorClass.REFUSED)


def test_a_tls_endpoint_is_checked_with_client_certificates(
    podman_tls_endpoint, podman_containers, monkeypatch
):
    monkeypatch.setenv(
        "AGENT_SECRET_TEST_DOCKER_KEY", podman_tls_endpoint.client_key_path.read_text()
    )
    result = probe(tls_config(podman_tls_endpoint, "env:AGENT_SECRET_TEST_DOCKER_KEY")).run()
    assert (result.status, result.error_class) == (Status.OK, None)
    assert result.facts["endpoint"] == podman_tls_endpoint.url
    assert result.facts["containers_by_health"] == podman_containers.by_health


class WatchedProbe(docker_probe.DockerProbe):
    """A probe that notes the TLS files' modes while its client is alive."""

    modes: dict[str, int]

    @contextmanager
    def client(self, config):
        with super().client(config) as api:
            folder = Path(api.cert[1]).parent
            self.modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
            self.modes["."] = stat.S_IMODE(folder.stat().st_mode)
            yield api


def test_tls_material_is_private_while_in_use_and_gone_afterwards(
    podman_tls_endpoint, tmp_path, monkeypatch
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = tls_config(podman_tls_endpoint, f"file:{podman_tls_endpoint.client_key_path}")
    scope = SecretScope(file_dirs=(str(podman_tls_endpoint.client_key_path.parent),))
    checker = WatchedProbe({"host": "", **config}, SecretResolver(None, scope), 10.0)
    assert checker.run().status is Status.OK
    assert checker.modes == {
        ".": 0o700,
        "ca_cert.pem": 0o600,
        "client_cert.pem": 0o600,
        "client_key.pem": 0o600,
    }
    assert list(tmp_path.iterdir()) == []


def test_a_server_certificate_from_another_ca_is_a_tls_error(
    podman_tls_endpoint, untrusted_tls_url, monkeypatch
):
    key = podman_tls_endpoint.client_key_path.read_text()
    monkeypatch.setenv("AGENT_SECRET_TEST_DOCKER_KEY", key)
    config = tls_config(podman_tls_endpoint, "env:AGENT_SECRET_TEST_DOCKER_KEY")
    result = probe({**config, "docker_host": untrusted_tls_url}).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.TLS)
    assert "CERTIFICATE_VERIFY_FAILED" in result.message
    assert result.message.startswith(untrusted_tls_url)
    assert key.splitlines()[1] not in result.message


def test_a_client_without_a_certificate_is_turned_away_with_a_tls_error(podman_tls_endpoint):
    config = {"docker_host": podman_tls_endpoint.url, "ca_cert": podman_tls_endpoint.ca_cert}
    result = probe(config).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.TLS)


def test_plain_http_to_a_tls_endpoint_is_a_protocol_error(podman_tls_endpoint):
    result = probe({"docker_host": podman_tls_endpoint.url, "tls": False}).run()
    assert result.error_class is ErrorClass.PROTOCOL


def test_a_missing_key_reference_is_a_config_error_that_reveals_no_secret(
    podman_tls_endpoint, monkeypatch
):
    monkeypatch.delenv("AGENT_SECRET_TEST_ABSENT_KEY", raising=False)
    result = probe(tls_config(podman_tls_endpoint, "env:AGENT_SECRET_TEST_ABSENT_KEY")).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    assert (
        result.message
        == "environment variable AGENT_SECRET_TEST_ABSENT_KEY is not set on this worker"
    )


def test_the_client_builder_lists_containers_for_other_jobs(podman_socket, podman_containers):
    config = engine_api.Config(docker_host=f"unix://{podman_socket}")
    with engine_api.client_for(config, NO_KEY, 10.0) as api:
        listed = api.containers(all=True, filters={"label": "agent.test/role=web"})
    assert [item["Labels"]["agent.test/tier"] for item in listed] == ["front"]
    assert listed[0]["Ports"][0]["PublicPort"] == podman_containers.published_port
