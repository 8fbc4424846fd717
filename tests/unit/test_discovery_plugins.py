import pytest

from agent.discovery.base import DiscoveredService
from agent.discovery.matching import image_names, plugin_for, rules_from


def container(image, labels=None):
    return DiscoveredService(
        "c", "docker_container", "running", {"image": image, "labels": labels or {}}
    )


RULES = rules_from(
    [
        ("id-pg", "postgres-manager", {"manages": {"docker_images": ["postgres", "postgres:16*"],
                                                   "systemd_units": ["postgresql@*.service"]}}),
        ("id-redis", "redis-manager", {"manages": {"kubernetes_labels": {"app": "redis"},
                                                   "docker_labels": {"managed-by": "*"}}}),
        ("id-broken", "aaa-broken", {"manages": {"docker_images": "not-a-list"}}),
        ("id-none", "nothing", {"ui": "x"}),
    ]
)  # fmt: skip


def test_an_image_answers_to_its_full_untagged_and_short_names():
    assert image_names("docker.io/library/postgres:16.2") == {
        "docker.io/library/postgres:16.2",
        "docker.io/library/postgres",
        "postgres:16.2",
        "postgres",
    }
    assert "localhost:5000/app" in image_names("localhost:5000/app:1@sha256:ab")


@pytest.mark.parametrize(
    ("service", "plugin"),
    [
        (container("docker.io/library/postgres:16.2"), "id-pg"),
        (container("postgres"), "id-pg"),
        (container("mysql:8"), None),
        (container("mysql:8", {"managed-by": "ops"}), "id-redis"),
        (DiscoveredService("postgresql@15-main.service", "systemd_service", "running"), "id-pg"),
        (DiscoveredService("ssh.service", "systemd_service", "running"), None),
        (
            DiscoveredService("cache/redis", "kubernetes_statefulset", "running",
                              {"labels": {"app": "redis"}, "images": ["redis:7"]}),
            "id-redis",
        ),
        (
            DiscoveredService("db/pg", "kubernetes_deployment", "running",
                              {"labels": {}, "images": ["postgres:16.1"]}),
            "id-pg",
        ),
    ],
)  # fmt: skip
def test_services_match_the_plugin_that_declares_them(service, plugin):
    assert plugin_for(service, RULES) == plugin


def test_a_malformed_or_silent_capabilities_document_declares_nothing():
    assert [rule.slug for rule in RULES] == ["postgres-manager", "redis-manager"]


def test_the_first_plugin_by_slug_wins_when_several_match():
    rules = rules_from(
        [
            ("b", "zz-late", {"manages": {"docker_images": ["nginx*"]}}),
            ("a", "aa-early", {"manages": {"docker_images": ["nginx"]}}),
        ]
    )
    assert plugin_for(container("nginx:1.27"), rules) == "a"
