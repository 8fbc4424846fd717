"""A hostile Kubernetes API server: what the real one cannot be made to do, and nothing else.

It answers `/version` exactly as kube-apiserver v1.20.2 does, and then, by mode, misbehaves
where no real server can: an endless `/readyz` or NodeList body, 100k Nodes in one page
whatever the `limit`, JSON that is not JSON, headers dripped a byte at a time.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from cryptography import x509

from tests.support.kube_apiserver import Authority, subject
from tests.support.network import serving_http

# What kube-apiserver v1.20.2 (tests.fixtures.kube_apiserver) answers on /version.
VERSION = {
    "major": "1",
    "minor": "20",
    "gitVersion": "v1.20.2",
    "gitCommit": "faecb196815e248d3ecfb03c680a4507229c2a56",
    "gitTreeState": "archive",
    "buildDate": "2026-12-02T09:00:00Z",
    "goVersion": "go1.19.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}
LIST_HEAD = b'{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":['
MODES = ("endless_readyz", "endless_nodes", "huge_page", "invalid_json", "header_drip")


def node_json(index: int) -> bytes:
    """One Ready Node as the real server lists it (the fields the probe reads)."""
    node = {
        "metadata": {"name": f"node-{index:06d}", "uid": f"uid-{index}"},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "3500m", "memory": "15Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    return json.dumps(node, separators=(",", ":")).encode()


@functools.cache
def huge_page(nodes: int = 100_000) -> bytes:
    """A NodeList of `nodes` Nodes in one page, without a continue token."""
    return LIST_HEAD + b",".join(node_json(i) for i in range(nodes)) + b"]}"


class Handler(BaseHTTPRequestHandler):
    """Serves one mode (the server's `mode` attribute)."""

    protocol_version = "HTTP/1.1"
    mode = ""

    def log_message(self, *args) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        """Answer by path and mode; a client that hangs up ends the answer."""
        mode, path = self.mode, self.path.split("?")[0]
        try:
            if mode == "header_drip":
                return self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" * 1000)
            if path == "/version":
                return self._send(json.dumps(VERSION).encode())
            if path == "/readyz":
                return self._endless(b"[+]ping ok\n") if mode == "endless_readyz" else self._ok()
            return self._list(mode)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return None

    def _list(self, mode: str) -> None:
        if mode == "endless_nodes":
            self._endless(node_json(0) + b",", head=LIST_HEAD)
        elif mode == "huge_page":
            self._send(huge_page())
        elif mode == "invalid_json":
            self._send(LIST_HEAD + b'{"metadata": nope')
        else:
            self._send(LIST_HEAD + b"]}")

    def _ok(self) -> None:
        self._send(b"ok", "text/plain")

    def _send(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless(self, chunk: bytes, head: bytes = b"") -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()  # no length: the body ends when the connection does
        self.close_connection = True
        self.wfile.write(head)
        block = chunk * max(1, 65536 // len(chunk))
        while True:
            self.wfile.write(block)

    def _drip(self, data: bytes) -> None:
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.2)


@dataclass(frozen=True)
class HostileKube:
    """Where the hostile server listens and the CA that signed its certificate."""

    url: str
    ca_pem: str


@functools.cache
def _tls() -> tuple[str, ssl.SSLContext]:
    ca = Authority.create("hostile-kube-ca")
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert, key = ca.issue(subject("hostile-kube"), sans)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads only files
        Path(folder, "c").write_text(cert)
        Path(folder, "k").write_text(key)
        context.load_cert_chain(Path(folder, "c"), Path(folder, "k"))
    return ca.pem, context


@contextmanager
def hostile_kube(mode: str) -> Iterator[HostileKube]:
    """The hostile server in `mode` on a loopback port, behind TLS."""
    ca_pem, context = _tls()

    with serving_http(type("ModeHandler", (Handler,), {"mode": mode}), context) as port:
        yield HostileKube(f"https://127.0.0.1:{port}", ca_pem)
