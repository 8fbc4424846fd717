"""The Kubernetes probe against a real kube-apiserver v1.20.2 with etcd and RBAC."""

from __future__ import annotations

import base64
import json
import time

import pytest
import yaml
from urllib3.exceptions import InsecureRequestWarning

from agent.connections import kubeapi
from agent.core.credentials import SecretResolver, generate_key
from agent.core.results import ErrorClass, ProbeResult, Status
from agent.probes import kubernetes
from tests.support.kube_apiserver import ADMIN_USER, generate_ca_pem, kubeconfig
from tests.support.network import free_port

pytestmark = pytest.mark.timeout(90)

GiB = 1024**3


@pytest.fixture
def resolver() -> SecretResolver:
    return SecretResolver(generate_key())


@pytest.fixture
def connection_config(kube, resolver: SecretResolver) -> dict:
    """Admin token access: the API server's URL, an encrypted token and its CA as PEM text."""
    return {"api_url": kube.url, "token": resolver.encrypt(kube.token), "ca_cert": kube.ca_pem}


def probe(config: dict, resolver: SecretResolver, timeout_s: float = 10.0) -> ProbeResult:
    return kubernetes.from_instance("127.0.0.1", None, config, resolver, timeout_s).run()


def test_a_healthy_cluster_is_ok_with_its_node_counts_and_capacity(
    kube_objects, connection_config, resolver
):
    kube_objects.node("cp-1", cpu="4", memory="16Gi", alloc=("3500m", "15Gi"))
    kube_objects.node("worker-1", cpu="8", memory="32Gi")
    kube_objects.pod("web-0")
    kube_objects.pod("job-0", phase="Succeeded", ready="False")

    result = probe(connection_config, resolver)

    assert result.status is Status.OK, result.message
    assert result.facts["server_version"] == "v1.20.2"
    assert (result.facts["nodes_total"], result.facts["nodes_ready"]) == (2, 2)
    assert result.facts["capacity"] == {"cpu_cores": 12.0, "memory_bytes": 48 * GiB}
    assert result.facts["allocatable"] == {"cpu_cores": 11.5, "memory_bytes": 47 * GiB}
    assert (result.facts["pods_total"], result.facts["pods_not_ready"]) == (2, 0)
    assert set(result.checks.values()) == {Status.OK}
    assert "forbidden" not in result.facts
    json.dumps(result.as_dict())


@pytest.mark.parametrize("readiness", ["Unknown", None])
def test_a_node_whose_readiness_is_unknown_counts_as_not_ready_and_warns(
    kube_objects, connection_config, resolver, readiness
):
    kube_objects.node("worker-1")
    kube_objects.node("worker-2", ready=readiness)

    result = probe(connection_config, resolver)

    assert result.status is Status.WARNING, result.message
    assert (result.facts["nodes_not_ready"], result.facts["nodes_unknown"]) == (1, 1)
    assert result.checks[kubernetes.CHECK_NODES] is Status.WARNING


def test_a_cluster_without_a_ready_node_is_critical(kube_objects, connection_config, resolver):
    kube_objects.node("worker-1", ready="False")
    kube_objects.node("worker-2", ready="Unknown")

    result = probe(connection_config, resolver)

    assert result.status is Status.CRITICAL
    assert result.error_class is None
    assert result.facts["nodes_ready"] == 0


def test_pods_not_ready_are_counted_across_small_pages(kube_objects, connection_config, resolver):
    kube_objects.node("worker-1")
    for index in range(12):  # a third pending, a third running but not ready
        phase, ready = [("Running", "True"), ("Pending", None), ("Running", "False")][index % 3]
        kube_objects.pod(
            f"pod-{index:02d}", namespace=f"team-{index % 3}", phase=phase, ready=ready
        )

    result = probe(connection_config | {"page_size": 5}, resolver)

    assert (result.facts["pods_total"], result.facts["pods_not_ready"]) == (12, 8)


def test_a_continue_token_that_expired_restarts_the_list_once(
    kube, kube_objects, connection_config, resolver, monkeypatch
):
    kube_objects.node("worker-1")
    for index in range(9):
        kube_objects.pod(f"pod-{index}", ready="False" if index < 3 else "True")
    pages: list[str] = []
    real_get = kubeapi.get

    def get_then_compact(api, path, deadline, cap, query=()):
        answer = real_get(api, path, deadline, cap, query)
        pages.append(f"{path} {answer.status}")
        if pages == ["/api/v1/nodes 200", "/api/v1/pods 200"]:  # after the first pods page
            kube.compact_etcd()  # a real compaction: the page's continue token expires
        return answer

    monkeypatch.setattr(kubeapi, "get", get_then_compact)

    result = probe(connection_config | {"page_size": 4}, resolver)

    assert result.status is Status.WARNING, result.message
    assert (result.facts["pods_total"], result.facts["pods_not_ready"]) == (9, 3)
    assert "/api/v1/pods 410" in pages
    assert pages.count("/api/v1/pods 200") == 1 + 3  # the page before the 410, then all three


def test_a_wrong_token_is_an_auth_error_that_never_shows_the_token(
    kube, connection_config, resolver
):
    wrong = "canary-token-3f9a1c"
    result = probe(connection_config | {"token": resolver.encrypt(wrong)}, resolver)

    assert result.error_class is ErrorClass.AUTH
    assert result.status is Status.ERROR
    assert wrong not in json.dumps(result.as_dict())
    assert kube.token not in json.dumps(result.as_dict())


def test_a_service_account_limited_to_one_namespace_keeps_what_it_could_read(
    kube, kube_objects, shop_token, resolver
):
    kube_objects.node("worker-1")
    config = {"api_url": kube.url, "token": resolver.encrypt(shop_token), "ca_cert": kube.ca_pem}

    result = probe(config, resolver)

    assert result.status is Status.WARNING, result.message
    assert result.error_class is None
    assert result.facts["server_version"] == "v1.20.2"
    assert result.facts["api_ready"] is True
    assert result.facts["forbidden"] == ["list nodes", "list pods"]
    assert not {"nodes_total", "pods_total"} & set(result.facts)
    assert "forbidden (HTTP 403): list nodes, list pods" in result.message
    assert shop_token not in json.dumps(result.as_dict())


def test_a_server_certificate_from_another_ca_is_a_tls_error(kube, connection_config, resolver):
    result = probe(connection_config | {"ca_cert": generate_ca_pem()}, resolver)

    assert result.error_class is ErrorClass.TLS
    assert "CERTIFICATE_VERIFY_FAILED" in result.message


def test_without_a_ca_the_server_is_not_trusted(kube, connection_config, resolver):
    result = probe(connection_config | {"ca_cert": None}, resolver)

    assert result.error_class is ErrorClass.TLS


def test_skipping_tls_verification_explicitly_works_and_says_so(
    kube_objects, connection_config, resolver
):
    kube_objects.node("worker-1")
    insecure = connection_config | {"ca_cert": None, "insecure_skip_tls_verify": True}

    with pytest.warns(InsecureRequestWarning):  # urllib3 says it too, once per worker
        result = probe(insecure, resolver)

    assert result.error_class is None, result.message
    assert result.status is Status.WARNING
    assert result.checks[kubernetes.CHECK_TLS] is Status.WARNING
    assert kubernetes.INSECURE_NOTE in result.message


def test_a_kubeconfig_reference_connects_through_its_named_context(kube, kube_objects, resolver):
    kube_objects.node("worker-1")
    document = kubeconfig(kube.url, kube.ca_pem, {"token": kube.token})
    document["contexts"].insert(0, {"name": "other", "context": {"cluster": "x", "user": "y"}})
    document["current-context"] = "other"
    config = {"kubeconfig": resolver.encrypt(yaml.safe_dump(document)), "context": "prod"}

    result = probe(config, resolver)

    assert result.status is Status.OK, result.message
    assert result.facts["nodes_ready"] == 1


def test_a_kubeconfig_without_the_named_context_is_a_config_error(kube, resolver):
    text = yaml.safe_dump(kubeconfig(kube.url, kube.ca_pem, {"token": kube.token}))

    result = probe({"kubeconfig": resolver.encrypt(text), "context": "staging"}, resolver)

    assert result.error_class is ErrorClass.CONFIG
    assert "staging" in result.message
    assert kube.token not in result.message


def test_the_kubeconfig_certificate_data_is_the_only_ca_trusted(kube, resolver):
    document = kubeconfig(kube.url, generate_ca_pem(), {"token": kube.token})

    result = probe({"kubeconfig": resolver.encrypt(yaml.safe_dump(document))}, resolver)

    assert result.error_class is ErrorClass.TLS


def _cert_user(kube, user: str, group: str | None) -> dict:
    cert_pem, key_pem = kube.client_certificate(user, group)
    return {
        "client-certificate-data": base64.b64encode(cert_pem.encode()).decode(),
        "client-key-data": base64.b64encode(key_pem.encode()).decode(),
    }


def test_a_kubeconfig_client_certificate_authenticates_and_leaves_no_file(
    kube, kube_objects, resolver, tmp_path, monkeypatch
):
    kube_objects.node("worker-1")
    document = kubeconfig(kube.url, kube.ca_pem, _cert_user(kube, ADMIN_USER, "system:masters"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    result = probe({"kubeconfig": resolver.encrypt(yaml.safe_dump(document))}, resolver)

    assert result.status is Status.OK, result.message
    assert result.facts["nodes_ready"] == 1
    assert list(tmp_path.iterdir()) == []


def test_a_client_certificate_is_who_the_server_judges(kube, kube_objects, resolver):
    kube_objects.node("worker-1")
    document = kubeconfig(kube.url, kube.ca_pem, _cert_user(kube, "nobody-in-particular", None))

    result = probe({"kubeconfig": resolver.encrypt(yaml.safe_dump(document))}, resolver)

    assert result.status is Status.WARNING, result.message
    assert result.facts["forbidden"] == ["list nodes", "list pods"]


def test_a_closed_port_is_refused(resolver, monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_TEST_TOKEN", "token")
    config = {"api_url": f"https://127.0.0.1:{free_port()}", "token": "env:AGENT_SECRET_TEST_TOKEN"}

    result = probe(config, resolver)

    assert result.error_class is ErrorClass.REFUSED
    assert result.reachable is False


def test_with_etcd_frozen_the_check_ends_in_time_and_reports_readiness(
    kube, kube_objects, connection_config, resolver
):
    kube_objects.node("worker-1")
    kube.freeze_etcd()
    try:
        started = time.monotonic()
        result = probe(connection_config, resolver, timeout_s=4.0)
        elapsed = time.monotonic() - started
    finally:
        kube.thaw_etcd()

    assert elapsed < 4.0 + 0.5, result
    assert result.status is Status.CRITICAL, result.message
    assert result.facts.get("api_ready") is False, result
    assert result.checks[kubernetes.CHECK_API] is Status.CRITICAL
