"""An instance as an operator adds it from the CLI: its row, its secrets, its SSH host key.

Nothing here talks to the database. Secrets are given apart from the other settings (read
from a file or a hidden prompt) and only their `enc:` references leave this module; a secret
field given as a plain setting is refused unless it already is a reference (`env:`, `file:`,
`enc:`). The settings are checked by the probe's own config model (`agent.probes.validate`),
as a check would read them, before anything is written. An SSH host key is pinned from a file
or, only when asked, trusted on first use; never silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from agent.connections.known_hosts import host_entry, keyline_of, parse_keyline
from agent.core.credentials import PREFIXES, SecretResolver
from agent.core.results import ProbeError
from agent.core.settings import ConfigError, Settings
from agent.probes import MODULES, secret_fields, validate

CONNECTION_TYPES = tuple(MODULES)
# `infrastructure_instances.type` (seed 002) when the operator names none.
INSTANCE_TYPES = {
    "ssh": "vm",
    "docker_api": "docker_host",
    "kubernetes": "kubernetes",
    "http": "vm",
    "tcp": "vm",
}
INSTANCE_KINDS = ("vm", "docker_host", "kubernetes", "cloud_instance")
HOST_KEY_FIELDS = ("host_key", "trust_on_first_use")
MAX_NAME = 255  # VARCHAR(255), as `name` and `host` are
SSH_PORT = 22


class InstanceInputError(ValueError):
    """Options that make no usable instance; the message never holds a secret."""


@dataclass(frozen=True)
class NewInstance:
    """What the operator asked for; `secrets` hold clear values, in memory only."""

    name: str
    connection_type: str
    host: str
    port: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    host_key: str | None = None
    trust_on_first_use: bool = False
    tags: tuple[str, ...] = ()
    instance_type: str | None = None
    space_id: uuid.UUID | None = None


def connection_config(new: NewInstance, resolver: SecretResolver | None) -> dict[str, Any]:
    """The `connection_config` to store: secrets as `enc:` references, checked by the probe."""
    _check_text(new)
    _check_settings(new)
    _check_host_key_choice(new)
    config = dict(new.settings)
    if new.secrets:
        if resolver is None:
            raise InstanceInputError("secrets need the agent's key (AGENT_SECRET_KEY)")
        config.update({name: resolver.encrypt(value) for name, value in new.secrets.items()})
    if new.trust_on_first_use:
        config["trust_on_first_use"] = True
    try:
        validate(new.connection_type, new.host, new.port, config)
    except ProbeError as exc:
        raise InstanceInputError(str(exc)) from None
    return config


def _check_text(new: NewInstance) -> None:
    for what, value in (("name", new.name), ("host", new.host)):
        if not value.strip() or len(value) > MAX_NAME:
            raise InstanceInputError(f"{what} must be 1 to {MAX_NAME} characters")
    given = [new.name, new.host, new.tags, new.settings, new.secrets]
    if not all(map(_storable, given)):
        raise InstanceInputError("NUL characters and invalid Unicode cannot be stored")


def _storable(value: object) -> bool:
    """Whether PostgreSQL can store every text in `value` (no NUL, no lone surrogate)."""
    if isinstance(value, str):
        return "\x00" not in value and value.encode(errors="replace").decode() == value
    if isinstance(value, Mapping):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(map(_storable, value))
    return True


def _check_settings(new: NewInstance) -> None:
    secret = secret_fields(new.connection_type)
    for name, value in new.settings.items():
        if name in HOST_KEY_FIELDS:
            raise InstanceInputError(f"give {name} with --host-key-file or --trust-on-first-use")
        if name in secret and not (isinstance(value, str) and value.startswith(PREFIXES)):
            raise InstanceInputError(
                f"{name} is a secret: give it with --secret {name}=FILE or --secret-prompt {name}"
                " (or --set it to an env: or file: reference)"
            )
        if name in new.secrets:
            raise InstanceInputError(f"{name} is given twice")
    for name, value in new.secrets.items():
        if name not in secret:
            known = ", ".join(secret) or "none"
            raise InstanceInputError(
                f"{name} is not a secret of {new.connection_type} (its secrets: {known})"
            )
        if not value:
            raise InstanceInputError(f"the secret {name} is empty")


def _check_host_key_choice(new: NewInstance) -> None:
    chosen = bool(new.host_key) + new.trust_on_first_use
    if new.connection_type != "ssh":
        if chosen:
            raise InstanceInputError("--host-key-file and --trust-on-first-use are for ssh only")
        return
    if chosen != 1:
        raise InstanceInputError(
            "an ssh instance needs its host key: --host-key-file FILE (e.g. from ssh-keyscan),"
            " or --trust-on-first-use to trust the key it presents at its first check"
        )


def row_values(new: NewInstance, config: Mapping[str, Any]) -> dict[str, Any]:
    """The `infrastructure_instances` columns of the new instance."""
    return {
        "name": new.name,
        "type": new.instance_type or INSTANCE_TYPES[new.connection_type],
        "host": new.host,
        "port": new.port,
        "protocol": new.connection_type,
        "connection_type": new.connection_type,
        "connection_config": dict(config),
        "tags": list(new.tags) or None,
        "space_id": new.space_id,
    }


def ssh_host_entry(new: NewInstance) -> str:
    """The known-hosts entry of an SSH instance, with the port rules of its checks."""
    port = new.settings.get("port") or new.port or SSH_PORT
    return host_entry(new.host, int(port))


def read_host_key(text: str) -> str:
    """The key line in a `.pub` file, a known_hosts file or `ssh-keyscan` output.

    Comments and lines that hold no key are skipped; of several keys, ed25519 is preferred.
    """
    keys = [key for key in map(_key_in_line, text.splitlines()) if key]
    if not keys:
        raise InstanceInputError(
            "no SSH public key in the host key file (expected `ssh-keyscan` output,"
            " a known_hosts line or a .pub file)"
        )
    return min(keys, key=lambda keyline: not keyline.startswith("ssh-ed25519 "))


def _key_in_line(line: str) -> str | None:
    parts = line.split()
    if not parts or parts[0].startswith("#"):
        return None
    # `type base64 [comment]`, or known_hosts' `hosts type base64 [comment]`.
    for start in (0, 1):
        try:
            return keyline_of(parse_keyline(" ".join(parts[start : start + 2])))
        except (ValueError, paramiko.pkey.UnknownKeyType):
            continue
    return None


def secret_key(settings: Settings) -> str | None:
    """AGENT_SECRET_KEY, else the key `infra-agent up` keeps in the data directory."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    kept = settings.kept_key_path
    return _read_kept(kept) if kept.exists() else None


def _read_kept(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the agent's key {path}: {exc.strerror}") from None
