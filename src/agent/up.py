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

from agent import migrate
from agent.cli_instances import first_steps
from agent.credentials import generate_key
from agent.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from agent.settings import Settings, to_sqlalchemy_url

STOP_GRACE_S = 30.0
POLL_S = 0.5


@dataclass(frozen=True)
class Stack:
    """Where the agent's processes find their servers and secrets."""

    database_url: str
    broker_url: str
    flower_password: str
    secret_key: str

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
    result = Stack(
        database_url=database_url(settings, stack),
        broker_url=broker_url(settings, stack),
        flower_password=_secret_value(settings.flower_password)
        or kept_secret(settings.data_dir / "flower-password", lambda: secrets.token_urlsafe(18)),
        secret_key=_secret_value(settings.secret_key)
        or kept_secret(settings.data_dir / "secret.key", generate_key),
    )
    migrate.upgrade(result.database_url)
    return result


def _secret_value(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def commands(settings: Settings) -> dict[str, list[str]]:
    """The worker, beat and Flower command lines (secrets travel in the environment)."""
    celery = [sys.executable, "-m", "celery", "-A", "agent"]
    level = ["--loglevel", settings.log_level]
    return {
        "worker": [*celery, "worker", *level, "--hostname", "agent@%h"],
        # Beat keeps its schedule in the database (agent.beat), so it needs no schedule file.
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


def banner(settings: Settings, stack: Stack) -> str:
    """What the operator needs to know once everything is up."""
    db = make_url(to_sqlalchemy_url(stack.database_url)).render_as_string()
    return "\n".join(
        [
            "infra-agent is up",
            f"  data directory: {settings.data_dir}",
            f"  database:       {db}",
            f"  broker:         {_hide_password(stack.broker_url)}",
            f"  Flower:         http://{settings.flower_address}:{settings.flower_port}/",
            f"  Flower login:   {settings.flower_user} / {stack.flower_password}",
            "Press Ctrl-C to stop.",
        ]
    )


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
        with running(commands(settings), servers.environment(settings)) as procs:
            print(banner(settings, servers), *filter(None, [hint]), sep="\n", flush=True)
            return supervise(procs)
