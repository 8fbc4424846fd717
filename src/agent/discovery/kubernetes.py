"""Workloads and Services of a Kubernetes cluster, per namespace.

Deployments, StatefulSets and DaemonSets become `kubernetes_deployment`,
`kubernetes_statefulset` and `kubernetes_daemonset` services, Services become
`kubernetes_service`; each is named `<namespace>/<name>`. The connection is the probe's
(`agent.probes.kubernetes.api_client_for`: same config, secrets and TLS rules), and Lists
are paged the same way. `connection_config.namespaces` (a list of names) limits discovery
to those namespaces; without it every namespace is read with cluster-wide List calls.

Status, from ready against desired replicas (a DaemonSet's desired count is the number of
nodes it is scheduled on): `stopped` when none are desired, `running` when all are ready,
`degraded` when some are, `error` when none are. A Service is `running`; its endpoints are
its ports (host `<name>.<namespace>.svc`, with cluster IP, target port and node port).
`service_config` holds kind, namespace, labels (secret-looking values scrubbed), replica
counts and the images of the pod template: never a pod spec's environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from kubernetes.client import AppsV1Api, CoreV1Api
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.credentials import SecretResolver
from agent.discovery.base import (
    DEGRADED,
    ERROR,
    RUNNING,
    STOPPED,
    DiscoveredService,
    Discoverer,
    scrub_labels,
)
from agent.probes import kubernetes as probe
from agent.probes.base import ErrorClass, parse_config

# kind: (service type, the kind's name in the client's List methods)
WORKLOADS = {
    "Deployment": ("kubernetes_deployment", "deployment"),
    "StatefulSet": ("kubernetes_statefulset", "stateful_set"),
    "DaemonSet": ("kubernetes_daemonset", "daemon_set"),
}
SERVICE_TYPE = "kubernetes_service"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class Options(BaseModel):
    """Discovery's own fields of `connection_config`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    namespaces: tuple[str, ...] | None = Field(default=None, min_length=1)

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
            "cluster_ip": spec.get("clusterIP"),
            "port": port.get("port"),
            "protocol": str(port.get("protocol") or "TCP").lower(),
            "name": port.get("name"),
            "target_port": port.get("targetPort"),
            "node_port": port.get("nodePort"),
        }
        for port in spec.get("ports") or ()
    ]


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


def list_calls(
    api: Any, kind: str, namespaces: tuple[str, ...] | None
) -> Iterator[tuple[Callable[..., Any], str]]:
    """The List calls of `kind` (and their names) that cover the wanted namespaces."""
    if namespaces is None:
        yield getattr(api, f"list_{kind}_for_all_namespaces"), f"list {kind}s"
        return
    for namespace in namespaces:
        call = getattr(api, f"list_namespaced_{kind}")
        yield partial(call, namespace), f"list {kind}s in {namespace}"


class KubernetesDiscoverer(Discoverer):
    """Lists a cluster's workloads and Services through the probe's client."""

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
        self._secrets: tuple[str, ...] = ()

    def discover(self) -> tuple[list[DiscoveredService], str]:
        """Every workload and Service in the wanted namespaces."""
        config = probe.parse_config(*self._raw)
        options = parse_config(Options, self._raw[2] or {})
        deadline = probe.Deadline(self.timeout_s)
        with probe.api_client_for(config, self._resolver, self.timeout_s) as api:
            self._secrets = api.secrets
            found = list(self._read(api, options.namespaces, deadline, config.page_size))
        where = ", ".join(options.namespaces) if options.namespaces else "all namespaces"
        return found, f"{len(found)} workloads and services in {where}"

    def _read(self, api: Any, namespaces, deadline, page_size: int) -> Iterator[DiscoveredService]:
        apps, core = AppsV1Api(api), CoreV1Api(api)
        for kind, (_, method) in WORKLOADS.items():
            for call, what in list_calls(apps, method, namespaces):
                for obj in probe.list_items(call, deadline, page_size, what):
                    yield workload_service(kind, obj)
        for call, what in list_calls(core, "service", namespaces):
            for obj in probe.list_items(call, deadline, page_size, what):
                yield service_service(obj)

    def secrets(self) -> Iterable[str]:
        """The token and client key resolved for this discovery."""
        return self._secrets

    def classify(self, exc: BaseException) -> ErrorClass:
        """Client failures by what they wrap, like the probe."""
        return probe.explain(exc)[0]


def from_instance(
    host: str, port: int | None, connection_config: Mapping[str, Any], resolver, timeout_s: float
) -> KubernetesDiscoverer:
    """The discoverer of one `kubernetes` instance."""
    return KubernetesDiscoverer(host, port, connection_config, resolver, timeout_s)
