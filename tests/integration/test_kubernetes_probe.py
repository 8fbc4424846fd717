"""The Kubernetes probe against the in-process fake API server (real paths, JSON and TLS)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from kubernetes.client import AppsV1Api
from urllib3.exceptions import InsecureRequestWarning

from agent.credentials import SecretResolver, generate_key
from agent.probes import kubernetes
from agent.probes.base import ErrorClass, ProbeResult, Status
from tests.fakes.kube_api import FakeKubeApi, generate_ca_pem, kubeconfig_yaml
from tests.support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

GiB = 1024**3


@pytest.fixture
def resolver() -> SecretResolver:
    return SecretResolver(generate_key())


@pytest.fixture
def connection_config(kube_api: FakeKubeApi, resolver: SecretResolver) -> dict:
    """Token access to the fake: its URL, an encrypted token and its CA as PEM text."""
    return {
        "api_url": kube_api.url,
        "token": resolver.encrypt(kube_api.token),
        "ca_cert": kube_api.ca_pem,
    }


def probe(config: dict, resolver: SecretResolver, timeout_s: float = 5.0) -> ProbeResult:
    return kubernetes.from_instance("127.0.0.1", None, config, resolver, timeout_s).run()


def test_a_healthy_cluster_is_ok_with_its_node_counts_and_capacity(
    kube_api, connection_config, resolver
):
    kube_api.store.add_node(
        "cp-1", cpu="4", memory="16Gi", allocatable_cpu="3500m", allocatable_memory="15Gi"
    )
    kube_api.store.add_node("worker-1", cpu="8", memory="32Gi")
    kube_api.store.add_pod("web-0")
    kube_api.store.add_pod("job-0", phase="Succeeded", ready="False")

    result = probe(connection_config, resolver)

    assert result.status is Status.OK, result.message
    assert result.facts["server_version"] == "v1.37.0"
    assert (
        result.facts["nodes_total"],
        result.facts["nodes_ready"],
        result.facts["nodes_not_ready"],
    ) == (2, 2, 0)
    assert result.facts["capacity"] == {"cpu_cores": 12.0, "memory_bytes": 48 * GiB}
    assert result.facts["allocatable"] == {"cpu_cores": 11.5, "memory_bytes": 47 * GiB}
    assert (result.facts["pods_total"], result.facts["pods_not_ready"]) == (2, 0)
    assert set(result.checks.values()) == {Status.OK}
    json.dumps(result.as_dict())


@pytest.mark.parametrize("readiness", ["Unknown", None])
def test_a_node_whose_readiness_is_unknown_counts_as_not_ready_and_warns(
    kube_api, connection_config, resolver, readiness
):
    kube_api.store.add_node("worker-1")
    kube_api.store.add_node("worker-2", ready=readiness)

    result = probe(connection_config, resolver)

    assert result.status is Status.WARNING
    assert result.facts["nodes_not_ready"] == 1
    assert result.facts["nodes_unknown"] == 1
    assert result.checks[kubernetes.CHECK_NODES] is Status.WARNING


def test_a_cluster_without_a_ready_node_is_critical(kube_api, connection_config, resolver):
    kube_api.store.add_node("worker-1", ready="False")
    kube_api.store.add_node("worker-2", ready="Unknown")

    result = probe(connection_config, resolver)

    assert result.status is Status.CRITICAL
    assert result.error_class is None
    assert result.facts["nodes_ready"] == 0


def test_a_failing_readyz_makes_the_cluster_critical(kube_api, connection_config, resolver):
    kube_api.store.add_node("worker-1")
    kube_api.readyz_status = 500

    result = probe(connection_config, resolver)

    assert result.status is Status.CRITICAL
    assert result.checks[kubernetes.CHECK_API] is Status.CRITICAL
    assert "etcd failed" in result.message
    assert result.facts["nodes_ready"] == 1


def test_a_server_without_readyz_is_judged_by_its_version_endpoint(
    kube_api, connection_config, resolver
):
    kube_api.store.add_node("worker-1")
    kube_api.readyz_status = 404

    result = probe(connection_config, resolver)

    assert result.status is Status.OK, result.message
    assert result.facts["api_ready"] is True
    assert kube_api.requests_to("/readyz")
    assert kube_api.requests_to("/version")


def test_a_wrong_token_is_an_auth_error_that_never_shows_the_token(
    kube_api, connection_config, resolver
):
    wrong = "canary-token-3f9a1c"
    result = probe(connection_config | {"token": resolver.encrypt(wrong)}, resolver)

    assert result.error_class is ErrorClass.AUTH
    assert result.status is Status.ERROR
    assert wrong not in json.dumps(result.as_dict())
    assert kube_api.token not in json.dumps(result.as_dict())


def test_a_server_certificate_from_another_ca_is_a_tls_error(kube_api, connection_config, resolver):
    result = probe(connection_config | {"ca_cert": generate_ca_pem()}, resolver)

    assert result.error_class is ErrorClass.TLS
    assert "CERTIFICATE_VERIFY_FAILED" in result.message


def test_without_a_ca_the_fake_is_not_trusted(kube_api, connection_config, resolver):
    result = probe(connection_config | {"ca_cert": None}, resolver)

    assert result.error_class is ErrorClass.TLS


def test_skipping_tls_verification_explicitly_works_and_says_so(
    kube_api, connection_config, resolver
):
    kube_api.store.add_node("worker-1")
    insecure = connection_config | {"ca_cert": None, "insecure_skip_tls_verify": True}

    with pytest.warns(InsecureRequestWarning):  # urllib3 says it too, once per worker
        result = probe(insecure, resolver)

    assert result.error_class is None, result.message
    assert result.status is Status.WARNING
    assert result.checks[kubernetes.CHECK_TLS] is Status.WARNING
    assert kubernetes.INSECURE_NOTE in result.message


def test_a_kubeconfig_reference_connects_through_its_named_context(kube_api, resolver):
    kube_api.store.add_node("worker-1")
    document = yaml.safe_load(
        kubeconfig_yaml(kube_api.url, kube_api.ca_pem, kube_api.token, context="prod")
    )
    document["contexts"].insert(
        0, {"name": "other", "context": {"cluster": "nowhere", "user": "nobody"}}
    )
    document["current-context"] = "other"
    config = {"kubeconfig": resolver.encrypt(yaml.safe_dump(document)), "context": "prod"}

    result = probe(config, resolver)

    assert result.status is Status.OK, result.message
    assert result.facts["nodes_ready"] == 1


def test_a_kubeconfig_without_the_named_context_is_a_config_error(kube_api, resolver):
    text = kubeconfig_yaml(kube_api.url, kube_api.ca_pem, kube_api.token, context="prod")

    result = probe({"kubeconfig": resolver.encrypt(text), "context": "staging"}, resolver)

    assert result.error_class is ErrorClass.CONFIG
    assert "staging" in result.message
    assert kube_api.token not in result.message


def test_pods_not_ready_are_counted_across_pages(kube_api, connection_config, resolver):
    kube_api.store.add_node("worker-1")
    for index in range(250):  # every tenth pending, every tenth running but not ready
        phase, ready = {1: ("Pending", None), 2: ("Running", "False")}.get(
            index % 10, ("Running", "True")
        )
        kube_api.store.add_pod(
            f"pod-{index:03d}", namespace=f"team-{index % 3}", phase=phase, ready=ready
        )

    result = probe(connection_config | {"page_size": 100}, resolver)

    assert (result.facts["pods_total"], result.facts["pods_not_ready"]) == (250, 50)
    pages = kube_api.requests_to("/api/v1/pods")
    assert [page.query.get("limit") for page in pages] == ["100", "100", "100"]
    assert [bool(page.query.get("continue")) for page in pages] == [False, True, True]


def test_a_slow_server_times_out_within_the_configured_timeout(
    kube_api, connection_config, resolver
):
    kube_api.delay_s = 10.0

    result = probe(connection_config, resolver, timeout_s=1.0)

    assert result.error_class is ErrorClass.TIMEOUT
    assert result.status is Status.CRITICAL
    assert result.latency_ms < 2000


def test_a_closed_port_is_refused(resolver, monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_TEST_TOKEN", "token")
    config = {"api_url": f"https://127.0.0.1:{free_port()}", "token": "env:AGENT_SECRET_TEST_TOKEN"}

    result = probe(config, resolver)

    assert result.error_class is ErrorClass.REFUSED
    assert result.reachable is False


def test_discovery_lists_workloads_through_the_probes_client(kube_api, connection_config, resolver):
    kube_api.store.add_deployment("web", namespace="shop", replicas=3, ready=2)
    kube_api.store.add_statefulset("db", namespace="shop")
    kube_api.store.add_daemonset("node-exporter")
    config = kubernetes.parse_config("127.0.0.1", None, connection_config)

    with kubernetes.api_client_for(config, resolver, timeout_s=5.0) as api:
        apps = AppsV1Api(api)
        deployments = apps.list_deployment_for_all_namespaces().items
        statefulsets = apps.list_namespaced_stateful_set("shop").items
        daemonsets = apps.list_daemon_set_for_all_namespaces().items

    assert [(d.metadata.name, d.status.ready_replicas) for d in deployments] == [("web", 2)]
    assert [s.metadata.name for s in statefulsets] == ["db"]
    assert [d.metadata.namespace for d in daemonsets] == ["kube-system"]
    assert all(request.authorization == f"Bearer {kube_api.token}" for request in kube_api.requests)


def test_the_kubeconfig_certificate_data_is_the_only_ca_trusted(kube_api, resolver):
    document = yaml.safe_load(kubeconfig_yaml(kube_api.url, kube_api.ca_pem, kube_api.token))
    other = base64.b64encode(generate_ca_pem().encode()).decode()
    document["clusters"][0]["cluster"]["certificate-authority-data"] = other

    result = probe({"kubeconfig": resolver.encrypt(yaml.safe_dump(document))}, resolver)

    assert result.error_class is ErrorClass.TLS


def test_a_kubeconfig_client_certificate_authenticates_and_leaves_no_file(
    kube_api, resolver, tmp_path, monkeypatch
):
    kube_api.store.add_node("worker-1")
    cert_pem, key_pem = kube_api.tls.client_certificate("kubernetes-admin")
    document = yaml.safe_load(kubeconfig_yaml(kube_api.url, kube_api.ca_pem, kube_api.token))
    document["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(cert_pem.encode()).decode(),
        "client-key-data": base64.b64encode(key_pem.encode()).decode(),
    }
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    result = probe({"kubeconfig": resolver.encrypt(yaml.safe_dump(document))}, resolver)

    assert result.status is Status.OK, result.message
    assert {request.client_user for request in kube_api.requests} == {"kubernetes-admin"}
    assert {request.authorization for request in kube_api.requests} == {None}
    assert list(tmp_path.iterdir()) == []
