"""Where the agent remembers the SSH host keys it has seen, one key per host entry.

A store maps a host entry (OpenSSH's `host` or `[host]:port`, see `host_entry`) to a
public key line (`ssh-ed25519 AAAA...`). Probes only read and record through the
`KnownHosts` protocol; the task layer picks the store. Two stores ship here: one in
memory (per process, for tests and one-shot runs) and one file in OpenSSH's
known_hosts format, so an operator can read, edit or seed it with `ssh-keyscan`.
"""

from __future__ import annotations

import base64
import fcntl
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import paramiko

FILE_NAME = "known_hosts"


class KnownHosts(Protocol):
    """A store of host keys the agent trusts."""

    def get(self, key: str) -> str | None:
        """The trusted key line for a host entry, or None when it was never seen."""

    def remember(self, key: str, keyline: str) -> None:
        """Trust `keyline` for a host entry from now on, replacing what was there."""


def host_entry(host: str, port: int) -> str:
    """OpenSSH's name for a host in known_hosts: `host` on port 22, else `[host]:port`."""
    return host if port == 22 else f"[{host}]:{port}"


def parse_keyline(keyline: str) -> paramiko.PKey:
    """The public key in a line like `ssh-ed25519 AAAA... comment`; ValueError when not one."""
    parts = keyline.split()
    if len(parts) < 2:
        raise ValueError("a host key line reads '<type> <base64> [comment]'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except (paramiko.SSHException, ValueError) as exc:
        raise ValueError(f"host key line is not a valid {parts[0]} key: {exc}") from None


def keyline_of(key: paramiko.PKey) -> str:
    """The `type base64` line of a public key."""
    return f"{key.get_name()} {key.get_base64()}"


class MemoryKnownHosts:
    """Host keys held in memory, e.g. one batch's records loaded from the database.

    `learned` collects what `remember` added (trust on first use), for the caller to store.
    """

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._lines: dict[str, str] = dict(initial or {})
        self.learned: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """The trusted key line for a host entry."""
        with self._lock:
            return self._lines.get(key)

    def remember(self, key: str, keyline: str) -> None:
        """Trust `keyline` for a host entry."""
        with self._lock:
            self._lines[key] = keyline
            self.learned[key] = keyline


class FileKnownHosts:
    """Host keys in `<directory>/known_hosts`, shared safely by processes and threads."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / FILE_NAME
        self._lock_path = Path(directory) / f".{FILE_NAME}.lock"
        self._thread_lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """The trusted key line for a host entry, read from the file now."""
        entries = self._load().lookup(key)
        if not entries:
            return None
        return keyline_of(next(iter(entries.values())))

    def remember(self, key: str, keyline: str) -> None:
        """Trust `keyline` for a host entry; the file is replaced atomically."""
        pkey = parse_keyline(keyline)
        with self._thread_lock, self._exclusive():
            hostkeys = self._load()
            hostkeys.pop(key, None)
            hostkeys.add(key, pkey.get_name(), pkey)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            hostkeys.save(str(temporary))
            os.replace(temporary, self.path)

    def _load(self) -> paramiko.HostKeys:
        hostkeys = paramiko.HostKeys()
        if self.path.exists():
            hostkeys.load(str(self.path))
        return hostkeys

    def _exclusive(self) -> _FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return _FileLock(self._lock_path)


class _FileLock:
    """An exclusive advisory lock on a file, across processes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
