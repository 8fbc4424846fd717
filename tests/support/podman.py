"""Podman's Docker-compatible API on a private socket, a local busybox image, TLS in front."""

from __future__ import annotations

import datetime
import ipaddress
import os
import selectors
import shutil
import socket
import socketserver
import ssl
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.components import missing_component

IMAGE_REPOSITORY = "localhost/agent-test-busybox"


IMAGE = f"{IMAGE_REPOSITORY}:latest"


BUSYBOX = Path("/bin/busybox")


APPLETS = ("sh", "sleep", "true", "false", "nc", "httpd", "wget", "cat", "echo", "ls")


CONTAINERS_CONF = """\
[containers]
# Within the host's hard limits: runc cannot raise a limit above them.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
"""


HOUR_NS = 3600 * 10**9


@dataclass(frozen=True)
class PodmanStorage:
    """A private Podman storage and state area, and the command line that uses it."""

    base: Path

    def flags(self) -> list[str]:
        """Global podman flags shared by the service and every CLI call."""
        return [
            *("--root", str(self.base / "root"), "--runroot", str(self.base / "run")),
            *("--tmpdir", str(self.base / "tmp"), "--network-config-dir", str(self.base / "net")),
            *("--runtime", "runc", "--cgroup-manager=cgroupfs"),
            *("--storage-driver", "vfs", "--events-backend", "file"),
        ]

    def env(self) -> dict[str, str]:
        """The environment that points podman at this storage's containers.conf."""
        return {**os.environ, "CONTAINERS_CONF": str(self.base / "containers.conf")}

    def run(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a podman CLI command against this storage."""
        command = ["podman", *self.flags(), *args]
        return subprocess.run(  # not check=True: callers read returncode and stderr
            command, env=self.env(), capture_output=True, text=True, timeout=timeout_s
        )


class PodmanService:
    """One `podman system service` process listening on a unix socket."""

    def __init__(self, storage: PodmanStorage, socket_path: Path) -> None:
        self.storage = storage
        self.socket_path = socket_path
        self.url = f"unix://{socket_path}"
        self._log = socket_path.with_suffix(".log")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> PodmanService:
        """Start the service and wait until it answers /_ping."""
        command = ["podman", *self.storage.flags(), "system", "service", "--time=0", self.url]
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                command, env=self.storage.env(), stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_for_ping(timeout_s)
        return self

    def _wait_for_ping(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                pytest.fail(f"podman system service exited: {self._log.read_text()[-2000:]}")
            if self.socket_path.exists() and _pings(self.url):
                return
            time.sleep(0.05)
        pytest.fail(f"podman system service did not answer within {timeout_s}s")

    def stop(self) -> None:
        """Stop the service and remove its socket."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=15)
        self.socket_path.unlink(missing_ok=True)


def _pings(url: str) -> bool:
    client = docker.APIClient(base_url=url, version="1.41", timeout=2)
    try:
        return client.ping()
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def busybox_rootfs(folder: Path) -> bytes:
    """A tarball of a root filesystem holding Debian's static busybox and its applets."""
    if not BUSYBOX.exists():
        missing_component("a static busybox for the test image", "busybox-static")
    bin_dir = folder / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    for applet in APPLETS:
        (bin_dir / applet).symlink_to("busybox")
    tarball = folder / "rootfs.tar"
    with tarfile.open(tarball, "w") as archive:
        archive.add(folder / "rootfs", arcname=".")
    return tarball.read_bytes()


def run_healthcheck(client: docker.DockerClient, container_id: str) -> str:
    """Run a container's healthcheck now (no systemd timers here); its verdict."""
    url = f"{client.api.base_url}/v4.0.0/libpod/containers/{container_id}/healthcheck"
    response = client.api.get(url)
    response.raise_for_status()
    return response.json()["Status"]


@dataclass(frozen=True)
class ContainerSet:
    """The containers a fixture made, and the counts a probe should report for them."""

    ids: tuple[str, ...]
    by_state: dict[str, int] = field(default_factory=dict)
    by_health: dict[str, int] = field(default_factory=dict)
    published_port: int = 0


def started(client: docker.DockerClient, image: str, name: str, **options: object) -> str:
    options.setdefault("network_mode", "none")
    container = client.containers.run(image, detach=True, name=name, **options)
    return container.id


def health_test(command: str, **extra: int) -> dict[str, object]:
    # A long interval: nothing would run it anyway; the fixture triggers it by hand.
    return {"test": ["CMD", command], "interval": HOUR_NS, "retries": 1, **extra}


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, in PEM."""

    cert_pem: str
    key_pem: str


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: Issued | None, usage: str
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer = serialization.load_pem_private_key(issuer.key_pem.encode(), None) if issuer else key
    issuer_name = (
        x509.load_pem_x509_certificate(issuer.cert_pem.encode()).subject if issuer else name
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=usage == "ca", path_length=None), critical=True)
    )
    if usage == "server":
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if usage == "client":
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if usage == "ca":
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def issue(subject: str, issuer: Issued | None = None, usage: str = "ca") -> Issued:
    """A new certificate (`ca`, `server` or `client`), self-signed when no issuer is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(subject, key, issuer, usage)
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


class _Relay(socketserver.BaseRequestHandler):
    server: TlsRelay

    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            with (
                self.server.context.wrap_socket(self.request, server_side=True) as tls,
                socket.socket(socket.AF_UNIX) as backend,
            ):
                backend.connect(str(self.server.backend_path))
                _pump(tls, backend)
        except OSError:
            return  # a refused handshake or a dropped peer: what some tests are about


def _pump(front: ssl.SSLSocket, back: socket.socket) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(front, selectors.EVENT_READ, back)
        selector.register(back, selectors.EVENT_READ, front)
        while selector.get_map():
            for key, _ in selector.select(timeout=30) or [(None, None)]:
                if key is None or not _forward(key.fileobj, key.data):
                    return


def _forward(source: socket.socket, target: socket.socket) -> bool:
    data = source.recv(65536)
    while isinstance(source, ssl.SSLSocket) and source.pending():
        data += source.recv(65536)
    target.sendall(data)
    return bool(data)


class TlsRelay(socketserver.ThreadingTCPServer):
    """A TLS server on 127.0.0.1 that relays each connection to a unix socket."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, backend_path: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.context = context
        self.backend_path = backend_path
        self.url = f"tcp://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Say nothing: a failing peer is part of the tests."""


def server_context(server: Issued, client_ca: Issued, folder: Path) -> ssl.SSLContext:
    """A TLS server context that demands a client certificate signed by `client_ca`."""
    (folder / "server.pem").write_text(server.cert_pem + server.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    context.load_verify_locations(cadata=client_ca.cert_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@contextmanager
def serving(relay: TlsRelay) -> Iterator[TlsRelay]:
    """Run a relay in a thread for the life of the block."""
    thread = threading.Thread(target=relay.serve_forever, name="tls-relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class TlsEndpoint:
    """A `tcp://` endpoint with TLS, and the PEM material a client needs for it."""

    url: str
    ca_cert: str
    client_cert: str
    client_key_path: Path
