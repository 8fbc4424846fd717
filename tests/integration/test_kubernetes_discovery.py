"""Kubernetes discovery against a real kube-apiserver v1.20.2, down to the shared schema."""

from __future__ import annotations

import uuid

import pytest

from agent.core.results import ErrorClass
from agent.core.settings import get_settings
from agent.discovery import discoverer_for
from models import InfrastructureInstance
from models.session import session_scope
from tasks import discovery
from tests.support.rows import services_of

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def access(kube, secret_key):
    """connection_config for the API server with `token` (default: the admin's)."""

    def config(token: str | None = None, **extra) -> dict:
        secret = secret_key.encrypt(token or kube.token)
        return {"api_url": kube.url, "token": secret, "ca_cert": kube.ca_pem, **extra}

    return config


@pytest.fixture
def kube_discovery(access, secret_key):
    def discover(token: str | None = None, **extra):
        config = access(token, **extra)
        return discoverer_for("kubernetes", "", None, config, secret_key, 10).run()

    return discover


def by_name(outcome) -> dict:
    assert outcome.ok, outcome.message
    return {service.name: service for service in outcome.services}


@pytest.fixture
def workloads(kube_objects):
    kube_objects.deployment("web", "shop", replicas=3)
    kube_objects.deployment("worker", "shop", replicas=3, ready=1)
    kube_objects.deployment("paused", "shop", replicas=0, ready=0)
    kube_objects.statefulset("db", "shop", replicas=2, ready=0)
    kube_objects.daemonset("node-exporter", "monitoring", desired=3)
    kube_objects.service("web", "shop", ports=((8080, 80),))
    kube_objects.deployment("other", "default")
    kube_objects.service("other", "default")
    return kube_objects


def test_workloads_and_services_are_found_with_status_from_replicas(kube_discovery, workloads):
    found = {(s.type, s.name): s for s in kube_discovery().services}
    assert found["kubernetes_deployment", "shop/web"].status == "running"
    assert found["kubernetes_deployment", "shop/worker"].status == "degraded"
    assert found["kubernetes_deployment", "shop/paused"].status == "stopped"
    assert found["kubernetes_statefulset", "shop/db"].status == "error"
    exporter = found["kubernetes_daemonset", "monitoring/node-exporter"]
    assert exporter.service_config["replicas"] == {"desired": 3, "ready": 3}
    web = found["kubernetes_deployment", "shop/web"]
    assert web.service_config["images"] == ["registry.k8s.io/web:1"]
    assert web.service_config["labels"] == {"app": "web"}
    service = found["kubernetes_service", "shop/web"]
    assert service.status == "running"
    endpoint = service.endpoints[0]
    assert (endpoint["host"], endpoint["port"], endpoint["target_port"]) == (
        "web.shop.svc",
        8080,
        80,
    )
    assert endpoint["cluster_ip"].startswith("10.96.")  # allocated by the server


def test_the_api_servers_own_service_is_not_a_workload_service(kube_discovery, kube):
    found = by_name(kube_discovery())
    assert "default/kubernetes" not in found
    services = kube.request("GET", "/api/v1/namespaces/default/services")["items"]
    assert [s["metadata"]["name"] for s in services] == ["kubernetes"]  # it is there


def test_a_headless_service_has_no_cluster_ip(kube_discovery, kube_objects):
    kube_objects.service("db", "shop", ports=((5432, 5432),), clusterIP="None")
    kube_objects.service("nodes", "shop", ports=((80, 8080),), type="NodePort")

    found = by_name(kube_discovery())

    assert found["shop/db"].endpoints[0]["cluster_ip"] is None
    assert 30000 <= found["shop/nodes"].endpoints[0]["node_port"] <= 32767  # server default


def test_a_deployment_without_replicas_gets_the_servers_default_of_one(
    kube_discovery, kube_objects
):
    kube_objects.deployment("defaulted", "shop", replicas=None, ready=1)
    found = by_name(kube_discovery())
    assert found["shop/defaulted"].service_config["replicas"] == {"desired": 1, "ready": 1}


def test_a_namespace_filter_reads_only_those_namespaces(kube_discovery, workloads):
    found = by_name(kube_discovery(namespaces=["shop"]))
    assert {name.split("/")[0] for name in found} == {"shop"}
    assert "shop/web" in found


def test_lists_are_paged(kube_discovery, kube_objects):
    for i in range(7):
        kube_objects.deployment(f"app-{i}", "shop")
    found = by_name(kube_discovery(page_size=3))
    assert len([name for name in found if name.startswith("shop/app-")]) == 7


def test_a_wrong_token_fails_discovery_without_showing_it(kube_discovery):
    outcome = kube_discovery("canary-token-9a1b")
    assert outcome.error_class is ErrorClass.AUTH
    assert "canary-token-9a1b" not in outcome.message


def test_a_service_account_of_one_namespace_reads_it_and_reports_the_rest_forbidden(
    kube_discovery, workloads, shop_token
):
    outcome = kube_discovery(shop_token, namespaces=["shop", "default"])

    found = by_name(outcome)
    assert {name.split("/")[0] for name in found} == {"shop"}
    assert {"shop/web", "shop/db"} <= set(found)
    assert "forbidden" in outcome.message
    assert "list deployments in default" in outcome.message
    assert ("kubernetes_deployment", "default/") in outcome.unread
    assert not any(prefix.startswith("shop") for _, prefix in outcome.unread)
    assert shop_token not in outcome.message


def test_a_service_account_may_not_list_cluster_wide_and_discovery_fails(
    kube_discovery, workloads, shop_token
):
    outcome = kube_discovery(shop_token)
    assert outcome.error_class is ErrorClass.AUTH
    assert "list deployments" in outcome.message


def test_partial_rights_update_the_readable_namespace_and_never_mark_the_rest_missing(
    kube, add_instance, access, workloads, shop_token
):
    instance_id = add_instance("kubernetes", host="", config=access(namespaces=["shop", "default"]))
    discover = lambda: discovery.discover_now(get_settings(), instance_id, str(uuid.uuid4()))  # noqa: E731
    first = discover()
    assert first["status"] == "discovered", first
    assert {"shop/web", "default/other"} <= set(services_of(instance_id))
    kube.request("DELETE", "/apis/apps/v1/namespaces/shop/deployments/worker")
    with session_scope() as session:
        row = session.get(InfrastructureInstance, instance_id)
        row.connection_config = access(shop_token, namespaces=["shop", "default"])

    second = discover()

    assert second["status"] == "discovered", second
    recorded = services_of(instance_id)
    assert recorded["shop/worker"].status == "missing"  # shop was read: its gone one is missing
    assert recorded["shop/web"].status == "running"
    assert recorded["default/other"].status == "running"  # default was not read: left as it was
    assert second["missing"] == 1
    assert "forbidden" in second["discovery"]["message"]
