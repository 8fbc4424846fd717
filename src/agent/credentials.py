"""Secret references in the shared schema, resolved only in memory.

A secret field in `connection_config`, `credentials` or `api_auth_config` holds one of:

- `enc:<Fernet token>`: encrypted with `AGENT_SECRET_KEY` (`infra-agent secret encrypt`);
- `env:NAME`: the value of environment variable NAME in the worker;
- `file:/path`: the contents of a file on the worker (trailing newline removed).

A bare value is refused: a secret stored in clear is a defect to fix, not to use.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

PREFIXES = ("enc:", "env:", "file:")


class CredentialError(ValueError):
    """A secret reference that cannot be resolved; the message never holds the secret."""


class SecretResolver:
    """Turns secret references into values, with the agent's Fernet key."""

    def __init__(self, key: str | bytes | None) -> None:
        self._fernet = Fernet(key) if key else None

    def encrypt(self, value: str) -> str:
        """The `enc:` reference that stores `value`."""
        return "enc:" + self._require_fernet().encrypt(value.encode()).decode()

    def resolve(self, reference: str) -> str:
        """The secret a reference stands for."""
        if not isinstance(reference, str) or not reference.startswith(PREFIXES):
            raise CredentialError(
                "secret is not a reference (enc:, env: or file:); clear-text secrets are refused"
            )
        scheme, _, rest = reference.partition(":")
        return {"enc": self._decrypt, "env": _from_env, "file": _from_file}[scheme](rest)

    def _decrypt(self, token: str) -> str:
        try:
            return self._require_fernet().decrypt(token.encode()).decode()
        except InvalidToken:
            raise CredentialError("encrypted secret does not match AGENT_SECRET_KEY") from None

    def _require_fernet(self) -> Fernet:
        if self._fernet is None:
            raise CredentialError("AGENT_SECRET_KEY is not set, so enc: secrets cannot be used")
        return self._fernet


def _from_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise CredentialError(f"environment variable {name} is not set on this worker")
    return value


def _from_file(path: str) -> str:
    try:
        return Path(path).read_text().rstrip("\n")
    except OSError as exc:
        raise CredentialError(f"secret file {path} cannot be read: {exc.strerror}") from None


def generate_key() -> str:
    """A new Fernet key for AGENT_SECRET_KEY."""
    return Fernet.generate_key().decode()
