"""The connection profile that `infra-agent up` leaves in its data directory.

`up` writes `<data dir>/agent.json` (mode 0600) once its servers run, and removes it on the
way out. Every other command reads it for the `AGENT_*` variables the environment leaves
unset, so a second terminal finds the running agent with no set-up; `infra-agent env` prints
the same values as `export` lines for other tools. A profile whose process is gone (the agent
was killed) is stale: it is reported and never used.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.core.settings import ConfigError

FILE_NAME = "agent.json"
# Profile field -> the variable it stands in for, in the order `env` prints them.
VARIABLES = {
    "database_url": "AGENT_DATABASE_URL",
    "broker_url": "AGENT_BROKER_URL",
    "result_backend": "AGENT_RESULT_BACKEND",
    "data_dir": "AGENT_DATA_DIR",
}


@dataclass(frozen=True)
class Profile:
    """Where the agent started by `up` can be reached."""

    pid: int
    data_dir: str
    database_url: str
    broker_url: str
    result_backend: str
    flower_url: str
    flower_user: str
    flower_password_file: str | None
    secret_key_file: str | None

    def variables(self) -> dict[str, str]:
        """The `AGENT_*` variables this profile provides."""
        return {name: getattr(self, field) for field, name in VARIABLES.items()}

    def secret_key(self) -> str | None:
        """The Fernet key `up` generated and kept, if it did (not one given by the operator)."""
        if self.secret_key_file and Path(self.secret_key_file).is_file():
            return Path(self.secret_key_file).read_text().strip()
        return None


def path_in(data_dir: Path) -> Path:
    """Where `up` keeps the profile for `data_dir`."""
    return data_dir / FILE_NAME


def write(path: Path, profile: Profile) -> None:
    """Write the profile atomically, readable by its owner only."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(profile), out, indent=2)
    os.replace(temporary, path)


def remove(path: Path, pid: int) -> None:
    """Remove the profile if it is still the one process `pid` wrote."""
    current = read(path)
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)


def read(path: Path) -> Profile | None:
    """The profile at `path`, or None when there is none (or it is not one of ours)."""
    try:
        return Profile(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ProfileError(f"{path} is not an infra-agent profile ({type(exc).__name__})") from None


class ProfileError(ConfigError):
    """A profile file that cannot be read."""


def is_running(pid: int) -> bool:
    """Whether process `pid` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live(path: Path) -> Profile | None:
    """The profile at `path` if the agent that wrote it still runs."""
    profile = read(path)
    return profile if profile is not None and is_running(profile.pid) else None


def fill(environ: MutableMapping[str, str], data_dir: Path) -> str | None:
    """Set the `AGENT_*` variables `environ` lacks from the running agent's profile.

    Returns one line saying what was used, or why nothing was (None when the environment
    already names the database and the broker, or there is no profile at all).
    """
    if environ.get("AGENT_DATABASE_URL") and environ.get("AGENT_BROKER_URL"):
        return None
    path = path_in(data_dir)
    profile = read(path)
    if profile is None:
        return None
    if not is_running(profile.pid):
        return f"ignoring {path}: the agent that wrote it (pid {profile.pid}) is not running"
    taken = [
        name for name, value in _provided(profile).items() if _set_default(environ, name, value)
    ]
    if not taken:
        return None
    return f"using the running agent's profile {path} (pid {profile.pid}) for {', '.join(taken)}"


def _provided(profile: Profile) -> dict[str, str | None]:
    return {**profile.variables(), "AGENT_SECRET_KEY": profile.secret_key()}


def _set_default(environ: MutableMapping[str, str], name: str, value: str | None) -> bool:
    if not value or environ.get(name):
        return False
    environ[name] = value
    return True


def exports(profile: Profile) -> str:
    """Shell `export` lines for the profile; the key is read from its file, never printed."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in profile.variables().items()]
    if profile.secret_key_file:
        lines.append(f'export AGENT_SECRET_KEY="$(cat {shlex.quote(profile.secret_key_file)})"')
    lines.append(
        f"# Flower: {profile.flower_url} (user {profile.flower_user}" + _password_hint(profile)
    )
    return "\n".join(lines)


def _password_hint(profile: Profile) -> str:
    if profile.flower_password_file:
        return f", password in {profile.flower_password_file})"
    return ", password from AGENT_FLOWER_PASSWORD)"
