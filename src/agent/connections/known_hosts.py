"""Where the agent remembers the SSH host keys it has seen, one key per host entry.

A store maps a host entry (OpenSSH's `host` or `[host]:port`, see `host_entry`) to a
public key line (`ssh-ed25519 AAAA...`). Probes only read and record through the
`KnownHosts` protocol; the task layer picks the store. The one store shipped here is in
memory: a batch loads it from the `agent_known_hosts` rows and stores what it learned.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Protocol

import paramiko


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
