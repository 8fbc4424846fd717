"""Pure logic of the Kubernetes probe: config parsing, kubeconfig reading, quantities, readiness."""

from __future__ import annotations

import base64

import pytest
import yaml

from agent.connections import kubernetes as kube
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, ProbeError, Status
from agent.probes import kubernetes
from tests.support.kube_apiserver import generate_ca_pem, kubeconfig

pytestmark = pytest.mark.timeout(10)

CA_PEM = generate_ca_pem()


@pytest.fixture
def resolver() -> SecretResolver:
    return SecretResolver(None)


def config_error(connection_config: dict, host: str = "k8s.example") -> str:
    with pytest.raises(ProbeError) as caught:
        kube.parse_config(host, None, connection_config)
    assert caught.value.error_class is ErrorClass.CONFIG
    return str(caught.value)


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [("4", 4.0), ("3500m", 3.5), ("250m", 0.25), ("0.5", 0.5), ("1k", 1000.0)],
)
def test_cpu_quantities_become_cores(quantity, cores):
    assert kubernetes.cpu_cores(quantity) == cores


@pytest.mark.parametrize(
    ("quantity", "size"),
    [
        ("16Gi", 16 * 1024**3),
        ("512Mi", 512 * 1024**2),
        ("8047912Ki", 8047912 * 1024),
        ("1k", 1000),
        ("500M", 500 * 10**6),
        ("2G", 2 * 10**9),
        ("1E", 10**18),
        ("1Ei", 2**60),
        ("123456", 123456),
    ],
)
def test_memory_quantities_become_bytes(quantity, size):
    assert kubernetes.memory_bytes(quantity) == size


@pytest.mark.parametrize("quantity", ["lots", "12Qi", ""])
def test_an_unparseable_quantity_is_a_protocol_error(quantity):
    with pytest.raises(ProbeError) as caught:
        kubernetes.memory_bytes(quantity)
    assert caught.value.error_class is ErrorClass.PROTOCOL


def node(ready: str | None) -> dict:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    conditions += [] if ready is None else [{"type": "Ready", "status": ready}]
    return {"status": {"conditions": conditions, "capacity": {"cpu": "2", "memory": "1Gi"}}}


@pytest.mark.parametrize(
    ("ready", "readiness"),
    [("True", "True"), ("False", "False"), ("Unknown", "Unknown"), (None, "Unknown")],
)
def test_a_nodes_readiness_comes_from_its_ready_condition(ready, readiness):
    assert kubernetes.node_readiness(node(ready)) == readiness


def test_node_counts_treat_unknown_as_not_ready_and_sum_capacity():
    nodes = kubernetes.summarize_nodes([node("True"), node("False"), node("Unknown"), node(None)])

    assert (nodes.total, nodes.ready, nodes.not_ready, nodes.unknown) == (4, 1, 3, 2)
    assert nodes.capacity == kubernetes.Resources(8.0, 4 * 1024**3)
    assert nodes.allocatable == kubernetes.Resources()


@pytest.mark.parametrize(
    ("phase", "ready", "is_ready"),
    [
        ("Running", "True", True),
        ("Running", "False", False),
        ("Running", None, False),
        ("Succeeded", "False", True),
        ("Pending", None, False),
        ("Failed", "False", False),
        ("Unknown", None, False),
    ],
)
def test_a_pod_is_ready_when_succeeded_or_running_and_ready(phase, ready, is_ready):
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    pod = {"status": {"phase": phase, "conditions": conditions}}

    assert kubernetes.pod_is_ready(pod) is is_ready


def test_a_token_config_defaults_to_the_instances_host_on_port_6443():
    config = kube.parse_config("k8s.example", None, {"token": "env:KUBE_TOKEN"})

    assert config.server == "https://k8s.example:6443"
    assert config.verify is True


def test_an_ipv6_host_and_its_port_make_a_bracketed_url():
    config = kube.parse_config("fd00::1", 443, {"token": "env:KUBE_TOKEN"})

    assert config.server == "https://[fd00::1]:443"


def test_an_api_url_wins_over_the_host():
    config = kube.parse_config(
        "ignored", None, {"api_url": "https://api.example/", "token": "env:T"}
    )

    assert config.server == "https://api.example"


def test_a_clear_text_token_is_refused_without_being_echoed():
    message = config_error({"token": "canary-clear-token"})

    assert "secret reference" in message
    assert "canary-clear-token" not in message


@pytest.mark.parametrize(
    ("connection_config", "complaint"),
    [
        ({}, "needs kubeconfig, or token"),
        ({"token": "env:T", "verify_tls": False}, "insecure_skip_tls_verify: true"),
        ({"token": "env:T", "api_url": "http://api.example"}, "https://"),
        ({"token": "env:T", "kubeconfig": "env:K"}, "not both"),
        ({"token": "env:T", "context": "prod"}, "context applies only to a kubeconfig"),
        ({"token": "env:T", "ca_cert": "not a certificate"}, "ca_cert"),
        ({"token": "env:T", "page_size": 0}, "page_size"),
        ({"token": "env:T", "insecure_skip_tls_verify": "sometimes"}, "insecure_skip_tls_verify"),
    ],
)
def test_an_unusable_config_is_a_config_error_naming_the_problem(connection_config, complaint):
    assert complaint in config_error(connection_config)


def test_a_token_config_without_any_host_is_refused():
    assert "api_url" in config_error({"token": "env:T"}, host="")


def test_only_the_explicit_flag_turns_verification_off():
    config = kube.parse_config("h", None, {"token": "env:T", "insecure_skip_tls_verify": True})

    assert config.verify is False


def test_a_bad_config_is_a_config_result_and_never_an_exception(resolver):
    result = kubernetes.from_instance("h", None, {"token": "hunter2"}, resolver, 1.0).run()

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    assert "hunter2" not in result.message


def test_a_secret_that_cannot_be_resolved_is_a_config_result(resolver, monkeypatch):
    monkeypatch.delenv("AGENT_SECRET_KUBE_TOKEN_MISSING", raising=False)

    result = kubernetes.from_instance(
        "h", None, {"token": "env:AGENT_SECRET_KUBE_TOKEN_MISSING"}, resolver, 1.0
    ).run()

    assert result.error_class is ErrorClass.CONFIG
    assert "AGENT_SECRET_KUBE_TOKEN_MISSING" in result.message


def kubeconfig_connection(document: dict | str, monkeypatch, **config) -> kube.Connection:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    monkeypatch.setenv("AGENT_SECRET_KUBECONFIG_UNDER_TEST", text)
    parsed = kube.parse_config(
        "", None, {"kubeconfig": "env:AGENT_SECRET_KUBECONFIG_UNDER_TEST", **config}
    )
    return kube.connection_for(parsed, SecretResolver(None))


def kubeconfig_of(**user) -> dict:
    return kubeconfig("https://10.0.0.1:6443", CA_PEM, user or {"token": "canary-kube-token"})


def test_a_kubeconfig_gives_its_server_ca_and_token(monkeypatch):
    connection = kubeconfig_connection(kubeconfig_of(), monkeypatch)

    assert (connection.server, connection.ca_pem, connection.verify) == (
        "https://10.0.0.1:6443",
        CA_PEM,
        True,
    )
    assert connection.secrets == ("canary-kube-token",)
    assert "canary-kube-token" not in repr(connection)


def test_a_kubeconfig_client_certificate_is_read_from_its_data(monkeypatch):
    encoded = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    user = {"client-certificate-data": encoded, "client-key-data": encoded}

    connection = kubeconfig_connection(kubeconfig_of(**user), monkeypatch)

    assert connection.client_cert_pem.startswith("-----BEGIN")
    assert connection.token is None


@pytest.mark.parametrize("method", ["exec", "auth-provider"])
def test_a_kubeconfig_user_with_a_plugin_is_refused(monkeypatch, method):
    with pytest.raises(ProbeError, match=method) as caught:
        kubeconfig_connection(kubeconfig_of(**{method: {"command": "aws"}}), monkeypatch)
    assert caught.value.error_class is ErrorClass.CONFIG


def test_a_kubeconfig_cannot_turn_verification_off_by_itself(monkeypatch):
    document = kubeconfig_of()
    document["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True

    with pytest.raises(ProbeError, match="insecure_skip_tls_verify: true"):
        kubeconfig_connection(document, monkeypatch)
    assert (
        kubeconfig_connection(document, monkeypatch, insecure_skip_tls_verify=True).verify is False
    )


def test_a_kubeconfig_that_is_not_yaml_is_refused_without_quoting_it(monkeypatch):
    with pytest.raises(ProbeError) as caught:
        kubeconfig_connection("token: canary-kube-token\n  - [unbalanced", monkeypatch)

    assert caught.value.error_class is ErrorClass.CONFIG
    assert "canary-kube-token" not in str(caught.value)


def test_a_kubeconfig_with_a_broken_ca_is_refused(monkeypatch):
    document = kubeconfig_of()
    document["clusters"][0]["cluster"]["certificate-authority-data"] = "%%%"

    with pytest.raises(ProbeError, match="certificate-authority-data is not base64"):
        kubeconfig_connection(document, monkeypatch)


def test_a_client_is_built_without_touching_the_global_configuration(monkeypatch):
    from kubernetes.client import Configuration

    before = Configuration.get_default_copy().host
    connection = kubeconfig_connection(kubeconfig_of(), monkeypatch)

    with kube.client_for(connection, kube.Deadline(3.0)) as api:
        assert api.configuration.host == "https://10.0.0.1:6443"
        assert api.configuration.api_key == {"BearerToken": "canary-kube-token"}
        assert api.secrets == ("canary-kube-token",)
    assert Configuration.get_default_copy().host == before
