"""The OpenSSH sshd the SSH tests log in to, its keys and config, and hostile TCP servers."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

SSHD = Path("/usr/sbin/sshd")


START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SshServer:
    """How to reach the test sshd and log in to it."""

    host: str
    port: int
    username: str
    password: str
    private_key: str  # ed25519, OpenSSH format, unencrypted
    rsa_private_key: str  # rsa, PEM format, encrypted with rsa_passphrase
    rsa_passphrase: str
    host_key: str  # the server's public key line
    chatty_port: int  # same server and login; every command there prints without end
    sessions_log: Path  # one line per session the user opened (written by ~/.ssh/rc)
    log: Path  # sshd's own log


def openssh_private_key(key: ed25519.Ed25519PrivateKey) -> str:
    """An ed25519 private key in OpenSSH format."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def public_key_line(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    """The `type base64` public line of a private key."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)


def create_user(password: str) -> str:
    name = f"agentssh{secrets.token_hex(4)}"
    for _ in range(20):  # useradd fails while another session holds /etc/passwd's lock
        if _run("useradd", "-m", "-s", "/bin/sh", name).returncode == 0:
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"useradd {name} kept failing")
    assert _run("chpasswd", stdin=f"{name}:{password}\n").returncode == 0
    return name


def delete_user(name: str) -> None:
    for _ in range(20):  # sessions still closing, or another session's lock on /etc/passwd
        if _run("userdel", "-r", name).returncode in (0, 6):  # 6: no such user
            return
        time.sleep(0.25)


def install_session_marker(username: str) -> Path:
    """~/.ssh/rc runs before every session's command: it counts sessions in a log."""
    user = pwd.getpwnam(username)
    ssh_dir = Path(user.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    rc = ssh_dir / "rc"
    rc.write_text('echo session >> "$HOME/sessions.log"\n')
    for path in (ssh_dir, rc):
        os.chown(path, user.pw_uid, user.pw_gid)
    return Path(user.pw_dir) / "sessions.log"


def _sshd_version() -> tuple[int, int]:
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", _run(str(SSHD), "-V").stderr)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def sshd_config(workdir: Path, port: int, chatty_port: int, username: str) -> Path:
    lines = [
        f"Port {port}",
        f"Port {chatty_port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {workdir / 'host_ed25519'}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        f"AllowUsers {username}",
        "UsePAM no",
        "StrictModes no",  # the key file lives under /tmp, which is world-writable
        "PasswordAuthentication yes",
        "PubkeyAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "MaxStartups 200",
        "MaxSessions 100",
        "MaxAuthTries 20",
        "LogLevel VERBOSE",
    ]
    if _sshd_version() >= (9, 8):  # else failed logins in the tests would lock 127.0.0.1 out
        lines.append("PerSourcePenalties no")
    lines += [f"Match LocalPort {chatty_port}", "    ForceCommand yes this-login-never-stops"]
    path = workdir / "sshd_config"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_keys(workdir: Path, rsa_passphrase: str) -> tuple[str, str, str]:
    host = ed25519.Ed25519PrivateKey.generate()
    client = ed25519.Ed25519PrivateKey.generate()
    client_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host_path = workdir / "host_ed25519"
    host_path.write_text(openssh_private_key(host))
    host_path.chmod(0o600)
    authorized = workdir / "authorized_keys"
    authorized.write_text(f"{public_key_line(client)}\n{public_key_line(client_rsa)}\n")
    authorized.chmod(0o644)
    rsa_pem = client_rsa.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(rsa_passphrase.encode()),
    ).decode()
    return public_key_line(host), openssh_private_key(client), rsa_pem


def wait_for_banner(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    give_up = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < give_up:
        if process.poll() is not None:
            pytest.fail(f"sshd exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"sshd did not answer on port {port}:\n{log.read_text()}")


class TcpServer:
    """A loopback TCP server whose every connection goes to `handle` in a thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.2)
        self._handle = handle
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = self._listener.getsockname()[1]

    def __enter__(self) -> TcpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in [*self._accepted, self._listener]:
            conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._accepted.append(conn)
            self._handle(conn)


def say_nothing(conn: socket.socket) -> None:
    """Hold the connection open and never send a byte."""


def send_garbage(conn: socket.socket) -> None:
    try:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.sendall(secrets.token_bytes(512) + b"\n")
    except OSError:
        pass
    conn.close()
