"""Kubernetes probe: API readiness, node readiness and capacity, and pods that are not ready.

The official `kubernetes` client is used without its global state: every check builds its
own `Configuration` and `ApiClient` from the instance's `connection_config`, and nothing
(no kubeconfig, no CA file) is written to disk. `connection_config` holds either

- `kubeconfig`: a secret reference to kubeconfig YAML, with an optional `context`; or
- `token`: a secret reference to a bearer token, with `api_url` (default
  `https://<host>:<port or 6443>`) and `ca_cert` (PEM text or a secret reference; default:
  the system's trust store).

TLS is always verified unless `insecure_skip_tls_verify: true` is given explicitly; the
result then says so at WARNING level. The config, the client and the error classes live in
`agent.connections.kubernetes`, so discovery lists workloads with the same connection rules.

Every read is bounded by the check's deadline and a size cap (`agent.connections.kubeapi`).
Credentials that may not list nodes or pods (403) still get readiness and version: the
result is a WARNING naming the forbidden Lists, and keeps the facts it could read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

from kubernetes.client import ApiClient
from kubernetes.utils import parse_quantity

from agent.connections.kubeapi import (
    SMALL_BODY_BYTES,
    Deadline,
    Limits,
    Listing,
    get,
    parse_json,
    status_error,
)
from agent.connections.kubernetes import SECRET_FIELDS as SECRET_FIELDS
from agent.connections.kubernetes import (
    Config,
    KubeApiClient,
    api_client_for,
    calling,
    parse_config,
    readable,
)
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Observation, ProbeError, Status
from agent.probes.base import InstanceFacts, Probe, Target, clip, resources

KIND = "kubernetes"
CHECK_API = "kubernetes.api_ready"
CHECK_NODES = "kubernetes.nodes_ready"
CHECK_PODS = "kubernetes.pods_ready"
CHECK_TLS = "kubernetes.tls_verified"
INSECURE_NOTE = "TLS verification is off (insecure_skip_tls_verify)"
_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.ERROR: 3}


# --- what the API says -------------------------------------------------------------------


def cpu_cores(quantity: str) -> float:
    """CPU cores of a quantity such as `4` or `3500m`."""
    return float(_quantity(quantity))


def memory_bytes(quantity: str) -> int:
    """Bytes of a quantity such as `16Gi`, `512M` or `1E`."""
    return int(_quantity(quantity))


def _quantity(quantity: str) -> Decimal:
    try:
        return parse_quantity(quantity)
    except (ValueError, ArithmeticError):
        raise ProbeError(ErrorClass.PROTOCOL, f"unparseable quantity {quantity!r}") from None


def _condition(obj: Mapping[str, Any], kind: str) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return condition.get("status")
    return None


def node_readiness(node: Mapping[str, Any]) -> str:
    """`True`, `False` or `Unknown` (also for a node without a Ready condition)."""
    status = _condition(node, "Ready")
    return status if status in ("True", "False") else "Unknown"


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """Whether a pod is Succeeded, or Running with its Ready condition True."""
    phase = (pod.get("status") or {}).get("phase")
    return phase == "Succeeded" or (phase == "Running" and _condition(pod, "Ready") == "True")


@dataclass(frozen=True)
class Resources:
    """CPU cores and memory bytes, summed over nodes."""

    cpu_cores: float = 0.0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_cores + other.cpu_cores, self.memory_bytes + other.memory_bytes)

    @classmethod
    def of(cls, quantities: Mapping[str, str] | None) -> Resources:
        """The cpu and memory of a node's `capacity` or `allocatable`."""
        quantities = quantities or {}
        return cls(
            cpu_cores(quantities.get("cpu", "0")), memory_bytes(quantities.get("memory", "0"))
        )

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready form."""
        return {"cpu_cores": round(self.cpu_cores, 3), "memory_bytes": self.memory_bytes}


@dataclass(frozen=True)
class Nodes:
    """Node readiness counts (Unknown counts as not ready) and summed resources."""

    ready: int = 0
    not_ready: int = 0
    unknown: int = 0
    capacity: Resources = Resources()
    allocatable: Resources = Resources()

    @property
    def total(self) -> int:
        """Every node, ready or not."""
        return self.ready + self.not_ready

    def add(self, node: Mapping[str, Any]) -> Nodes:
        """These counts with one more node."""
        readiness = node_readiness(node)
        status = node.get("status") or {}
        return Nodes(
            ready=self.ready + (readiness == "True"),
            not_ready=self.not_ready + (readiness != "True"),
            unknown=self.unknown + (readiness == "Unknown"),
            capacity=self.capacity + Resources.of(status.get("capacity")),
            allocatable=self.allocatable + Resources.of(status.get("allocatable")),
        )


@dataclass(frozen=True)
class Pods:
    """How many pods there are and how many of them are not ready."""

    total: int = 0
    not_ready: int = 0

    def add(self, pod: Mapping[str, Any]) -> Pods:
        """These counts with one more pod."""
        return Pods(self.total + 1, self.not_ready + (not pod_is_ready(pod)))


def summarize_nodes(nodes: Iterable[Mapping[str, Any]]) -> Nodes:
    """Readiness counts and summed capacity of `nodes`."""
    summary = Nodes()
    for node in nodes:
        summary = summary.add(node)
    return summary


def summarize_pods(pods: Iterable[Mapping[str, Any]]) -> Pods:
    """How many of `pods` are not ready."""
    summary = Pods()
    for pod in pods:
        summary = summary.add(pod)
    return summary


NODES = Listing("/api/v1/nodes", "nodes", "list nodes")
PODS = Listing("/api/v1/pods", "pods", "list pods")


@dataclass(frozen=True)
class Readiness:
    """Whether the API server says it is ready, and how it said so."""

    ready: bool
    detail: str


def readiness(api: ApiClient, deadline: Deadline) -> Readiness:
    """GET /readyz, or /version when a server does not serve /readyz to us (404, 403)."""
    with calling("GET /readyz", deadline):
        answer = get(api, "/readyz", deadline, SMALL_BODY_BYTES)
    if answer.status == 200:
        return Readiness(True, "readyz ok")
    if answer.status == 401:
        raise ProbeError(ErrorClass.AUTH, "GET /readyz: HTTP 401 Unauthorized")
    if answer.status in (403, 404):
        return Readiness(True, f"readyz answered {answer.status}; /version answered")
    lines = answer.body.decode(errors="replace").splitlines()
    failed = [line for line in lines if line.startswith("[-]")]
    return Readiness(False, f"readyz failed (HTTP {answer.status})" + _listed(failed))


def _listed(lines: list[str]) -> str:
    return (": " + ", ".join(line[3:][:100] for line in lines[:5])) if lines else ""


def server_version(api: ApiClient, deadline: Deadline) -> Mapping[str, str]:
    """The server's gitVersion and platform, from /version."""
    with calling("GET /version", deadline):
        answer = get(api, "/version", deadline, SMALL_BODY_BYTES)
    if answer.status != 200:
        raise status_error(answer, "GET /version")
    info = parse_json(answer.body, "GET /version")
    if not isinstance(info, dict) or not isinstance(info.get("gitVersion"), str):
        raise ProbeError(ErrorClass.PROTOCOL, "GET /version: the answer has no gitVersion")
    return {"server_version": info["gitVersion"][:100], "platform": str(info.get("platform"))[:100]}


# --- the probe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Survey:
    """Everything one check read from the API server; None where it was forbidden."""

    readiness: Readiness
    version: Mapping[str, str]
    nodes: Nodes | None
    pods: Pods | None
    forbidden: tuple[str, ...] = ()


def survey(api: ApiClient, deadline: Deadline, limits: Limits, ready: Readiness) -> Survey:
    """Read version, nodes and pods; what the credentials may not list is left out."""
    version = server_version(api, deadline)
    forbidden: list[str] = []
    nodes = readable(api, NODES, deadline, limits, Nodes, Nodes.add, forbidden)
    pods = readable(api, PODS, deadline, limits, Pods, Pods.add, forbidden)
    return Survey(ready, version, nodes, pods, tuple(forbidden))


def _worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.OK)


def verdict(seen: Survey, verify: bool) -> Observation:
    """The status, checks, facts and message of a survey."""
    checks = {
        CHECK_API: Status.OK if seen.readiness.ready else Status.CRITICAL,
        CHECK_NODES: _nodes_status(seen.nodes),
        CHECK_PODS: _pods_status(seen.pods),
    }
    if not verify:
        checks[CHECK_TLS] = Status.WARNING
    message = [f"{seen.version['server_version']}: {seen.readiness.detail}", *_counts(seen)]
    if seen.forbidden:
        message.append(f"WARNING: forbidden (HTTP 403): {', '.join(seen.forbidden)}")
    return Observation(
        facts=_facts(seen),
        checks=checks,
        status=_worst(checks.values()),
        message="; ".join(message + ([] if verify else [f"WARNING: {INSECURE_NOTE}"])),
    )


def _counts(seen: Survey) -> list[str]:
    nodes, pods, counts = seen.nodes, seen.pods, []
    if nodes is not None:
        unknown = f" ({nodes.unknown} Unknown)" if nodes.unknown else ""
        counts.append(f"{nodes.ready}/{nodes.total} nodes ready{unknown}")
    if pods is not None:
        counts.append(f"{pods.not_ready} of {pods.total} pods not ready")
    return counts


def _nodes_status(nodes: Nodes | None) -> Status:
    if nodes is None:  # forbidden: not judged, but not healthy either
        return Status.WARNING
    if nodes.ready == 0:
        return Status.CRITICAL
    return Status.WARNING if nodes.not_ready else Status.OK


def _pods_status(pods: Pods | None) -> Status:
    return Status.WARNING if pods is None or pods.not_ready else Status.OK


def _facts(seen: Survey) -> dict[str, Any]:
    facts: dict[str, Any] = {**seen.version, "api_ready": seen.readiness.ready}
    if seen.nodes is not None:
        facts |= {
            "nodes_total": seen.nodes.total,
            "nodes_ready": seen.nodes.ready,
            "nodes_not_ready": seen.nodes.not_ready,
            "nodes_unknown": seen.nodes.unknown,
            "capacity": seen.nodes.capacity.as_dict(),
            "allocatable": seen.nodes.allocatable.as_dict(),
        }
    if seen.pods is not None:
        facts |= {"pods_total": seen.pods.total, "pods_not_ready": seen.pods.not_ready}
    if seen.forbidden:
        facts["forbidden"] = list(seen.forbidden)
    return facts


def _not_ready(ready: Readiness, exc: ProbeError) -> Observation:
    """A server that said it is not ready and then failed a call: critical, not an error."""
    return Observation(
        facts={"api_ready": False},
        checks={CHECK_API: Status.CRITICAL},
        status=Status.CRITICAL,
        message=f"{ready.detail}; then {exc}",
    )


class KubernetesProbe(Probe):
    """Health of a Kubernetes cluster through its API server."""

    kind = KIND

    def __init__(
        self,
        host: str,
        port: int | None,
        connection_config: Mapping[str, Any],
        resolver: SecretResolver,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(timeout_s)
        self.host = host
        self.port = port
        self.connection_config = connection_config
        self.resolver = resolver

    @classmethod
    def of(cls, target: Target) -> Self:
        """The probe of one `kubernetes` instance."""
        t = target
        return cls(t.host, t.port, t.connection_config, t.resolver, t.timeout_s)

    def config(self) -> Config:
        """The validated connection settings; a CONFIG ProbeError that never echoes a value."""
        return parse_config(self.host, self.port, self.connection_config)

    def api_client(self, config: Config, deadline: Deadline) -> KubeApiClient:
        """The client this probe talks through; override to swap it."""
        return api_client_for(config, self.resolver, deadline)

    def check(self) -> Observation:
        """Survey the cluster within `timeout_s` and judge what it says."""
        config = self.config()
        deadline = Deadline(self.timeout_s)
        with self.api_client(config, deadline) as api:
            self.revealed.extend(api.secrets)
            ready = readiness(api, deadline)
            try:
                seen = survey(api, deadline, config.limits, ready)
            except ProbeError as exc:
                if ready.ready or exc.error_class is ErrorClass.AUTH:
                    raise
                return _not_ready(ready, exc)
        return verdict(seen, config.verify)


def instance_facts(facts: Mapping[str, Any]) -> InstanceFacts:
    """What the instance row keeps of this probe's facts: `os_type`, `os_version`, `resources`."""
    capacity = facts.get("capacity") or {}
    return InstanceFacts(
        "kubernetes",
        clip(facts.get("server_version")),
        resources(capacity.get("cpu_cores"), {"total_bytes": capacity.get("memory_bytes")}, None),
    )


from_instance = KubernetesProbe.from_instance
