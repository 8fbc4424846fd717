"""The fake Kubernetes API server: schema-checked objects and real-shaped answers."""

from __future__ import annotations

import json

import pytest
import urllib3

from tests.fakes.kube_api import SCHEMA_VERSION, InvalidObject, KubeStore, validate

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def kube_store() -> KubeStore:
    return KubeStore()


@pytest.fixture
def http(kube_api) -> urllib3.PoolManager:
    pool = urllib3.PoolManager(ca_cert_data=kube_api.ca_pem, retries=False)
    yield pool
    pool.clear()


def get(http, kube_api, path: str, token: str | None = "valid") -> tuple[int, dict]:
    headers = (
        {}
        if token is None
        else {"Authorization": f"Bearer {kube_api.token if token == 'valid' else token}"}
    )
    response = http.request("GET", kube_api.url + path, headers=headers)
    return response.status, json.loads(response.data)


def test_the_schemas_are_those_of_a_version_kubernetes_validate_ships():
    from kubernetes_validate.utils import all_versions

    assert SCHEMA_VERSION in all_versions()


def test_a_pod_with_a_malformed_spec_is_refused(kube_store):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": "main"},
    }

    with pytest.raises(InvalidObject, match=r"spec\.containers"):
        kube_store.add(pod)
    assert kube_store.objects("pods") == []


def test_a_misspelt_field_is_refused_because_validation_is_strict(kube_store):
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n"},
        "status": {"capacty": {}},
    }

    with pytest.raises(InvalidObject, match="capacty"):
        kube_store.add(node)


def test_a_kind_the_fake_does_not_serve_is_refused(kube_store):
    with pytest.raises(InvalidObject, match="ConfigMap"):
        kube_store.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})


def test_a_node_condition_status_must_be_a_string(kube_store):
    with pytest.raises(InvalidObject, match="conditions"):
        kube_store.add_node("n", ready=True)


def test_every_helper_builds_a_valid_object(kube_store):
    kube_store.add_node("n", ready=None)
    kube_store.add_pod("p", phase="Pending", ready=None)
    kube_store.add_deployment("d")
    kube_store.add_statefulset("s")
    kube_store.add_daemonset("ds")
    kube_store.add_service("svc")

    for plural in ("nodes", "pods", "deployments", "statefulsets", "daemonsets", "services"):
        [stored] = kube_store.objects(plural)
        validate(stored)
        assert stored["metadata"]["resourceVersion"].isdigit()


def test_lists_look_like_the_real_servers(kube_api, http):
    kube_api.store.add_pod("web", namespace="shop")
    kube_api.store.add_pod("api", namespace="blog")

    status, body = get(http, kube_api, "/api/v1/namespaces/shop/pods")

    assert status == 200
    assert (body["kind"], body["apiVersion"]) == ("PodList", "v1")
    assert body["metadata"]["resourceVersion"] == kube_api.store.resource_version
    assert [item["metadata"]["name"] for item in body["items"]] == ["web"]
    assert "kind" not in body["items"][0]


def test_a_list_is_paged_with_limit_and_continue(kube_api, http):
    for index in range(5):
        kube_api.store.add_service(f"svc-{index}")
    names, token, pages = [], "", 0
    while True:
        status, body = get(http, kube_api, f"/api/v1/services?limit=2&continue={token}")
        assert status == 200
        names += [item["metadata"]["name"] for item in body["items"]]
        pages += 1
        token = body["metadata"].get("continue")
        if not token:
            break

    assert (names, pages) == ([f"svc-{index}" for index in range(5)], 3)


def test_a_wrong_token_gets_a_401_status(kube_api, http):
    status, body = get(http, kube_api, "/api/v1/nodes", token="wrong")

    assert status == 401
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)


def test_an_anonymous_list_is_forbidden_but_version_is_public(kube_api, http):
    assert get(http, kube_api, "/api/v1/nodes", token=None)[0] == 403
    assert get(http, kube_api, "/version", token=None)[1]["gitVersion"] == "v1.37.0"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/widgets", "the server could not find the requested resource"),
        ("/apis/apps/v1/namespaces/default/deployments/missing", 'deployments "missing" not found'),
    ],
)
def test_unknown_paths_and_objects_get_a_404_status(kube_api, http, path, message):
    status, body = get(http, kube_api, path)

    assert status == 404
    assert (body["reason"], body["message"]) == ("NotFound", message)


def test_a_bad_continue_token_gets_a_400_status(kube_api, http):
    status, body = get(http, kube_api, "/api/v1/pods?limit=1&continue=garbage")

    assert (status, body["reason"]) == (400, "BadRequest")
