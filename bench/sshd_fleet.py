"""A fleet of loopback SSH hosts for the benchmarks: real OpenSSH sshd processes.

Every host is a distinct loopback address (127.0.0.2, 127.0.0.3, ...; all of 127/8 is
loopback on Linux), so per-host caches in the clients see distinct hosts. One sshd binds
at most 16 addresses (OpenSSH's MAX_LISTEN_SOCKS), so the fleet runs one sshd per 16
hosts, all on the same port, sharing one generated ed25519 host key. A throwaway user,
created for the run and removed after it, logs in with a generated ed25519 key. Nothing
listens beyond loopback. Needs root (sshd must switch users).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SSHD = Path("/usr/sbin/sshd")
ADDRESSES_PER_SSHD = 16  # OpenSSH's MAX_LISTEN_SOCKS
FIRST_ADDRESS = ipaddress.ip_address("127.0.0.2")
START_TIMEOUT_S = 60.0  # 32 sshd processes starting on a loaded machine


@dataclass(frozen=True)
class Fleet:
    """How to reach the fleet's hosts and log in to them."""

    hosts: tuple[str, ...]
    port: int
    username: str
    key_path: Path  # the client's private key, OpenSSH format, unencrypted
    private_key: str
    host_key: str  # the public key line every host presents
    known_hosts: Path  # OpenSSH known_hosts with one line per host
    workdir: Path


def loopback_addresses(count: int) -> list[str]:
    """`count` loopback addresses from 127.0.0.2 on, skipping .0 and .255 last octets."""
    addresses, candidate = [], FIRST_ADDRESS
    while len(addresses) < count:
        if str(candidate).split(".")[-1] not in ("0", "255"):
            addresses.append(str(candidate))
        candidate += 1
    return addresses


def _openssh_private(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def _public_line(key: ed25519.Ed25519PrivateKey) -> str:
    public = key.public_key()
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _run(*command: str) -> int:
    return subprocess.run(command, capture_output=True, check=False).returncode


def _create_user() -> str:
    name = f"benchssh{secrets.token_hex(4)}"
    for _ in range(40):  # another process may hold /etc/passwd's lock
        if _run("useradd", "-m", "-s", "/bin/sh", name) == 0:
            # Without PAM, sshd refuses a locked account ("!" password) even a key login.
            subprocess.run(
                ["chpasswd"], input=f"{name}:{secrets.token_urlsafe(24)}\n", text=True, check=True
            )
            return name
        time.sleep(0.25)
    raise RuntimeError(f"useradd {name} kept failing")


def _delete_user(name: str) -> None:
    for _ in range(120):  # its sessions may still be ending; /etc/passwd may be locked
        if _run("userdel", "-r", name) in (0, 6):
            return
        time.sleep(0.25)
    print(f"could not remove the user {name}: run `userdel -r {name}`", file=sys.stderr)


def _free_port() -> int:
    with socket.socket() as sock:  # bound on every address: free on each loopback one too
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def _sshd_config(workdir: Path, index: int, hosts: list[str], port: int, user: str) -> Path:
    lines = [f"ListenAddress {host}:{port}" for host in hosts] + [
        f"HostKey {workdir / 'host_ed25519'}",
        f"PidFile {workdir / f'sshd-{index}.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        f"AllowUsers {user}",
        "UsePAM no",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "MaxStartups 2000",
        "MaxSessions 1000",
        "PerSourcePenalties no",
        "LogLevel ERROR",
    ]
    if _sshd_version() < (9, 8):
        lines.remove("PerSourcePenalties no")
    path = workdir / f"sshd-{index}.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _sshd_version() -> tuple[int, int]:
    out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False).stderr
    try:
        major, minor = out.split("OpenSSH_", 1)[1].split(",")[0].split("p")[0].split(".")[:2]
        return int(major), int(minor)
    except (IndexError, ValueError):
        return (0, 0)


def _write_keys(workdir: Path, hosts: list[str], port: int) -> tuple[str, str]:
    host, client = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    (workdir / "host_ed25519").write_text(_openssh_private(host))
    (workdir / "host_ed25519").chmod(0o600)
    (workdir / "authorized_keys").write_text(_public_line(client) + "\n")
    (workdir / "authorized_keys").chmod(0o644)
    (workdir / "client_ed25519").write_text(_openssh_private(client))
    (workdir / "client_ed25519").chmod(0o600)
    host_line = _public_line(host)
    lines = [f"[{address}]:{port} {host_line}" for address in hosts]
    (workdir / "known_hosts").write_text("\n".join(lines) + "\n")
    return host_line, _openssh_private(client)


def _wait_for_banners(processes: list[subprocess.Popen[bytes]], hosts: list[str], port: int):
    give_up = time.monotonic() + START_TIMEOUT_S
    pending = list(hosts)
    while pending and time.monotonic() < give_up:
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"an sshd exited with {dead[0].returncode}")
        try:
            with socket.create_connection((pending[0], port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    pending.pop(0)
                    continue
        except OSError:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"sshd did not answer on {pending[0]}:{port}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the listeners and the per-connection sshd processes they forked (a client that
    never closed would keep the throwaway user logged in and undeletable)."""
    sessions = [child for process in processes for child in _children(process.pid)]
    for pid in [process.pid for process in processes] + sessions:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for process in processes:
        process.wait(timeout=20)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(word) for word in found.stdout.split()]


@contextmanager
def running_fleet(count: int) -> Iterator[Fleet]:
    """`count` loopback SSH hosts, each a distinct address, served by real sshd processes."""
    if os.geteuid() != 0 or not SSHD.exists():
        raise SystemExit("the fleet needs root and /usr/sbin/sshd (Debian openssh-server)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sshd-"))
    workdir.chmod(0o755)
    hosts, port = loopback_addresses(count), _free_port()
    host_key, private_key = _write_keys(workdir, hosts, port)
    user = _create_user()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        log = (workdir / "sshd.log").open("wb")
        for index in range(0, count, ADDRESSES_PER_SSHD):
            group = hosts[index : index + ADDRESSES_PER_SSHD]
            config = _sshd_config(workdir, index, group, port, user)
            command = [str(SSHD), "-D", "-e", "-f", str(config)]
            processes.append(subprocess.Popen(command, stdout=log, stderr=log))
        _wait_for_banners(processes, hosts, port)
        yield Fleet(
            tuple(hosts), port, user, workdir / "client_ed25519", private_key, host_key,
            workdir / "known_hosts", workdir,
        )  # fmt: skip
    finally:
        _stop(processes)
        _delete_user(user)
        shutil.rmtree(workdir, ignore_errors=True)
