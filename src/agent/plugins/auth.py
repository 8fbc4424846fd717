"""How an installation authenticates to its service: `api_auth_type` and its secrets.

The registry entry's `api_auth_config` says how (non-secret settings below); the secrets come
from the installation's `credentials`, falling back to `api_auth_config`, and are always
references (`enc:`, `env:`, `file:`), resolved here in memory only:

- `none`: nothing is sent;
- `api_key`: `credentials.api_key`, in header `header` (default `X-API-Key`), or in query
  parameter `param` (default `api_key`) when `location` is `query`;
- `bearer`: `credentials.token`, as `Authorization: Bearer`;
- `oauth2`: the client-credentials grant at `token_url` with `credentials.client_id` (plain
  or a reference) and `credentials.client_secret`, optional `scope` and `audience`, the
  client authenticating with HTTP Basic (`client_auth: basic`, default) or in the form body
  (`client_auth: body`). Tokens are cached per process until shortly before they expire,
  keyed by a hash that holds no secret. The token answer is read incrementally and refused
past `MAX_TOKEN_BYTES` (PROTOCOL); the fetch counts against the check's deadline.

Only the standard client-credentials POST is needed, so it is written here on the shared
pooled client rather than pulling in an OAuth library with its own HTTP stack.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from agent.connections.capped import too_large
from agent.core.credentials import PREFIXES, Resolves
from agent.core.results import ErrorClass, ProbeError, parse_config
from agent.plugins.client import Pool
from agent.probes.aiohttp_errors import translated

AUTH_TYPES = ("none", "api_key", "bearer", "oauth2")
MAX_TOKEN_BYTES = 64 * 1024


class AuthConfig(BaseModel):
    """The non-secret part of `api_auth_config`, validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    header: str = "X-API-Key"
    location: Literal["header", "query"] = "header"
    param: str = "api_key"
    token_url: str | None = None
    scope: str | None = None
    audience: str | None = None
    client_auth: Literal["basic", "body"] = "basic"
    default_expires_in_s: float = Field(default=300.0, gt=0)


@dataclass(frozen=True)
class Authenticated:
    """What to add to the health request, and the secret values to scrub from messages."""

    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    token_key: str | None = None


@dataclass(frozen=True)
class CachedToken:
    """An access token and the monotonic time after which it is not used any more."""

    value: str
    use_until: float


class TokenCache:
    """OAuth2 access tokens by key; one fetch at a time per key, per process (on its loop)."""

    def __init__(self, margin_s: float = 60.0) -> None:
        self.margin_s = margin_s
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, key: str, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> str:
        """The cached token for `key`, or a fresh one from `await fetch()` -> (token, expires)."""
        async with self._lock_for(key):
            cached = self._tokens.get(key)
            if cached is not None and time.monotonic() < cached.use_until:
                return cached.value
            value, expires_in_s = await fetch()
            # Renew shortly before expiry: a tenth of the lifetime, at most the margin.
            early_s = min(self.margin_s, expires_in_s / 10)
            self._tokens[key] = CachedToken(value, time.monotonic() + expires_in_s - early_s)
            return value

    def forget(self, key: str) -> None:
        """Drop a token the service refused, so that the next check fetches a new one."""
        self._tokens.pop(key, None)

    def __len__(self) -> int:
        return len(self._tokens)

    def _lock_for(self, key: str) -> asyncio.Lock:
        # All callers run on one loop, so no thread lock; a lock serves the loop it was made on.
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid():
            self._reset()
        if self._loop is not loop:
            self._locks, self._loop = {}, loop
        return self._locks.setdefault(key, asyncio.Lock())


shared_tokens = TokenCache()


async def authenticate(
    auth_type: str | None,
    raw_config: Mapping[str, Any],
    credentials: Mapping[str, Any],
    resolver: Resolves,
    pool: Pool,
    tokens: TokenCache = shared_tokens,
) -> Authenticated:
    """Headers and query parameters that authenticate a health request."""
    kind = auth_type or "none"
    if kind not in AUTH_TYPES:
        raise ProbeError(ErrorClass.CONFIG, f"unknown api_auth_type {kind!r}")
    config = parse_config(AuthConfig, raw_config)
    secrets = _Secrets({**raw_config, **credentials}, resolver)
    if kind == "none":
        return Authenticated()
    if kind == "api_key":
        key = secrets.secret("api_key")
        if config.location == "query":
            return Authenticated(params={config.param: key}, secrets=(key,))
        return Authenticated(headers={config.header: key}, secrets=(key,))
    if kind == "bearer":
        token = secrets.secret("token")
        return Authenticated(headers={"Authorization": f"Bearer {token}"}, secrets=(token,))
    return await _oauth2(config, secrets, pool, tokens)


class _Secrets:
    """Looks up credential fields, resolving references; names missing fields clearly."""

    def __init__(self, fields: Mapping[str, Any], resolver: Resolves) -> None:
        self._fields = fields
        self._resolver = resolver

    def secret(self, name: str) -> str:
        """The secret a reference field stands for."""
        value = self._fields.get(name)
        if not value:
            raise ProbeError(ErrorClass.CONFIG, f"credentials.{name} is missing")
        return self._resolver.resolve(value)

    def plain_or_secret(self, name: str) -> str:
        """A field that may be stored plain (a client id) or as a reference."""
        value = self._fields.get(name)
        if isinstance(value, str) and value and not value.startswith(PREFIXES):
            return value
        return self.secret(name)


async def _oauth2(
    config: AuthConfig, secrets: _Secrets, pool: Pool, tokens: TokenCache
) -> Authenticated:
    if not config.token_url:
        raise ProbeError(ErrorClass.CONFIG, "api_auth_config.token_url is missing for oauth2")
    client_id = secrets.plain_or_secret("client_id")
    client_secret = secrets.secret("client_secret")
    key = token_key(config, client_id, client_secret)
    token = await tokens.get(key, lambda: fetch_token(pool, config, client_id, client_secret))
    return Authenticated(
        headers={"Authorization": f"Bearer {token}"},
        secrets=(client_secret, token),
        token_key=key,
    )


def token_key(config: AuthConfig, client_id: str, client_secret: str) -> str:
    """A cache key for a client's tokens: a hash, so no secret sits in memory dumps or logs."""
    parts = (config.token_url, client_id, client_secret, config.scope, config.audience)
    return hashlib.sha256("\0".join(p or "" for p in parts).encode()).hexdigest()


async def fetch_token(
    pool: Pool, config: AuthConfig, client_id: str, client_secret: str
) -> tuple[str, float]:
    """A new access token by the client-credentials grant, and its lifetime in seconds."""
    assert config.token_url is not None
    form = {"grant_type": "client_credentials"}
    form.update({k: v for k, v in (("scope", config.scope), ("audience", config.audience)) if v})
    headers = {}
    if config.client_auth == "body":
        form.update(client_id=client_id, client_secret=client_secret)
    else:
        headers["Authorization"] = aiohttp.encode_basic_auth(client_id, client_secret)
    with translated():
        async with pool.session.post(
            config.token_url, data=form, headers=headers, allow_redirects=False
        ) as response:
            body = await read_capped_async(response.content, MAX_TOKEN_BYTES)
    return _token_from(response.status, body, config.default_expires_in_s)


async def read_capped_async(content: aiohttp.StreamReader, cap_bytes: int) -> bytes:
    """The whole body, read in pieces; a PROTOCOL error once past `cap_bytes`."""
    body = await content.read(cap_bytes + 1)
    while len(body) <= cap_bytes and not content.at_eof():
        body += await content.read(cap_bytes + 1 - len(body))
    if len(body) > cap_bytes:
        raise too_large(cap_bytes)
    return body


def _token_from(status_code: int, content: bytes, default_expires_in_s: float) -> tuple[str, float]:
    if status_code != 200:
        raise ProbeError(
            ErrorClass.AUTH, f"token endpoint answered HTTP {status_code}{_oauth_error(content)}"
        )
    body = _json(content)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProbeError(ErrorClass.PROTOCOL, "token endpoint answered without an access_token")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return token, default_expires_in_s
    return token, float(expires_in) if expires_in > 0 else default_expires_in_s


def _oauth_error(content: bytes) -> str:
    # RFC 6749 error codes are short fixed words; anything else is not echoed.
    error = _json(content).get("error")
    return f" ({error})" if isinstance(error, str) and error.replace("_", "").isalpha() else ""


def _json(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
