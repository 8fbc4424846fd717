"""The deployment files: valid Kubernetes objects and a compose file that names real settings."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from agent.cli.commands import main as cli
from agent.core.settings import QUEUES, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSION = "1.35"  # the newest minor version whose schemas the package bundles
SETTINGS = {f"AGENT_{name.upper()}" for name in Settings.model_fields}
AGENT_SERVICES = {"migrate", "worker", "beat", "flower"}


def objects() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects() if o["kind"] == kind}


def containers(workload: dict) -> list[dict]:
    pod = workload["spec"]["template"]["spec"]
    return pod["containers"] + pod.get("initContainers", [])


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_file_keys(path: Path) -> set[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_a_valid_kubernetes_object(path: Path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_every_agent_variable_the_deployments_set_is_a_real_setting():
    keys = set(of_kind("ConfigMap")["infra-agent-config"]["data"])
    keys |= set(of_kind("Secret")["infra-agent-secrets"]["stringData"])
    keys |= env_file_keys(DEPLOY / "secrets.env.example")
    for service in compose()["services"].values():
        keys |= set(service.get("environment", {}))
    agent_keys = {key for key in keys if key.startswith("AGENT_")}
    assert agent_keys - SETTINGS == set()
    assert {"AGENT_DATABASE_URL", "AGENT_BROKER_URL", "AGENT_SECRET_KEY"} <= agent_keys


def test_every_container_has_resource_requests_and_limits_and_runs_as_non_root():
    for name, workload in {**of_kind("Deployment"), **of_kind("Job")}.items():
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], name
        for container in containers(workload):
            assert {"requests", "limits"} <= set(container["resources"]), (name, container["name"])


def worker_queues(workload: dict) -> set[str]:
    command = workload["spec"]["template"]["spec"]["containers"][0]["command"]
    return set(command[command.index("-Q") + 1].split(","))


def test_the_workers_consume_every_central_queue_and_each_zone_worker_only_its_zone():
    workers = {n: w for n, w in of_kind("Deployment").items() if "-worker" in n}
    central = workers.pop("infra-agent-worker")
    assert worker_queues(central) == set(QUEUES)
    assert workers, "at least one zone's worker shows how zones are deployed"
    for name, workload in workers.items():
        zone = name.removeprefix("infra-agent-worker-")
        assert worker_queues(workload) == {f"health.{zone}", f"discovery.{zone}"}


def test_worker_probes_and_healthchecks_call_commands_the_cli_has():
    for name, workload in of_kind("Deployment").items():
        for container in containers(workload):
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command")
            commands = [probe, container["command"]] if probe else [container["command"]]
            for command in commands:
                if command[0] == "infra-agent":
                    assert command[1] in cli.commands, (name, command)
    worker_check = compose()["services"]["worker"]["healthcheck"]["test"]
    assert worker_check[1:] == ["infra-agent", "worker-alive"]
    assert "worker-alive" in cli.commands


def test_beat_runs_twice_for_failover_and_flower_only_behind_its_login():
    assert of_kind("Deployment")["infra-agent-beat"]["spec"]["replicas"] == 2
    assert compose()["services"]["beat"]["deploy"]["replicas"] == 2
    assert of_kind("Service")["infra-agent-flower"]["spec"]["type"] == "ClusterIP"
    assert "AGENT_FLOWER_PASSWORD" in of_kind("Secret")["infra-agent-secrets"]["stringData"]
    assert "AGENT_FLOWER_PASSWORD" in env_file_keys(DEPLOY / "secrets.env.example")


def test_the_compose_stack_migrates_once_before_the_agent_starts():
    services = compose()["services"]
    assert {"postgres", "redis", *AGENT_SERVICES} <= set(services)
    assert services["postgres"]["image"].startswith("timescale/timescaledb:")
    assert "--appendonly yes" in " ".join(services["redis"]["command"])
    assert services["migrate"]["command"] == ["infra-agent", "migrate"]
    for name in AGENT_SERVICES - {"migrate"}:
        after = services[name]["depends_on"]
        assert after["migrate"]["condition"] == "service_completed_successfully", name
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        assert service.get("image") or service.get("build"), name


def test_the_dockerfile_installs_the_locked_dependencies_with_uv():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"uv sync --frozen --no-dev --no-editable", dockerfile)
    assert "USER agent" in dockerfile
