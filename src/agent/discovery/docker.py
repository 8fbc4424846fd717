"""Containers of a Docker Engine API (or Podman's compatible one) as `docker_container` services.

Every container counts, running or not: one list call with `all=true`, plus three filtered
list calls for health (`healthy`, `unhealthy`, `starting`), since Podman's list entries do
not say it. That is four calls however many containers there are, and none of them is an
inspect: the list endpoint carries no environment variables, so none can be copied. The
command line is left out too (arguments often carry secrets), and label values whose keys
look secret are scrubbed.

Status: `running`; `error` when running but unhealthy, restarting, dead, or exited with a
code other than 0, 137 or 143 (a plain stop); `stopped` when exited cleanly, created or
paused. Endpoints are the published ports (`0.0.0.0` and `::` become the instance's host).
`service_config` holds image, image id, state, exit code, health, compose project and
service, and the labels.

A container declares its health URL with the label `HEALTH_URL_LABEL`: a full URL, or a
path that is joined to its first published TCP endpoint (`/healthz` becomes
`http://<host>:<port>/healthz`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Self

import docker
import httpx
import paramiko
import requests
from docker.errors import DockerException

from agent.connections import docker as engine_api
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, parse_config
from agent.discovery.base import (
    ANY_ADDRESS,
    ERROR,
    RUNNING,
    STOPPED,
    DiscoveredService,
    Discoverer,
    scrub_labels,
)
from agent.probes.base import Target

TYPE = "docker_container"
HEALTH_URL_LABEL = "org.infra-agent.health-url"
COMPOSE_PROJECT_LABELS = ("com.docker.compose.project", "io.podman.compose.project")
COMPOSE_SERVICE_LABELS = ("com.docker.compose.service", "io.podman.compose.service")
CLEAN_EXIT_CODES = frozenset({0, 137, 143})  # success, docker stop's SIGKILL and SIGTERM
_EXIT_CODE = re.compile(r"^Exited \((-?\d+)\)")


def exit_code(entry: Mapping[str, Any]) -> int | None:
    """The exit code in a list entry's `Status` text (`Exited (3) 2 minutes ago`)."""
    found = _EXIT_CODE.match(str(entry.get("Status") or ""))
    return int(found[1]) if found else None


def status_of(state: str, code: int | None, health: str | None) -> str:
    """The service status of a container's state, exit code and health verdict."""
    if state == "running":
        return ERROR if health == "unhealthy" else RUNNING
    if state in ("restarting", "dead"):
        return ERROR
    if state == "exited" and code is not None and code not in CLEAN_EXIT_CODES:
        return ERROR
    return STOPPED


def endpoints_of(entry: Mapping[str, Any], host: str) -> list[dict[str, Any]]:
    """The published ports of a list entry, each once, in a stable order."""
    found = {
        (
            host if str(port.get("IP") or "") in ANY_ADDRESS else str(port["IP"]),
            int(port["PublicPort"]),
            str(port.get("Type") or "tcp"),
            int(port.get("PrivatePort") or 0),
        )
        for port in entry.get("Ports") or ()
        if port.get("PublicPort")
    }
    return [
        {"host": h, "port": p, "protocol": proto, "container_port": private}
        for h, p, proto, private in sorted(found)
    ]


def health_url(labels: Mapping[str, str], endpoints: list[dict[str, Any]]) -> str | None:
    """The URL a container declares with `HEALTH_URL_LABEL`, if any."""
    declared = labels.get(HEALTH_URL_LABEL, "").strip()
    if declared.startswith(("http://", "https://")):
        return declared
    tcp = [e for e in endpoints if e["protocol"] == "tcp"]
    if declared.startswith("/") and tcp:
        host = f"[{tcp[0]['host']}]" if ":" in tcp[0]["host"] else tcp[0]["host"]
        return f"http://{host}:{tcp[0]['port']}{declared}"
    return None


def container_name(entry: Mapping[str, Any]) -> str:
    """The container's name without Docker's leading slash (its short id when it has none)."""
    names = entry.get("Names") or ()
    return str(names[0]).lstrip("/") if names else str(entry.get("Id", ""))[:12]


def _first(labels: Mapping[str, str], keys: Iterable[str]) -> str | None:
    return next((labels[k] for k in keys if labels.get(k)), None)


def service_of(entry: Mapping[str, Any], health: str | None, host: str) -> DiscoveredService:
    """The service of one list entry."""
    labels = scrub_labels(entry.get("Labels"))
    state, code = str(entry.get("State") or "unknown").lower(), exit_code(entry)
    endpoints = endpoints_of(entry, host)
    config = {
        "image": entry.get("Image"),
        "image_id": entry.get("ImageID"),
        "container_id": entry.get("Id"),
        "state": state,
        "exit_code": code,
        "health": health,
        "compose_project": _first(labels, COMPOSE_PROJECT_LABELS),
        "compose_service": _first(labels, COMPOSE_SERVICE_LABELS),
        "labels": labels,
    }
    return DiscoveredService(
        container_name(entry),
        TYPE,
        status_of(state, code, health),
        config,
        endpoints,
        health_url(labels, endpoints),
    )


def health_by_id(api: docker.APIClient) -> dict[str, str]:
    """Each container's health verdict, from one filtered list call per verdict."""
    return {
        entry["Id"]: verdict
        for verdict in engine_api.HEALTHS
        for entry in api.containers(all=True, filters={"health": verdict})
    }


class DockerDiscoverer(Discoverer):
    """Lists an engine's containers through the same client and rules as the Docker probe."""

    kind = "docker"
    types = frozenset({TYPE})

    def __init__(self, raw: Mapping[str, Any], resolver: SecretResolver, timeout_s: float):
        self._raw = raw
        self._resolver = self.tracking(resolver)
        self.timeout_s = timeout_s

    @classmethod
    def of(cls, target: Target) -> Self:
        """The discoverer of one `docker_api` instance."""
        raw = {"host": target.host, "port": target.port, **target.connection_config}
        return cls(raw, target.resolver, target.timeout_s)

    def discover(self) -> tuple[list[DiscoveredService], str]:
        """Every container, whatever its state."""
        config = parse_config(engine_api.Config, self._raw)
        engine_api.check_socket(config, self.timeout_s)
        try:
            with engine_api.client_for(config, self._resolver, self.timeout_s) as api:
                listed = api.containers(all=True)
                health = health_by_id(api)
        except (
            DockerException,
            requests.RequestException,
            httpx.HTTPError,
            OSError,
            paramiko.SSHException,
        ) as exc:
            raise engine_api.explain(exc, config, self.timeout_s) from exc
        host = str(self._raw.get("host") or "")
        services = [service_of(e, health.get(e.get("Id", "")), host) for e in listed]
        return services, f"{len(services)} containers"

    def classify(self, exc: BaseException) -> ErrorClass:
        """Docker SDK failures by their cause, like the probe."""
        return engine_api.error_class(exc)


from_instance = DockerDiscoverer.from_instance
