"""An in-process Kubernetes API server: real REST paths and JSON, objects schema-checked.

No real API server can be installed on a test machine, so this fake speaks just enough of
the real one over HTTPS: `/readyz`, `/version`, List and Get of nodes, pods, services and
the `apps/v1` workloads, cluster-wide and per namespace, with `limit`/`continue`
pagination. Errors are `Status` objects shaped like the real server's (401 for a wrong
bearer token, 403 for an anonymous list, 404 for an unknown path or object).

Every object a test adds is validated (strictly: unknown fields are errors) against the
Kubernetes JSON schemas that `kubernetes-validate` ships for `SCHEMA_VERSION`, and so is
every List and Status the fake serves, so a malformed fixture fails loudly where it is made.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import itertools
import json
import re
import secrets
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

SCHEMA_VERSION = "1.37.0"
SERVER_VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0",
    "gitCommit": "0123456789abcdef0123456789abcdef01234567",
    "gitTreeState": "clean",
    "buildDate": "2026-04-01T00:00:00Z",
    "goVersion": "go1.26.1",
    "compiler": "gc",
    "platform": "linux/amd64",
}
READYZ_FAILED = "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\nreadyz check failed\n"


class InvalidObject(ValueError):
    """A fixture object that the Kubernetes schema refuses."""


# --- schema validation -------------------------------------------------------------------


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    if kind == "Status":  # served as v1 by every group, but defined in meta/v1
        group_version = "meta-v1"
    folder = f"kubernetes-json-schema/v{SCHEMA_VERSION}-local-strict"
    schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", SCHEMA_VERSION)
    definitions = kv.schema_contents(f"{folder}/_definitions.json", SCHEMA_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(obj: Mapping[str, Any]) -> None:
    """Refuse `obj` unless it is a valid object of its kind at `SCHEMA_VERSION`."""
    try:
        validator = _validator(obj["kind"], obj["apiVersion"])
    except (KeyError, FileNotFoundError) as exc:
        raise InvalidObject(f"no schema for {obj.get('apiVersion')}/{obj.get('kind')}") from exc
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "<root>"
        raise InvalidObject(f"{obj['kind']} invalid at {where}: {error.message}")


# --- TLS material ------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsMaterial:
    """A CA and a server certificate it signed, for 127.0.0.1 and localhost, as PEM."""

    ca_pem: str
    cert_pem: str
    key_pem: str
    ca_key: ec.EllipticCurvePrivateKey

    def client_certificate(self, user: str) -> tuple[str, str]:
        """A client certificate and key (PEM) for `user`, signed by the fake's CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.load_pem_x509_certificate(self.ca_pem.encode()).subject
        cert = _certificate(_name(user), issuer, key.public_key(), self.ca_key, ca=False)
        return _pem(cert), _key_pem(key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject, issuer, public_key, signing_key, *, ca: bool, sans=()
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def generate_ca_pem(common_name: str = "unrelated-ca") -> str:
    """A self-signed CA certificate that signed nothing the fake serves."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    return _pem(_certificate(name, name, key.public_key(), key, ca=True))


@functools.cache
def tls_material() -> TlsMaterial:
    """The fake's CA and server certificate, made once per test process."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fake-kubernetes-ca")
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = _certificate(
        _name("kube-apiserver"), ca_name, key.public_key(), ca_key, ca=False, sans=sans
    )
    return TlsMaterial(_pem(ca), _pem(cert), _key_pem(key), ca_key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _server_context(material: TlsMaterial) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:  # load_cert_chain only reads files
        chain, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
        chain.write_text(material.cert_pem)
        key.write_text(material.key_pem)
        context.load_cert_chain(chain, key)
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate from our CA authenticates
    context.load_verify_locations(cadata=material.ca_pem)
    return context


# --- the object store --------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResource:
    """Where a kind of object lives in the REST tree."""

    plural: str
    kind: str
    api_version: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        """The path before the resource: `/api/v1` or `/apis/apps/v1`."""
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"


RESOURCES = {
    r.plural: r
    for r in (
        ApiResource("nodes", "Node", "v1", namespaced=False),
        ApiResource("pods", "Pod", "v1", namespaced=True),
        ApiResource("services", "Service", "v1", namespaced=True),
        ApiResource("deployments", "Deployment", "apps/v1", namespaced=True),
        ApiResource("statefulsets", "StatefulSet", "apps/v1", namespaced=True),
        ApiResource("daemonsets", "DaemonSet", "apps/v1", namespaced=True),
    )
}
PLURAL_OF_KIND = {r.kind: r.plural for r in RESOURCES.values()}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeStore:
    """The fake's objects, keyed like etcd (`plural/namespace/name`), validated on the way in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._revision = itertools.count(1000)
        self.resource_version = "999"

    def add(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store a copy of a complete object after validating it; return the stored copy."""
        stored = json.loads(json.dumps(obj))
        plural = PLURAL_OF_KIND.get(stored.get("kind", ""))
        if plural is None:
            raise InvalidObject(f"the fake does not serve kind {stored.get('kind')!r}")
        meta = stored.setdefault("metadata", {})
        with self._lock:
            self.resource_version = str(next(self._revision))
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta["resourceVersion"] = self.resource_version
            validate(stored)
            namespace = meta.get("namespace", "") if RESOURCES[plural].namespaced else ""
            self._objects[(plural, namespace, meta["name"])] = stored
        return stored

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects of a resource, in key order, optionally of one namespace."""
        with self._lock:
            keys = sorted(k for k in self._objects if k[0] == plural)
            return [self._objects[k] for k in keys if namespace is None or k[1] == namespace]

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One stored object, or None."""
        with self._lock:
            return self._objects.get((plural, namespace, name))

    def add_node(
        self,
        name: str,
        ready: str | None = "True",
        cpu: str = "4",
        memory: str = "16Gi",
        allocatable_cpu: str | None = None,
        allocatable_memory: str | None = None,
    ) -> dict[str, Any]:
        """A Node whose Ready condition has status `ready` (None: no Ready condition at all)."""
        conditions = [] if ready is None else [_condition("Ready", ready, "KubeletReady")]
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {},
                "status": {
                    "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                    "allocatable": {
                        "cpu": allocatable_cpu or cpu,
                        "memory": allocatable_memory or memory,
                        "pods": "110",
                    },
                    "conditions": conditions,
                    "nodeInfo": _node_info(),
                },
            }
        )

    def add_pod(
        self,
        name: str,
        namespace: str = "default",
        phase: str = "Running",
        ready: str | None = "True",
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A one-container Pod in `phase`, its Ready condition `ready` (None: no conditions)."""
        conditions = [] if ready is None else [_condition("Ready", ready, None)]
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
                "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
                "status": {"phase": phase, "conditions": conditions},
            }
        )

    def add_deployment(
        self, name: str, namespace: str = "default", replicas: int = 1, ready: int | None = None
    ) -> dict[str, Any]:
        """A Deployment of `replicas` pause pods, `ready` of them ready (default: all)."""
        ready = replicas if ready is None else ready
        return self.add(
            _workload("Deployment", name, namespace, {"replicas": replicas})
            | {"status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}}
        )

    def add_statefulset(
        self, name: str, namespace: str = "default", replicas: int = 1, ready: int | None = None
    ) -> dict[str, Any]:
        """A StatefulSet of `replicas` pause pods, `ready` of them ready (default: all)."""
        ready = replicas if ready is None else ready
        spec = {"replicas": replicas, "serviceName": name}
        return self.add(
            _workload("StatefulSet", name, namespace, spec)
            | {"status": {"replicas": replicas, "readyReplicas": ready}}
        )

    def add_daemonset(
        self, name: str, namespace: str = "kube-system", desired: int = 1, ready: int | None = None
    ) -> dict[str, Any]:
        """A DaemonSet scheduled on `desired` nodes, `ready` of them ready (default: all)."""
        ready = desired if ready is None else ready
        status = {
            "currentNumberScheduled": desired,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
        }
        return self.add(_workload("DaemonSet", name, namespace, {}) | {"status": status})

    def add_service(
        self, name: str, namespace: str = "default", port: int = 80, selector: Mapping | None = None
    ) -> dict[str, Any]:
        """A ClusterIP Service on `port` selecting `selector` (default: app=name)."""
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "type": "ClusterIP",
                    "selector": dict(selector or {"app": name}),
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                },
            }
        )


def _condition(kind: str, status: str, reason: str | None) -> dict[str, Any]:
    condition = {"type": kind, "status": status, "lastTransitionTime": _now()}
    return condition | ({"reason": reason} if reason else {})


def _node_info() -> dict[str, str]:
    return {
        "architecture": "amd64",
        "bootID": "b",
        "containerRuntimeVersion": "containerd://2.1.0",
        "kernelVersion": "6.12.0",
        "kubeProxyVersion": SERVER_VERSION["gitVersion"],
        "kubeletVersion": SERVER_VERSION["gitVersion"],
        "machineID": "m",
        "operatingSystem": "linux",
        "osImage": "Debian GNU/Linux 13 (trixie)",
        "systemUUID": "s",
    }


def _workload(kind: str, name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": template, **spec},
    }


# --- responses ---------------------------------------------------------------------------


def status_object(code: int, reason: str, message: str, details: Mapping | None = None) -> dict:
    """A `Status` object like the real server's error bodies."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return body | ({"details": dict(details)} if details is not None else {})


class ApiError(Exception):
    """A request the fake answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping | None = None):
        super().__init__(message)
        self.code = code
        self.body = status_object(code, reason, message, details)


NOT_FOUND_PATH = ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _encode_continue(revision: str, after_key: str) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": int(revision), "start": after_key + "\x00"}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _decode_continue(token: str) -> str:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(
            400, "BadRequest", "continue key is not valid: incorrect encoded start"
        ) from exc


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _page(
    items: list[dict], query: Mapping[str, str], revision: str
) -> tuple[list[dict], dict[str, Any]]:
    """One page of `items` (already in key order) for `limit` and `continue`."""
    if query.get("continue"):
        start = _decode_continue(query["continue"])
        items = [item for item in items if _key(item) >= start]
    limit = int(query.get("limit") or 0)
    if limit <= 0 or len(items) <= limit:
        return items, {}
    page, rest = items[:limit], items[limit:]
    return page, {
        "continue": _encode_continue(revision, _key(page[-1])),
        "remainingItemCount": len(rest),
    }


def _strip_type(obj: Mapping[str, Any]) -> dict[str, Any]:
    # The real server leaves apiVersion and kind out of the items of a typed List.
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


# --- routing -----------------------------------------------------------------------------

_NAME = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_ROUTES = [
    re.compile(
        rf"^/api/(?P<gv>v1)(/namespaces/(?P<ns>{_NAME}))?/(?P<plural>\w+)(/(?P<name>{_NAME}))?$"
    ),
    re.compile(
        rf"^/apis/(?P<gv>apps/v1)(/namespaces/(?P<ns>{_NAME}))?/(?P<plural>\w+)(/(?P<name>{_NAME}))?$"
    ),
]
PUBLIC_PATHS = frozenset({"/readyz", "/livez", "/healthz", "/version"})


@dataclass(frozen=True)
class Request:
    """What the fake saw: path, query (first values) and whether it carried a token."""

    path: str
    query: Mapping[str, str]
    authorization: str | None
    client_user: str | None = None


class FakeKubeApi:
    """The fake API server: start it, fill `store`, point a client at `url` with `token`."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.store = KubeStore()
        self.tls = tls_material()
        self.readyz_status = 200
        self.delay_s = 0.0
        self.requests: list[Request] = []
        self.errors: list[Exception] = []
        self._stopping = threading.Event()
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_pem(self) -> str:
        """The PEM of the CA that signed the fake's certificate."""
        return self.tls.ca_pem

    @property
    def url(self) -> str:
        """The base URL of the running server, like a kubeconfig's `server`."""
        assert self._server is not None, "start() the fake first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeApi:
        """Listen on a free loopback port and serve in a thread."""
        self._server = _TlsServer(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-kube-api"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut slow and idle connections, and wait for every thread."""
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def requests_to(self, path: str) -> list[Request]:
        """The requests the fake answered for `path`."""
        return [r for r in self.requests if r.path == path]

    # What the handler calls: (status, content type, body bytes).
    def respond(self, request: Request) -> tuple[int, str, bytes]:
        """The answer to a GET, after the configured delay."""
        self.requests.append(request)
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        try:
            self._authenticate(request)
            return self._route(request)
        except ApiError as error:
            return self._error(error)
        except Exception as exc:  # a bug in the fake: answer, and let the fixture fail the test
            self.errors.append(exc)
            return self._error(ApiError(500, "InternalError", f"fake kube-apiserver: {exc!r}"))

    @staticmethod
    def _error(error: ApiError) -> tuple[int, str, bytes]:
        validate(error.body)
        return error.code, "application/json", json.dumps(error.body).encode()

    def _authenticate(self, request: Request) -> None:
        if request.authorization is None and request.client_user:
            return
        if request.authorization is None:
            if request.path in PUBLIC_PATHS:
                return
            raise _forbidden_anonymous(request.path)
        if request.authorization != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _route(self, request: Request) -> tuple[int, str, bytes]:
        if request.path == "/readyz":
            return self._readyz()
        if request.path == "/version":
            return 200, "application/json", json.dumps(SERVER_VERSION, indent=2).encode()
        for route in _ROUTES:
            match = route.match(request.path)
            if match:
                return 200, "application/json", json.dumps(self._resource(match, request)).encode()
        raise NOT_FOUND_PATH

    def _readyz(self) -> tuple[int, str, bytes]:
        if self.readyz_status == 404:
            raise NOT_FOUND_PATH
        if self.readyz_status != 200:
            return self.readyz_status, "text/plain; charset=utf-8", READYZ_FAILED.encode()
        return 200, "text/plain; charset=utf-8", b"ok"

    def _resource(self, match: re.Match, request: Request) -> dict[str, Any]:
        resource = RESOURCES.get(match["plural"])
        if resource is None or resource.api_version != match["gv"]:
            raise NOT_FOUND_PATH
        if match["ns"] and not resource.namespaced:
            raise NOT_FOUND_PATH
        if match["name"]:
            return self._one(resource, match["ns"] or "", match["name"])
        return self._list(resource, match["ns"], request.query)

    def _one(self, resource: ApiResource, namespace: str, name: str) -> dict[str, Any]:
        if resource.namespaced and not namespace:
            raise NOT_FOUND_PATH
        found = self.store.get(resource.plural, namespace, name)
        if found is None:
            details = {"name": name, "kind": resource.plural}
            raise ApiError(404, "NotFound", f'{resource.plural} "{name}" not found', details)
        return found

    def _list(self, resource: ApiResource, namespace: str | None, query: Mapping[str, str]) -> dict:
        items, more = _page(
            self.store.objects(resource.plural, namespace), query, self.store.resource_version
        )
        body = {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": self.store.resource_version, **more},
            "items": [_strip_type(item) for item in items],
        }
        validate(body)
        return body


def _forbidden_anonymous(path: str) -> ApiError:
    message = (
        f'forbidden: User "system:anonymous" cannot get path "{path}"'
        if not path.startswith("/api")
        else f'{path.rsplit("/", 1)[-1]} is forbidden: User "system:anonymous" cannot list resource'
    )
    return ApiError(403, "Forbidden", message, {})


class _TlsServer(ThreadingHTTPServer):
    """A threading HTTP server that does each TLS handshake in the request's own thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, fake: FakeKubeApi) -> None:
        super().__init__(address, handler)
        self.fake = fake
        self.context = _server_context(fake.tls)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        """Handshake, then serve the connection; a client that refuses our CA just leaves."""
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self._tracked(tls):
            super().finish_request(tls, client_address)

    @contextmanager
    def _tracked(self, conn: socket.socket) -> Iterator[None]:
        with self._connections_lock:
            self._connections.add(conn)
        try:
            yield
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            conn.close()

    def close_connections(self) -> None:
        """Cut every open connection, so threads waiting on idle clients end now."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with suppress(OSError, ValueError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients that time out and hang up are what some tests are about."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path.rstrip("/") or "/"  # the real server serves /version/ as /version
        request = Request(path, query, self.headers.get("Authorization"), self._client_user())
        code, content_type, body = self.server.fake.respond(request)
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(body)
        except (OSError, ValueError):
            self.close_connection = True

    def _client_user(self) -> str | None:
        subject = dict(pair[0] for pair in (self.connection.getpeercert() or {}).get("subject", ()))
        return subject.get("commonName")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


def kubeconfig_yaml(
    server: str, ca_pem: str, token: str, context: str = "fake", namespace: str = "default"
) -> str:
    """A kubeconfig for `server` with one context named `context`, as YAML text."""
    ca_data = base64.b64encode(ca_pem.encode()).decode()
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": f"{context}-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": f"{context}-admin", "namespace": namespace},
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)
