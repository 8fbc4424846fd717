from pathlib import Path

import pytest

from agent.core.results import ErrorClass, ProbeError
from agent.discovery import docker, kubernetes, systemd
from agent.discovery.base import SCRUBBED, DiscoveredService, Discoverer, scrub_labels

DATA = Path(__file__).resolve().parents[1] / "data" / "discovery"


def recorded(units_file: str, units_exit: int = 0) -> str:
    """The discovery command's output, assembled from the recorded outputs of its parts."""
    parts = [
        ("units", (DATA / units_file).read_text(), units_exit),
        ("pids", (DATA / "systemctl-show-mainpid-systemd252.txt").read_text(), 0),
        ("sockets", (DATA / "ss-tlnp.txt").read_text(), 0),
    ]
    text = "".join(
        f"{systemd.MARK}{name}\n{body.rstrip()}\n{systemd.MARK}{name}-exit\n{code}\n"
        for name, body, code in parts
    )
    return text + f"{systemd.MARK}end\n"


@pytest.mark.parametrize(
    "units_file",
    ["systemctl-list-units-systemd252.json", "systemctl-list-units-systemd252.txt"],
)
def test_systemd_output_in_json_or_plain_gives_the_same_services(units_file):
    services, note = systemd.services_of(recorded(units_file), "db1.example")
    by_name = {s.name: s for s in services}
    assert note == f"{len(services)} systemd services"
    assert by_name["ssh.service"].status == "running"
    assert by_name["mariadb.service"].status == "error"
    assert by_name["apt-daily.service"].status == "stopped"
    assert "auditd.service" not in by_name  # load state not-found: a reference, not a unit
    assert by_name["redis-server.service"].service_config["description"] == (
        "Advanced key-value store"
    )


def names(units_file):
    return {s.name for s in systemd.services_of(recorded(units_file), "h")[0]}


def test_both_recorded_forms_list_the_same_units():
    assert names("systemctl-list-units-systemd252.json") == names(
        "systemctl-list-units-systemd252.txt"
    )


def test_listening_sockets_attach_to_the_unit_whose_main_pid_holds_them():
    services, _ = systemd.services_of(recorded("systemctl-list-units-systemd252.json"), "db1")
    by_name = {s.name: s for s in services}
    ssh_ports = {(e["host"], e["port"]) for e in by_name["ssh.service"].endpoints}
    assert ssh_ports == {("db1", 22)}  # 0.0.0.0 and :: both mean the instance itself
    redis = {(e["address"], e["port"]) for e in by_name["redis-server.service"].endpoints}
    assert redis == {("127.0.0.1", 6379), ("::1", 6379)}
    assert by_name["mosquitto.service"].endpoints == []  # ss could not name its process


def test_a_host_without_systemd_is_reported_plainly_not_as_a_failure():
    text = (
        f"{systemd.MARK}units\n{(DATA / 'systemctl-without-systemd.txt').read_text()}"
        f"{systemd.MARK}units-exit\n1\n{systemd.MARK}end\n"
    )
    services, note = systemd.services_of(text, "h")
    assert services == []
    assert note.startswith("no systemd on this host: System has not been booted with systemd")


def test_cut_or_garbled_output_is_a_protocol_error():
    with pytest.raises(ProbeError) as raised:
        systemd.services_of("@@agent-discovery:units\n[", "h")
    assert raised.value.error_class is ErrorClass.PROTOCOL


def test_the_discovery_command_is_one_fixed_string():
    assert systemd.DISCOVERY_COMMAND.startswith("sh -c '")
    assert systemd.DISCOVERY_COMMAND.count("'") == 2


@pytest.mark.parametrize(
    ("state", "code", "health", "status"),
    [
        ("running", None, None, "running"),
        ("running", None, "healthy", "running"),
        ("running", None, "unhealthy", "error"),
        ("exited", 0, None, "stopped"),
        ("exited", 143, None, "stopped"),
        ("exited", 3, None, "error"),
        ("paused", None, None, "stopped"),
        ("created", None, None, "stopped"),
        ("restarting", None, None, "error"),
        ("dead", None, None, "error"),
    ],
)
def test_container_status_comes_from_state_exit_code_and_health(state, code, health, status):
    assert docker.status_of(state, code, health) == status


def test_a_container_list_entry_becomes_a_service_without_command_or_secrets():
    entry = {
        "Id": "abc123",
        "Names": ["/shop-db-1"],
        "Image": "docker.io/library/postgres:16",
        "Command": "postgres --password=hunter2",
        "State": "exited",
        "Status": "Exited (1) 3 minutes ago",
        "Ports": [
            {"IP": "0.0.0.0", "PrivatePort": 5432, "PublicPort": 15432, "Type": "tcp"},
            {"PrivatePort": 9187, "Type": "tcp"},
        ],
        "Labels": {
            "com.docker.compose.project": "shop",
            "DB_PASSWORD": "hunter2",
            docker.HEALTH_URL_LABEL: "/ready",
        },
    }
    service = docker.service_of(entry, None, "docker1")
    assert service.name == "shop-db-1"
    assert service.status == "error"
    assert service.endpoints == [
        {"host": "docker1", "port": 15432, "protocol": "tcp", "container_port": 5432}
    ]
    assert service.service_config["compose_project"] == "shop"
    assert service.service_config["labels"]["DB_PASSWORD"] == SCRUBBED
    assert service.health_check_url == "http://docker1:15432/ready"
    assert "hunter2" not in str(service.row())


def test_label_values_whose_keys_look_secret_are_scrubbed():
    labels = scrub_labels({"app": "web", "api-key": "k", "x.auth.token": "t", "tier": "1"})
    assert labels == {"api-key": SCRUBBED, "app": "web", "tier": "1", "x.auth.token": SCRUBBED}


@pytest.mark.parametrize(
    ("desired", "ready", "status"),
    [(0, 0, "stopped"), (3, 3, "running"), (3, 1, "degraded"), (2, 0, "error")],
)
def test_workload_status_comes_from_ready_against_desired(desired, ready, status):
    assert kubernetes.workload_status(desired, ready) == status


def test_a_namespace_filter_refuses_names_kubernetes_would_refuse():
    with pytest.raises(ValueError, match="namespace names"):
        kubernetes.Options.model_validate({"namespaces": ["Prod"]})


class Exploding(Discoverer):
    kind = "test"
    types = frozenset({"x"})

    def discover(self):
        raise ConnectionRefusedError("password=hunter2 refused")


class Twice(Discoverer):
    kind = "test"
    types = frozenset({"x"})

    def discover(self):
        return [DiscoveredService("a", "x", "running"), DiscoveredService("a", "x", "stopped")], ""


def test_a_failed_discovery_is_an_outcome_with_a_class_and_a_scrubbed_message():
    outcome = Exploding().run()
    assert not outcome.ok
    assert outcome.services == ()
    assert outcome.error_class is ErrorClass.REFUSED
    assert "hunter2" not in outcome.message


def test_a_service_reported_twice_is_kept_once():
    assert [s.status for s in Twice().run().services] == ["stopped"]
