"""Workloads and Services of a Kubernetes cluster, per namespace.

Deployments, StatefulSets and DaemonSets become `kubernetes_deployment`,
`kubernetes_statefulset` and `kubernetes_daemonset` services, Services become
`kubernetes_service`; each is named `<namespace>/<name>`. The connection is the one the probe
uses (`agent.connections.kubernetes.api_client_for`: same config, secrets and TLS rules), and
Lists are paged the same way. `connection_config.namespaces` (a list of names) limits discovery
to those namespaces; without it every namespace is read with cluster-wide List calls.

Status, from ready against desired replicas (a DaemonSet's desired count is the number of
nodes it is scheduled on): `stopped` when none are desired, `running` when all are ready,
`degraded` when some are, `error` when none are. A Service is `running`; its endpoints are
its ports (host `<name>.<namespace>.svc`, with cluster IP, target port and node port).
`service_config` holds kind, namespace, labels (secret-looking values scrubbed), replica
counts and the images of the pod template: never a pod spec's environment. A headless
Service's `clusterIP: "None"` is no cluster IP; `default/kubernetes` (the API server's own
Service) is not reported.

Each namespace (or kind, cluster-wide) is listed on its own: a List the credentials may not
read (403) is named in the outcome's message and its services are `unread`, so
reconciliation never marks them missing; only when every List is forbidden does discovery
fail (`auth`). Lists are bounded like the probe's (`agent.connections.kubeapi`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Self

from kubernetes.client import ApiClient
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.connections import kubeapi
from agent.connections import kubernetes as kube
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, parse_config
from agent.discovery.base import (
    DEGRADED,
    ERROR,
    RUNNING,
    STOPPED,
    DiscoveredService,
    Discoverer,
    scrub_labels,
)
from agent.probes.base import Target

# kind: (service type, the resource's plural in the API)
WORKLOADS = {
    "Deployment": ("kubernetes_deployment", "deployments"),
    "StatefulSet": ("kubernetes_statefulset", "statefulsets"),
    "DaemonSet": ("kubernetes_daemonset", "daemonsets"),
}
SERVICE_TYPE = "kubernetes_service"
# The API server's own Service, in every cluster: the control plane, not a workload.
CONTROL_PLANE_SERVICE = ("default", "kubernetes")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class Options(BaseModel):
    """Discovery's own fields of `connection_config`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    namespaces: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="the namespaces to discover workloads in (default: all)",
    )

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not _NAMESPACE.match(name):
                raise ValueError("namespaces must be Kubernetes namespace names")
        return value


def workload_status(desired: int, ready: int) -> str:
    """The status of ready against desired replicas."""
    if desired <= 0:
        return STOPPED
    if ready >= desired:
        return RUNNING
    return DEGRADED if ready > 0 else ERROR


def replicas(kind: str, obj: Mapping[str, Any]) -> tuple[int, int]:
    """(desired, ready) replicas of a workload."""
    status = obj.get("status") or {}
    if kind == "DaemonSet":
        return int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0)
    desired = (obj.get("spec") or {}).get("replicas")
    return (1 if desired is None else int(desired)), int(status.get("readyReplicas") or 0)


def _name(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name"))


def _images(obj: Mapping[str, Any]) -> list[str]:
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [*(pod.get("initContainers") or ()), *(pod.get("containers") or ())]
    return [str(c["image"]) for c in containers if c.get("image")]


def workload_service(kind: str, obj: Mapping[str, Any]) -> DiscoveredService:
    """The service of one Deployment, StatefulSet or DaemonSet."""
    namespace, name = _name(obj)
    desired, ready = replicas(kind, obj)
    config = {
        "kind": kind,
        "namespace": namespace,
        "labels": scrub_labels((obj.get("metadata") or {}).get("labels")),
        "replicas": {"desired": desired, "ready": ready},
        "images": _images(obj),
    }
    return DiscoveredService(
        f"{namespace}/{name}", WORKLOADS[kind][0], workload_status(desired, ready), config
    )


def service_endpoints(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Service's ports as endpoints."""
    namespace, name = _name(obj)
    spec = obj.get("spec") or {}
    return [
        {
            "host": f"{name}.{namespace}.svc",
            "cluster_ip": _cluster_ip(spec.get("clusterIP")),
            "port": port.get("port"),
            "protocol": str(port.get("protocol") or "TCP").lower(),
            "name": port.get("name"),
            "target_port": port.get("targetPort"),
            "node_port": port.get("nodePort"),
        }
        for port in spec.get("ports") or ()
    ]


def _cluster_ip(value: Any) -> str | None:
    """A Service's cluster IP; a headless Service's `"None"` (or none at all) is None."""
    return None if value in (None, "", "None") else str(value)


def service_service(obj: Mapping[str, Any]) -> DiscoveredService:
    """The service of one Kubernetes Service."""
    namespace, name = _name(obj)
    spec = obj.get("spec") or {}
    config = {
        "kind": "Service",
        "namespace": namespace,
        "labels": scrub_labels((obj.get("metadata") or {}).get("labels")),
        "service_type": spec.get("type"),
        "selector": scrub_labels(spec.get("selector")),
    }
    return DiscoveredService(
        f"{namespace}/{name}", SERVICE_TYPE, RUNNING, config, service_endpoints(obj)
    )


@dataclass(frozen=True)
class Read:
    """One List discovery reads: where, what it makes, and what it leaves unread if forbidden."""

    listing: kubeapi.Listing
    make: Callable[[Mapping[str, Any]], DiscoveredService | None]
    unread: tuple[str, str]  # (service type, name prefix) kept as they are when forbidden


def _service_unless_control_plane(obj: Mapping[str, Any]) -> DiscoveredService | None:
    return None if _name(obj) == CONTROL_PLANE_SERVICE else service_service(obj)


def _resources() -> list[tuple[str, str, str, Callable[[Mapping[str, Any]], Any]]]:
    """(API group path, plural, service type, maker) of every resource discovery lists."""
    workloads = [
        ("/apis/apps/v1", plural, service_type, partial(workload_service, kind))
        for kind, (service_type, plural) in WORKLOADS.items()
    ]
    return [*workloads, ("/api/v1", "services", SERVICE_TYPE, _service_unless_control_plane)]


def reads(namespaces: tuple[str, ...] | None) -> Iterator[Read]:
    """The Lists that cover the wanted namespaces (None: cluster-wide Lists)."""
    for namespace in namespaces or (None,):
        scope = f"/namespaces/{namespace}" if namespace else ""
        where = f" in {namespace}" if namespace else ""
        prefix = f"{namespace}/" if namespace else ""
        for group, plural, service_type, make in _resources():
            listing = kubeapi.Listing(f"{group}{scope}/{plural}", plural, f"list {plural}{where}")
            yield Read(listing, make, (service_type, prefix))


def _append(
    make: Callable[[Mapping[str, Any]], DiscoveredService | None],
) -> Callable[[list[DiscoveredService], Mapping[str, Any]], list[DiscoveredService]]:
    def step(found: list[DiscoveredService], obj: Mapping[str, Any]) -> list[DiscoveredService]:
        service = make(obj)
        if service is not None:
            found.append(service)
        return found

    return step


class KubernetesDiscoverer(Discoverer):
    """Lists a cluster's workloads and Services through the client the probe uses."""

    kind = "kubernetes"
    types = frozenset({*(t for t, _ in WORKLOADS.values()), SERVICE_TYPE})

    def __init__(
        self,
        host: str,
        port: int | None,
        connection_config: Mapping[str, Any],
        resolver: SecretResolver,
        timeout_s: float,
    ) -> None:
        self._raw = (host, port, connection_config)
        self._resolver = resolver
        self.timeout_s = timeout_s
        self._unread: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, target: Target) -> Self:
        """The discoverer of one `kubernetes` instance."""
        t = target
        return cls(t.host, t.port, t.connection_config, t.resolver, t.timeout_s)

    def discover(self) -> tuple[list[DiscoveredService], str]:
        """Every workload and Service in the wanted namespaces that the credentials may list."""
        config = kube.parse_config(*self._raw)
        options = parse_config(Options, self._raw[2] or {})
        deadline = kubeapi.Deadline(self.timeout_s)
        with kube.api_client_for(config, self._resolver, deadline) as api:
            self.revealed.extend(api.secrets)
            found, forbidden = self._read(
                api, list(reads(options.namespaces)), deadline, config.limits
            )
        where = ", ".join(options.namespaces) if options.namespaces else "all namespaces"
        note = f"{len(found)} workloads and services in {where}"
        if forbidden:
            note += f"; WARNING: forbidden (HTTP 403, left as they were): {', '.join(forbidden)}"
        return found, note

    def _read(
        self, api: ApiClient, wanted: list[Read], deadline: kubeapi.Deadline, limits: kubeapi.Limits
    ) -> tuple[list[DiscoveredService], list[str]]:
        found: list[DiscoveredService] = []
        forbidden: list[str] = []
        unread: list[tuple[str, str]] = []
        for read in wanted:
            step = _append(read.make)
            items = kube.readable(api, read.listing, deadline, limits, list, step, forbidden)
            if items is None:
                unread.append(read.unread)
            else:
                found += items
        if len(unread) == len(wanted):  # nothing at all may be read: a failure, not a warning
            raise kubeapi.Forbidden(f"forbidden (HTTP 403): {', '.join(forbidden)}", "everything")
        self._unread = tuple(unread)
        return found, forbidden

    def unread(self) -> tuple[tuple[str, str], ...]:
        """(type, name prefix) of the services a forbidden List left unread."""
        return self._unread

    def classify(self, exc: BaseException) -> ErrorClass:
        """Client failures by what they wrap, as the probe classifies them."""
        return kube.explain(exc)[0]


from_instance = KubernetesDiscoverer.from_instance
