"""One key, checked: a worker runs only with a secret key the database knows.

Workers with different AGENT_SECRET_KEY values on the same queues would each fail the
other's `enc:` secrets, flipping instances to `error` at random. So the fingerprint of the
key (`SecretResolver.fingerprint`, an HMAC that reveals nothing of the key) is recorded in
`agent_keys` at the first start, and a worker whose newest key and previous keys
(AGENT_SECRET_PREVIOUS_KEYS) all miss the recorded ones refuses to start. A worker carrying
the new key with the old one as previous is accepted during a rotation;
`infra-agent secret rotate` then re-encrypts the references and records only the new key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from agent.core.credentials import CredentialError, SecretResolver
from agent.core.settings import ConfigError, Settings

log = logging.getLogger(__name__)


def fingerprints(settings: Settings) -> tuple[str | None, list[str]]:
    """The fingerprint of the newest key, and those of the previous keys."""
    newest = settings.secret_key.get_secret_value() if settings.secret_key else None
    previous = [k.get_secret_value() for k in settings.secret_previous_keys]
    return SecretResolver(newest).fingerprint(), [
        SecretResolver(key).fingerprint() or "" for key in previous
    ]


def judge(newest: str | None, previous: Iterable[str], recorded: set[str]) -> None:
    """Refuse (ConfigError) keys that match none of the recorded fingerprints."""
    if newest is None or newest in recorded or recorded & set(previous):
        return
    raise ConfigError(
        "AGENT_SECRET_KEY does not match the key the other workers use (its fingerprint "
        f"{newest[:12]} is not among those recorded in agent_keys): give every worker the same "
        "key, or, to rotate, the new key with the old one in AGENT_SECRET_PREVIOUS_KEYS"
    )


def check_key(settings: Settings) -> None:
    """Record the key at the first start, or refuse a key the database does not know."""
    from models.session import session_scope
    from models.store import keys

    newest, previous = fingerprints(settings)
    if newest is None:
        return
    with session_scope() as session:
        recorded = keys.record_first_key(session, newest)
    judge(newest, previous, recorded)


def check_key_at_start(settings: Settings) -> None:
    """`check_key` at a worker's start; a database not reachable (or not migrated) yet is logged.

    The worker then starts: its checks fail on the database like any task would, and the key
    is checked at the next start. A key the database does not know stops it (ConfigError).
    """
    from sqlalchemy.exc import DBAPIError

    if not settings.database_url:
        return
    try:
        check_key(settings)
    except DBAPIError as exc:
        log.warning("secret key not checked: the database did not answer (%s)", type(exc).__name__)


def rotated(value: Any, resolver: SecretResolver) -> Any:
    """`value` (JSON) with every `enc:` string re-encrypted with the newest key."""
    if isinstance(value, dict):
        return {k: rotated(v, resolver) for k, v in value.items()}
    if isinstance(value, list):
        return [rotated(v, resolver) for v in value]
    if isinstance(value, str) and value.startswith("enc:"):
        try:
            return resolver.rotate(value)
        except CredentialError:
            return value  # not ours to decrypt: left alone, and still undecryptable
    return value


def rotate_references(settings: Settings) -> dict[str, int]:
    """Re-encrypt every `enc:` reference with the newest key, then record only that key."""
    from models.session import session_scope
    from models.store import keys

    resolver = resolver_of(settings)
    newest = resolver.fingerprint()
    if newest is None:
        raise ConfigError("AGENT_SECRET_KEY is not set: there is no key to rotate to")
    with session_scope() as session:
        changed = keys.rewrite_references(session, lambda value: rotated(value, resolver))
        keys.replace_keys(session, newest)
    return changed


def resolver_of(settings: Settings) -> SecretResolver:
    """A resolver with the newest key and the previous ones (no secret scope needed here)."""
    newest = settings.secret_key.get_secret_value() if settings.secret_key else None
    previous = [k.get_secret_value() for k in settings.secret_previous_keys]
    return SecretResolver(newest, previous_keys=previous)
