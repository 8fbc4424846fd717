"""Docker Engine API probe: ping, version, info and container counts by state and health.

`connection_config` fields (all optional):

- `docker_host`: the endpoint, as the Docker CLI spells it:
  - `unix:///run/podman/podman.sock` (the default when neither `docker_host` nor the
    instance's `port` is given); the socket must be on the worker itself;
  - `tcp://host:port`: TLS is on unless `tls: false` says otherwise (the Engine API over
    plain TCP is unauthenticated root on that host); the server's certificate is always
    verified, against `ca_cert` when given, else the worker's trust store. With no
    `docker_host` but an instance `port`, the endpoint is `tcp://<host>:<port>`;
  - `ssh://user@host[:port]`: through the docker SDK's paramiko transport. Its limits: it
    authenticates only with the worker's `~/.ssh/config`, ssh-agent and default keys (no
    secret references), it refuses hosts missing from the worker's `known_hosts`, and it
    runs `docker system dial-stdio` on the remote, so the remote needs the `docker` CLI
    (Podman hosts need `podman-docker`).
- `tls`: force TLS on or off for `tcp://`.
- `ca_cert`, `client_cert`: PEM text, or a secret reference (`enc:`, `env:`, `file:`).
- `client_key`: a secret reference only; with `client_cert`, or neither.

The engine's address must be permitted by the instances' address policy
(`agent.connections.address_policy`, judged when each connection opens); a redirect is never
followed (POLICY error).

TLS material is written to a private directory (0700, files 0600) only while the client
lives, because `requests` loads it from paths on every new connection; the directory is
removed when the check ends, whatever happened.

Facts: `endpoint`; `engine` (api_version, version, os, arch, kernel_version); `host`
(operating_system, ncpu, mem_total_bytes); `containers` (total, running, paused, stopped as
the engine's info counts them); `containers_by_state` (running, exited, paused, created,
restarting, dead, plus any other state seen); `containers_by_health` (healthy, unhealthy,
starting, none), counted over running containers only: a stopped container keeps its last
verdict in Podman, which would raise stale warnings. Health comes from the list endpoint's
`health` filter, a fixed four list calls however many containers there are (Docker's
`Status` text says "(healthy)", Podman's does not). The status is WARNING when a container
is unhealthy or restarting.

Errors: a unix socket that is missing is UNREACHABLE, one nobody listens on is REFUSED, one
the worker may not open is AUTH, a path that is not a socket is CONFIG; TLS failures are TLS,
Engine API errors, non-HTTP answers, invalid JSON and answers larger than
`dockerwire.MAX_RESPONSE_BYTES` PROTOCOL, a silent or dripping engine TIMEOUT. Over `unix://`
and `tcp://` the SDK's requests go through `dockerwire.DockerAdapter`, so `timeout_s` is the
deadline of the whole check (its eight requests: the SDK's own version call, ping, version,
info and four lists); over `ssh://` it is per request. A host that is an IPv6 literal is
bracketed in the endpoint (`tcp://[::1]:2375`).
The docker SDK wraps everything in DockerException or requests' errors; the class comes
from what they wrap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Self

import docker
import httpx
import paramiko
import requests
import requests.adapters
from docker.errors import DockerException

from agent.connections.docker import (
    HEALTHS,
    STATES,
    Config,
    Resolver,
    check_socket,
    client_for,
    error_class,
    explain,
)
from agent.connections.docker import SECRET_FIELDS as SECRET_FIELDS
from agent.core.results import ErrorClass, Observation, ProbeError, Status, parse_config
from agent.probes.base import InstanceFacts, Probe, Target, clip, resources

CAN_CONNECT = "docker.can_connect"
CONTAINERS_HEALTHY = "docker.containers_healthy"


def engine_facts(api: docker.APIClient) -> dict[str, Any]:
    """What `/_ping`, `/version` and `/info` say about the engine and its host."""
    if not api.ping():
        raise ProbeError(ErrorClass.PROTOCOL, "the engine did not answer /_ping with OK")
    version, info = api.version(), api.info()
    return {
        "engine": {
            "api_version": version.get("ApiVersion"),
            "version": version.get("Version"),
            "os": version.get("Os"),
            "arch": version.get("Arch"),
            "kernel_version": version.get("KernelVersion"),
        },
        "host": {
            "operating_system": info.get("OperatingSystem"),
            "ncpu": info.get("NCPU"),
            "mem_total_bytes": info.get("MemTotal"),
        },
        "containers": {
            "total": info.get("Containers"),
            "running": info.get("ContainersRunning"),
            "paused": info.get("ContainersPaused"),
            "stopped": info.get("ContainersStopped"),
        },
    }


def count_states(listed: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Containers by state, every usual state present (zero when none is in it)."""
    seen = Counter(str(item.get("State", "unknown")).lower() for item in listed)
    return {state: seen.get(state, 0) for state in STATES} | dict(seen)


def count_health(api: docker.APIClient, running: int) -> dict[str, int]:
    """Running containers by health, one filtered list call per verdict."""
    counts = {
        health: len(api.containers(filters={"status": "running", "health": health}))
        for health in HEALTHS
    }
    counts["none"] = max(running - sum(counts.values()), 0)
    return counts


def verdict(by_state: Mapping[str, int], by_health: Mapping[str, int]) -> tuple[Status, str]:
    """WARNING when a container is unhealthy or restarting, with the reason; else OK."""
    problems = [
        f"{count} container{'s' if count != 1 else ''} {what}"
        for what, count in (
            ("unhealthy", by_health.get("unhealthy", 0)),
            ("restarting", by_state.get("restarting", 0)),
        )
        if count
    ]
    return (Status.WARNING, ", ".join(problems)) if problems else (Status.OK, "")


class DockerProbe(Probe):
    """Pings the engine, reads its version and info, and counts its containers."""

    kind = "docker"

    def __init__(self, raw: Mapping[str, Any], resolver: Resolver, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self._raw = raw
        self._resolver = self.tracking(resolver)

    @classmethod
    def of(cls, target: Target) -> Self:
        """The Docker probe of one instance."""
        raw = {"host": target.host, "port": target.port, **target.connection_config}
        return cls(raw, target.resolver, target.timeout_s)

    def config(self) -> Config:
        """The validated connection settings; a CONFIG ProbeError that never echoes a value."""
        return parse_config(Config, self._raw)

    def client(self, config: Config) -> AbstractContextManager[docker.APIClient]:
        """The client for one check; tests and subclasses may override it."""
        return client_for(config, self._resolver, self.timeout_s)

    def check(self) -> Observation:
        """Ask the engine about itself and its containers."""
        self.revealed.clear()
        config = self.config()
        check_socket(config, self.timeout_s)
        try:
            facts = self._look(config)
        except (
            DockerException,
            requests.RequestException,
            httpx.HTTPError,
            OSError,
            ProbeError,
            paramiko.SSHException,
        ) as exc:
            raise explain(exc, config, self.timeout_s) from exc
        status, message = verdict(facts["containers_by_state"], facts["containers_by_health"])
        checks = {CAN_CONNECT: Status.OK, CONTAINERS_HEALTHY: status}
        return Observation(facts=facts, checks=checks, status=status, message=message)

    def _look(self, config: Config) -> dict[str, Any]:
        with self.client(config) as api:
            facts = {"endpoint": config.endpoint, **engine_facts(api)}
            by_state = count_states(api.containers(all=True))
            by_health = count_health(api, by_state["running"])
        return facts | {"containers_by_state": by_state, "containers_by_health": by_health}

    def classify(self, exc: BaseException) -> ErrorClass:
        """Configuration and credential errors are CONFIG; docker SDK errors by their cause."""
        return error_class(exc)


def instance_facts(facts: Mapping[str, Any]) -> InstanceFacts:
    """What the instance row keeps of this probe's facts: `os_type`, `os_version`, `resources`."""
    engine, host = facts.get("engine") or {}, facts.get("host") or {}
    return InstanceFacts(
        clip(engine.get("os")),
        clip(host.get("operating_system")),
        resources(host.get("ncpu"), {"total_bytes": host.get("mem_total_bytes")}, None),
    )


from_instance = DockerProbe.from_instance
