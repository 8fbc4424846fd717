"""Where `env:` and `file:` secret references may reach: the operator's scope, not the agent's.

Rows that name secret references are written by tenants, and the worker's environment and
files hold the keys to everything (AGENT_SECRET_KEY, the database URL, /proc/self/environ).
So a reference resolves only inside a scope the operator set:

- `env:NAME`: NAME starts with `AGENT_SECRET_ENV_PREFIX` (default `AGENT_SECRET_`) or is
  listed in `AGENT_SECRET_ENV_NAMES`; a variable the agent reads as a setting (`AGENT_<FIELD>`,
  in any letter case, such as AGENT_SECRET_KEY) never resolves, whatever the scope says;
- `file:/path`: the path, with every symlink resolved, lies below one of
  `AGENT_SECRET_FILE_DIRS` (default `/run/secrets`, `/var/run/secrets`), is a regular file,
  and holds at most `AGENT_SECRET_FILE_MAX_BYTES`.

A refusal says which kind of reference was refused and why, never the name or path it held.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENV_PREFIX = "AGENT_SECRET_"
DEFAULT_FILE_DIRS = ("/run/secrets", "/var/run/secrets")
DEFAULT_FILE_MAX_BYTES = 64 * 1024


class ScopeError(ValueError):
    """A reference outside the operator's scope; the message names only the reference kind."""


def agent_setting_names() -> frozenset[str]:
    """The environment variables the agent reads as its own settings, upper-cased."""
    from agent.core.settings import Settings  # settings sits above this module

    return frozenset(f"AGENT_{name}".upper() for name in Settings.model_fields)


@dataclass(frozen=True)
class SecretScope:
    """The variables and directories that `env:` and `file:` references may read."""

    env_prefix: str = DEFAULT_ENV_PREFIX
    env_names: frozenset[str] = frozenset()
    file_dirs: tuple[str, ...] = DEFAULT_FILE_DIRS
    file_max_bytes: int = DEFAULT_FILE_MAX_BYTES
    forbidden_env: frozenset[str] = field(default_factory=agent_setting_names)

    @classmethod
    def from_settings(cls, settings: Any) -> SecretScope:
        """The scope an operator configured in the agent's settings."""
        return cls(
            env_prefix=settings.secret_env_prefix,
            env_names=frozenset(settings.secret_env_names),
            file_dirs=tuple(str(path) for path in settings.secret_file_dirs),
            file_max_bytes=settings.secret_file_max_bytes,
        )

    def allows_env(self, name: str) -> bool:
        """Whether `env:NAME` may be resolved."""
        if not name or name.upper() in self.forbidden_env:
            return False
        return name in self.env_names or bool(self.env_prefix and name.startswith(self.env_prefix))

    def read_env(self, name: str) -> str:
        """The value of an allowed environment variable."""
        if not self.allows_env(name):
            raise ScopeError(
                "env: reference refused: only variables named by AGENT_SECRET_ENV_PREFIX or "
                "AGENT_SECRET_ENV_NAMES resolve, never the agent's own settings"
            )
        value = os.environ.get(name)
        if value is None:
            raise ScopeError(f"environment variable {name} is not set on this worker")
        return value

    def read_file(self, path: str) -> str:
        """The text of an allowed secret file, without its trailing newline."""
        real = os.path.realpath(path)
        if not any(_below(real, folder) for folder in _real_dirs(self.file_dirs)):
            raise ScopeError(
                "file: reference refused: only files below AGENT_SECRET_FILE_DIRS resolve"
            )
        data = _read_capped(real, self.file_max_bytes)
        try:
            return data.decode().rstrip("\n")
        except UnicodeDecodeError:
            raise ScopeError("file: secret is not UTF-8 text") from None


def _real_dirs(folders: Iterable[str]) -> list[str]:
    return [os.path.realpath(folder) for folder in folders if folder]


def _below(path: str, folder: str) -> bool:
    return path != folder and os.path.commonpath([path, folder]) == folder


def _read_capped(path: str, max_bytes: int) -> bytes:
    # O_NONBLOCK: a FIFO planted in a secrets directory must not hang the check.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise ScopeError(f"file: secret cannot be read: {exc.strerror}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        raise ScopeError("file: reference refused: not a regular file")
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if info.st_size > max_bytes or len(data) > max_bytes:
        raise ScopeError(f"file: reference refused: larger than {max_bytes} bytes")
    return data
