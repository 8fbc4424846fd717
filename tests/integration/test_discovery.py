"""Discoverers against real servers: Podman's Docker API and a real sshd (Kubernetes: apart)."""

import pytest

from agent.connections.known_hosts import MemoryKnownHosts
from agent.connections.sshpool import TransportPool
from agent.core.credentials import SecretResolver, generate_key
from agent.core.results import ErrorClass
from agent.discovery import discoverer_for, systemd
from tests.support.podman import run_healthcheck

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def resolver():
    return SecretResolver(generate_key())


def by_name(outcome):
    assert outcome.ok, outcome.message
    return {service.name: service for service in outcome.services}


# --- Docker Engine API (Podman) ------------------------------------------------------------


@pytest.fixture
def podman_discovery(podman_socket, podman_containers, resolver):
    def discover():
        config = {"docker_host": f"unix://{podman_socket}"}
        return discoverer_for("docker_api", "docker1.example", None, config, resolver, 30).run()

    return discover


@pytest.fixture
def secret_env_container(podman_client, busybox_image):
    container = podman_client.containers.run(
        busybox_image,
        ["sleep", "3600"],
        detach=True,
        name="agent-test-discovery-env",
        network_mode="none",
        environment={"DB_PASSWORD": "canary-env-77e1"},
        labels={"api_token": "canary-label-5d0c", "team": "shop"},
    )
    yield container
    container.remove(force=True)


def test_every_container_is_found_whatever_its_state(podman_discovery):
    found = by_name(podman_discovery())
    assert found["agent-test-running"].status == "running"
    assert found["agent-test-exited-0"].status == "stopped"
    assert found["agent-test-exited-3"].status == "error"
    assert found["agent-test-exited-3"].service_config["exit_code"] == 3
    assert found["agent-test-paused"].status == "stopped"
    assert found["agent-test-created"].status == "stopped"
    assert found["agent-test-healthy"].service_config["health"] == "healthy"
    assert found["agent-test-healthy"].status == "running"


def test_published_ports_become_endpoints_and_labels_are_kept(podman_discovery, podman_containers):
    web = by_name(podman_discovery())["agent-test-web"]
    assert web.endpoints == [
        {
            "host": "127.0.0.1",
            "port": podman_containers.published_port,
            "protocol": "tcp",
            "container_port": 80,
        }
    ]
    assert web.service_config["labels"]["agent.test/role"] == "web"
    assert web.service_config["image"].startswith("localhost/agent-test-busybox")


def test_an_unhealthy_container_is_an_error(podman_discovery, unhealthy_container, podman_client):
    assert run_healthcheck(podman_client, unhealthy_container) == "unhealthy"
    found = {s.service_config["container_id"]: s for s in podman_discovery().services}
    assert found[unhealthy_container].status == "error"


def test_environment_and_secret_label_values_are_never_copied(
    podman_discovery, secret_env_container
):
    outcome = podman_discovery()
    service = by_name(outcome)["agent-test-discovery-env"]
    assert service.service_config["labels"] == {"api_token": "***", "team": "shop"}
    everything = str([s.row() for s in outcome.services])
    assert "canary-env-77e1" not in everything
    assert "canary-label-5d0c" not in everything


def test_an_engine_that_is_down_is_a_failed_discovery(short_lived_podman, resolver):
    short_lived_podman.stop()
    config = {"docker_host": short_lived_podman.url}
    outcome = discoverer_for("docker_api", "h", None, config, resolver, 5).run()
    assert not outcome.ok
    assert outcome.error_class in (ErrorClass.UNREACHABLE, ErrorClass.REFUSED)
    assert outcome.services == ()


# --- SSH: systemd -------------------------------------------------------------------------


@pytest.fixture
def ssh_discovery(resolver):
    pool = TransportPool()

    def discover(server, **overrides):
        config = {
            "username": server.username,
            "private_key": resolver.encrypt(server.private_key),
            "host_key": server.host_key,
            **overrides,
        }
        return systemd.from_instance(
            server.host,
            server.port,
            config,
            resolver,
            20,
            known_hosts=MemoryKnownHosts(),
            pool=pool,  # its own: a cached login keeps the login shell it started with
        ).run()

    yield discover
    pool.clear()


def test_systemd_services_and_their_sockets_come_over_real_ssh(systemd_host, ssh_discovery):
    found = by_name(ssh_discovery(systemd_host))
    assert found["ssh.service"].status == "running"
    assert {e["port"] for e in found["ssh.service"].endpoints} == {22}
    assert found["ssh.service"].endpoints[0]["host"] == systemd_host.host
    assert found["mariadb.service"].status == "error"
    assert found["apt-daily.service"].status == "stopped"
    assert found["redis-server.service"].service_config["main_pid"] == 47


def test_a_host_without_systemd_says_so_and_does_not_fail(sshd, ssh_discovery):
    # The test machine itself: a real systemctl with no systemd running, and a real ss.
    outcome = ssh_discovery(sshd)
    assert outcome.ok, outcome.message
    assert outcome.services == ()
    assert outcome.message.startswith("no systemd on this host")


def test_a_changed_host_key_stops_discovery_before_anything_is_sent(sshd, ssh_discovery):
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEi4EvOdT2UQL4eQQ5rd0Cf+5z3Y7T4iP3tC5l5oI1Ef"
    outcome = ssh_discovery(sshd, host_key=other)
    assert outcome.error_class is ErrorClass.HOST_KEY
