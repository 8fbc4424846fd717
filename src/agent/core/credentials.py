"""Secret references in the shared schema, resolved only in memory.

A secret field in `connection_config`, `credentials` or `api_auth_config` holds one of:

- `enc:<Fernet token>`: encrypted with `AGENT_SECRET_KEY` (`infra-agent secret encrypt`);
  tokens made with a key listed in `AGENT_SECRET_PREVIOUS_KEYS` still decrypt (rotation);
- `env:NAME`: the value of environment variable NAME in the worker, within the operator's
  scope (`agent.core.secret_scope`);
- `file:/path`: the contents of a file below the operator's secret directories (trailing
  newline removed).

A bare value is refused: a secret stored in clear is a defect to fix, not to use.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from agent.core.secret_scope import ScopeError, SecretScope

PREFIXES = ("enc:", "env:", "file:")
_FINGERPRINT_LABEL = b"infra-agent key fingerprint v1"


class CredentialError(ValueError):
    """A secret reference that cannot be resolved; the message never holds the secret."""


class UndecryptableSecret(CredentialError):
    """An `enc:` secret none of the worker's keys decrypts (another key, or a damaged token)."""


class SecretResolver:
    """Turns secret references into values, with the agent's Fernet keys and secret scope."""

    def __init__(
        self,
        key: str | bytes | None,
        scope: SecretScope | None = None,
        previous_keys: Sequence[str | bytes] = (),
    ) -> None:
        self._keys = [k for k in (key, *previous_keys) if k]
        self._fernet = MultiFernet([Fernet(k) for k in self._keys]) if key else None
        self.scope = scope or SecretScope()

    def encrypt(self, value: str) -> str:
        """The `enc:` reference that stores `value` (with the newest key)."""
        return "enc:" + self._require_fernet().encrypt(value.encode()).decode()

    def rotate(self, reference: str) -> str:
        """An `enc:` reference re-encrypted with the newest key (other references unchanged)."""
        if not isinstance(reference, str) or not reference.startswith("enc:"):
            return reference
        try:
            token = self._require_fernet().rotate(reference.removeprefix("enc:").encode())
        except InvalidToken:
            raise CredentialError("encrypted secret matches none of the agent's keys") from None
        return "enc:" + token.decode()

    def fingerprint(self) -> str | None:
        """A fingerprint of the newest key that reveals nothing of it (None without a key)."""
        if not self._keys:
            return None
        key = self._keys[0]
        raw = key.encode() if isinstance(key, str) else key
        return hmac.new(raw, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]

    def resolve(self, reference: str) -> str:
        """The secret a reference stands for."""
        if not isinstance(reference, str) or not reference.startswith(PREFIXES):
            raise CredentialError(
                "secret is not a reference (enc:, env: or file:); clear-text secrets are refused"
            )
        scheme, _, rest = reference.partition(":")
        readers = {"enc": self._decrypt, "env": self.scope.read_env, "file": self.scope.read_file}
        try:
            return readers[scheme](rest)
        except ScopeError as exc:
            raise CredentialError(str(exc)) from None

    def _decrypt(self, token: str) -> str:
        try:
            return self._require_fernet().decrypt(token.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret("encrypted secret does not match AGENT_SECRET_KEY") from None

    def _require_fernet(self) -> MultiFernet:
        if self._fernet is None:
            raise CredentialError("AGENT_SECRET_KEY is not set, so enc: secrets cannot be used")
        return self._fernet


class Resolves(Protocol):
    """Anything that turns a secret reference into its value (a resolver, or one wrapping it)."""

    def resolve(self, reference: str) -> str:
        """The secret a reference stands for."""
        ...


class RecordingResolver:
    """A resolver that remembers every value it reveals, so that messages can be scrubbed.

    The one way probes and discoverers track their secrets (`agent.probes.base.Template`).
    """

    def __init__(self, inner: Resolves, revealed: list[str] | None = None) -> None:
        self._inner = inner
        self.revealed = revealed if revealed is not None else []

    def resolve(self, reference: str) -> str:
        """The secret, remembered."""
        value = self._inner.resolve(reference)
        self.revealed.append(value)
        return value


def generate_key() -> str:
    """A new Fernet key for AGENT_SECRET_KEY."""
    return Fernet.generate_key().decode()
