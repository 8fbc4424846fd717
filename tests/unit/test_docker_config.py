import socket

import paramiko
import pytest
import requests
from docker.errors import APIError, DockerException
from pydantic import ValidationError
from urllib3.exceptions import ProtocolError

from agent.connections.docker import DEFAULT_DOCKER_HOST, Config, error_class
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Status
from agent.probes.docker import count_states, from_instance, verdict

pytestmark = pytest.mark.timeout(10)

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CANARY_KEY = "-----BEGIN PRIVATE KEY-----\ncanary-7d1e\n-----END PRIVATE KEY-----"
TLS = {"ca_cert": PEM_CERT, "client_cert": PEM_CERT, "client_key": "env:AGENT_SECRET_DOCKER_KEY"}


def test_with_neither_docker_host_nor_port_the_probe_uses_podmans_socket():
    assert Config(host="db1").endpoint == DEFAULT_DOCKER_HOST == "unix:///run/podman/podman.sock"


def test_an_instance_port_means_tcp_to_the_instance_host_with_tls():
    config = Config(host="db1.internal", port=2376, **TLS)
    assert (config.endpoint, config.scheme, config.uses_tls) == (
        "tcp://db1.internal:2376",
        "tcp",
        True,
    )


def test_docker_host_wins_over_the_instance_host_and_port():
    config = Config(host="db1", port=2376, docker_host="unix:///var/run/docker.sock")
    assert (config.endpoint, config.uses_tls) == ("unix:///var/run/docker.sock", False)


def test_plain_tcp_needs_tls_turned_off_explicitly():
    assert Config(docker_host="tcp://10.0.0.5:2375", tls=False).uses_tls is False
    assert Config(docker_host="tcp://10.0.0.5:2376").uses_tls is True


def test_an_ssh_endpoint_is_accepted_as_the_docker_cli_spells_it():
    assert Config(docker_host="ssh://ops@build-7:2222").scheme == "ssh"


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"docker_host": "http://h:2375"}, "docker_host must start with one of unix, tcp, ssh"),
        ({"docker_host": "npipe:////./pipe/docker_engine"}, "must start with one of"),
        ({"docker_host": "unix://run/docker.sock"}, "absolute socket path"),
        ({"docker_host": "tcp://h"}, "needs a port"),
        ({"docker_host": "ssh://"}, "needs a host name"),
        ({"docker_host": "unix:///x.sock", "ca_cert": PEM_CERT}, "ca_cert only apply to a tcp://"),
        ({"docker_host": "tcp://h:2375", "tls": False, **TLS}, "only apply to a tcp:// endpoint"),
        ({"docker_host": "tcp://h:1", "client_cert": PEM_CERT}, "client_cert and client_key go"),
        ({"docker_host": "tcp://h:1", "ca_cert": "/etc/ca.pem"}, "PEM text or a secret reference"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"socket": "/x"}, "Extra inputs are not permitted"),
    ],
)
def test_configs_the_probe_cannot_use_are_refused_with_a_reason(fields, complaint):
    with pytest.raises(ValidationError, match=complaint):
        Config(**fields)


def test_a_clear_text_client_key_is_refused_without_being_echoed():
    fields = {**TLS, "docker_host": "tcp://h:2376", "client_key": CANARY_KEY}
    with pytest.raises(ValidationError, match="must be a secret reference") as caught:
        Config(**fields)
    assert "canary-7d1e" not in str(caught.value)


def test_certificates_may_be_given_as_references():
    config = Config(docker_host="tcp://h:2376", ca_cert="file:/etc/agent/ca.pem")
    assert config.ca_cert == "file:/etc/agent/ca.pem"


def test_a_bad_config_becomes_a_config_result_that_reveals_nothing():
    config = {"docker_host": "tcp://h:2376", **TLS, "client_key": CANARY_KEY}
    result = from_instance("h", None, config, SecretResolver(None), 1.0).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    assert result.message == (
        "connection_config is invalid: client_key must be a secret reference (enc:, env: or file:)"
    )


def test_a_key_reference_that_cannot_be_resolved_is_a_config_result(monkeypatch):
    monkeypatch.delenv("AGENT_SECRET_DOCKER_KEY", raising=False)
    result = from_instance("h", 2376, TLS, SecretResolver(None), 1.0).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    assert "AGENT_SECRET_DOCKER_KEY is not set" in result.message


def test_containers_are_counted_by_state_with_every_usual_state_present():
    listed = [
        {"State": "running"},
        {"State": "running"},
        {"State": "exited"},
        {"State": "removing"},
    ]
    assert count_states(listed) == {
        "running": 2,
        "exited": 1,
        "paused": 0,
        "created": 0,
        "restarting": 0,
        "dead": 0,
        "removing": 1,
    }


@pytest.mark.parametrize(
    ("unhealthy", "restarting", "expected"),
    [
        (0, 0, (Status.OK, "")),
        (1, 0, (Status.WARNING, "1 container unhealthy")),
        (0, 2, (Status.WARNING, "2 containers restarting")),
        (2, 1, (Status.WARNING, "2 containers unhealthy, 1 container restarting")),
    ],
)
def test_unhealthy_or_restarting_containers_make_a_warning(unhealthy, restarting, expected):
    assert verdict({"restarting": restarting}, {"unhealthy": unhealthy}) == expected


def wrapped(inner: BaseException) -> DockerException:
    """What the docker SDK raises: its own exception, caused by requests, caused by urllib3."""
    try:
        try:
            raise requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", inner))
        except requests.exceptions.ConnectionError as exc:
            raise DockerException("Error while fetching server API version") from exc
    except DockerException as outer:
        return outer


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (FileNotFoundError(2, "No such file or directory"), ErrorClass.UNREACHABLE),
        (ConnectionRefusedError(111, "Connection refused"), ErrorClass.REFUSED),
        (socket.gaierror(-2, "Name or service not known"), ErrorClass.DNS),
        (TimeoutError("timed out"), ErrorClass.TIMEOUT),
        (ConnectionResetError(104, "Connection reset by peer"), ErrorClass.PROTOCOL),
        (paramiko.AuthenticationException("no key"), ErrorClass.AUTH),
        (paramiko.SSHException("Server 'h' not found in known_hosts"), ErrorClass.HOST_KEY),
        (ValueError("odd"), ErrorClass.PROTOCOL),
    ],
)
def test_docker_sdk_failures_are_classified_by_what_they_wrap(inner, expected):
    assert error_class(wrapped(inner)) is expected


def test_an_api_error_is_a_protocol_error():
    assert error_class(APIError("500 Server Error")) is ErrorClass.PROTOCOL


def test_a_refused_ssh_connection_is_refused_not_merely_unreachable():
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 22): ConnectionRefusedError(111, "Connection refused")}
    )
    assert error_class(refused) is ErrorClass.REFUSED
