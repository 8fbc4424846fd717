"""Health sweep over SSH: the agent against parallel-ssh, Debian's pssh and Ansible.

Run as root from the repository root (sshd must switch users), for example:

    .venv/bin/python bench/health_sweep.py --instances 500 --parallelism 32 --repeats 3

It starts real OpenSSH sshd processes on distinct loopback addresses (bench/sshd_fleet.py),
creates, migrates and finally drops a database of its own on the PostgreSQL server at
`--database-url`, and writes one `infrastructure_instances` row per host (SSH key login,
the key an `enc:` secret, the host key recorded in `agent_known_hosts` as if trusted
earlier). Everybody runs the same command (`agent.probes.ssh.FACTS_COMMAND`) over the
same hosts with the same parallelism, and every tool verifies host keys except
parallel-ssh, which has no host key check.

- agent cold / warm: the health job's real orchestration in this process, as one worker
  process would run it: the sweep's selection and leasing (`queries.due_instances`,
  `tasks.sweep.lease_batches`), then `tasks.health.run_batch` for each batch in turn
  (settings: `health_concurrency` = parallelism, batch size `--batch-size`, jitter 0,
  the SSH pool sized as `worker_init` sizes it). Only the Redis hop between sweep and
  batches is left out. Cold starts with an empty transport cache; warm is the next sweep.
- parallel-ssh cold / warm: one `ParallelSSHClient` (pool_size = parallelism); warm is
  a second `run_command` on the same client, which reuses its sessions.
- pssh: Debian's `parallel-ssh -p <parallelism>` (OpenSSH client; cold by nature).
- ansible: `ansible all -m raw -a <command> -f <parallelism>` (OpenSSH client, no
  ControlMaster so no connection outlives a run; cold).

Wall time, hosts/second and the client's CPU time per check per run; the table shows
medians over `--repeats`, the ratio agent/baseline of hosts/second (above 1: the agent is
faster) and of CPU per check (below 1: the agent uses less). The agent's CPU includes its
database work (selection, leases, the batched write), which the baselines do not do. A run
where a host failed is reported, not hidden.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sshd_fleet import Fleet, running_fleet

from agent.cli import migrate
from agent.connections import sshpool
from agent.connections.known_hosts import host_entry
from agent.core.credentials import SecretResolver, generate_key
from agent.core.settings import Settings, get_settings
from agent.health import queue_for
from agent.probes.ssh import FACTS_COMMAND, MARK
from models import InfrastructureInstance, queries
from models.session import dispose_engine, session_scope
from models.store import health as health_store
from tasks.health import health_sweep, run_batch
from tasks.sweep import lease_batches

DONE = f"{MARK}end"
T = TypeVar("T")
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Run:
    """One timed run of one tool."""

    tool: str
    wall_s: float
    ok: int
    hosts: int
    cpu_s: float = 0.0  # the client's CPU time (user + system), child processes included


# --- the database -------------------------------------------------------------------------


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server at `server_url`, migrated; dropped afterwards."""
    name = f"agent_bench_health_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        dispose_engine()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_agent(database_url: str, args: argparse.Namespace) -> Settings:
    """Point the agent's settings at the bench database, with the bench's parallelism."""
    os.environ.update(
        AGENT_DATABASE_URL=database_url,
        AGENT_SECRET_KEY=generate_key(),
        AGENT_HEALTH_CONCURRENCY=str(args.parallelism),
        AGENT_HEALTH_BATCH_SIZE=str(args.batch_size),
        AGENT_HEALTH_JITTER_S="0",
    )
    get_settings.cache_clear()
    settings = get_settings()
    # What the worker_init signal does in a real worker.
    sshpool.default_pool.max_size = settings.ssh_pool_size
    sshpool.default_pool.idle_s = settings.ssh_idle_s
    sshpool.default_pool.max_age_s = settings.ssh_max_reuse_s
    return settings


def seed_instances(fleet: Fleet, settings: Settings) -> None:
    """One SSH instance row per host, its host key recorded as trusted."""
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    reference = SecretResolver(secret_key).encrypt(fleet.private_key)
    rows = [
        InfrastructureInstance(
            name=f"bench-{host}",
            type="vm",
            host=host,
            port=fleet.port,
            connection_type="ssh",
            connection_config={"username": fleet.username, "private_key": reference},
        )
        for host in fleet.hosts
    ]
    with session_scope() as session:
        session.add_all(rows)
        session.flush()
        keys = {row.id: (host_entry(row.host, fleet.port), fleet.host_key) for row in rows}
        health_store.remember_host_keys(session, keys)


# --- the runners --------------------------------------------------------------------------


def agent_sweep(settings: Settings) -> tuple[int, int]:
    """One sweep as a worker runs it: select and lease the due rows, then every batch."""
    with session_scope() as session:
        started = queries.database_time(session)
        rows = queries.due_instances(session, 0, settings.health_max_per_sweep)
        due = [(queue_for(row.tags or ()), row.connection_type, row.id) for row in rows]
        batches = lease_batches(session, health_sweep(settings), due)
    for task_id, _queue, ids in batches:
        run_batch(settings, ids, holder=task_id)
    return checked_ok_since(started), len(due)


def checked_ok_since(started: dt.datetime) -> int:
    """How many instances got a successful check since `started` (counted after timing)."""
    instance = InfrastructureInstance
    with session_scope() as session:
        query = select(func.count()).where(
            instance.last_health_check >= started,
            instance.health_status["check"]["status"].astext == "ok",
        )
        return session.scalar(query) or 0


def run_agent(fleet: Fleet, settings: Settings, args: argparse.Namespace) -> list[Run]:
    """A cold sweep (empty transport cache) and the warm sweeps after it."""
    sshpool.clear_default_pool()
    runs = []
    for tool in ("agent cold", *["agent warm"] * args.warm_runs):
        wall_s, (ok, hosts) = timed(lambda: agent_sweep(settings))
        runs.append(Run(tool, wall_s, ok, hosts, last_cpu_s))
    sshpool.clear_default_pool()
    return runs


def run_parallel_ssh(fleet: Fleet, settings: Settings, args: argparse.Namespace) -> list[Run]:
    """parallel-ssh (libssh2): a fresh client, then the same client again (sessions reused)."""
    parallelism = args.parallelism
    from pssh.clients import ParallelSSHClient

    client = ParallelSSHClient(
        list(fleet.hosts),
        user=fleet.username,
        pkey=str(fleet.key_path),
        port=fleet.port,
        pool_size=parallelism,
        num_retries=1,
        timeout=settings.health_timeout_s,
        allow_agent=False,
        identity_auth=False,
    )
    runs = []
    for tool in ("parallel-ssh cold", *["parallel-ssh warm"] * args.warm_runs):
        wall_s, ok = timed(lambda: parallel_ssh_once(client))
        runs.append(Run(tool, wall_s, ok, len(fleet.hosts), last_cpu_s))
    for host_client in getattr(client, "_host_clients", {}).values():
        host_client.disconnect()
    return runs


def parallel_ssh_once(client: object) -> int:
    """Run the facts command on every host and read every output; the hosts that succeeded."""
    output = client.run_command(FACTS_COMMAND, stop_on_errors=False)  # type: ignore[attr-defined]
    texts = ["\n".join(out.stdout) if out.exception is None else "" for out in output]
    client.join(output)  # type: ignore[attr-defined]
    return sum(out.exit_code == 0 and DONE in text for out, text in zip(output, texts, strict=True))


def run_pssh(fleet: Fleet, settings: Settings, args: argparse.Namespace) -> list[Run]:
    """Debian's parallel-ssh command line, host keys checked against the fleet's known_hosts."""
    parallelism = args.parallelism
    binary = shutil.which("parallel-ssh") or shutil.which("pssh")
    if binary is None:
        raise SystemExit("Debian's pssh is missing: apt-get install pssh")
    outdir = Path(tempfile.mkdtemp(prefix="bench-pssh-", dir=fleet.workdir))
    hosts_file = fleet.workdir / "pssh-hosts"
    hosts_file.write_text("".join(f"{host}:{fleet.port}\n" for host in fleet.hosts))
    command = [
        binary, "-h", str(hosts_file), "-l", fleet.username, "-p", str(parallelism),
        "-t", str(int(settings.health_timeout_s * 6)), "-o", str(outdir),
        *ssh_options(fleet, "-O"), FACTS_COMMAND,
    ]  # fmt: skip
    wall_s, _ = timed(lambda: subprocess.run(command, capture_output=True, check=False))
    ok = sum(DONE in path.read_text(errors="replace") for path in outdir.iterdir())
    shutil.rmtree(outdir, ignore_errors=True)
    return [Run("pssh", wall_s, ok, len(fleet.hosts), last_cpu_s)]


def ssh_options(fleet: Fleet, flag: str) -> list[str]:
    """OpenSSH client options: the fleet's key only, and strict host key checking."""
    options = [
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={fleet.known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        f"IdentityFile={fleet.key_path}",
        "IdentitiesOnly=yes",
        "BatchMode=yes",
    ]
    return [word for option in options for word in (flag, option)]


def run_ansible(fleet: Fleet, settings: Settings, args: argparse.Namespace) -> list[Run]:
    """`ansible all -m raw` over an inventory of the fleet, host keys checked."""
    parallelism = args.parallelism
    home = Path(tempfile.mkdtemp(prefix="bench-ansible-", dir=fleet.workdir))
    inventory = home / "inventory.ini"
    common_args = " ".join(ssh_options(fleet, "-o"))
    inventory.write_text(
        "[fleet]\n"
        + "".join(f"{host} ansible_port={fleet.port}\n" for host in fleet.hosts)
        + "[all:vars]\n"
        + f"ansible_user={fleet.username}\n"
        + f"ansible_ssh_private_key_file={fleet.key_path}\n"
        + f"ansible_ssh_common_args='{common_args}'\n"
    )
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_TIMEOUT": str(int(settings.health_timeout_s * 3)),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }
    command = [
        str(VENV_BIN / "ansible"), "all", "-i", str(inventory), "-m", "raw",
        "-a", FACTS_COMMAND, "-f", str(parallelism),
    ]  # fmt: skip
    wall_s, done = timed(
        lambda: subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    )
    ok = len(re.findall(r"^\S+ \| CHANGED \| rc=0 >>", done.stdout, flags=re.MULTILINE))
    return [Run("ansible", wall_s, ok, len(fleet.hosts), last_cpu_s)]


RUNNERS: dict[str, Callable[[Fleet, Settings, argparse.Namespace], list[Run]]] = {
    "agent": run_agent,
    "parallel-ssh": run_parallel_ssh,
    "pssh": run_pssh,
    "ansible": run_ansible,
}
COMPARISONS = [
    ("agent warm", "parallel-ssh warm"),
    ("agent cold", "parallel-ssh cold"),
    ("agent cold", "pssh"),
    ("agent cold", "ansible"),
]


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Wall time of `action()`, and what it returned; its CPU time goes to `last_cpu_s`."""
    global last_cpu_s
    cpu_before, started = cpu_seconds(), time.perf_counter()
    value = action()
    wall_s = time.perf_counter() - started
    last_cpu_s = cpu_seconds() - cpu_before
    return wall_s, value


last_cpu_s = 0.0


def cpu_seconds() -> float:
    """User and system CPU of this process and of its finished children."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


# --- the report ---------------------------------------------------------------------------


def report(runs: list[Run]) -> str:
    """The table of medians, then the ratios agent/baseline."""
    by_tool: dict[str, list[Run]] = {}
    for run in runs:
        by_tool.setdefault(run.tool, []).append(run)
    lines = [
        f"{'tool':<20}{'median s':>10}{'hosts/s':>10}{'cpu s':>8}{'cpu ms/check':>14}"
        f"{'failed':>8}  runs (s)",
    ]
    rates, cpu_ms = {}, {}
    for tool, tool_runs in by_tool.items():
        wall = statistics.median(r.wall_s for r in tool_runs)
        rates[tool] = tool_runs[0].hosts / wall
        cpu = statistics.median(r.cpu_s for r in tool_runs)
        cpu_ms[tool] = statistics.median(1000 * r.cpu_s / r.hosts for r in tool_runs)
        each = " ".join(f"{r.wall_s:.2f}" for r in tool_runs)
        failed = sum(r.hosts - r.ok for r in tool_runs)
        lines.append(
            f"{tool:<20}{wall:>10.2f}{rates[tool]:>10.1f}{cpu:>8.2f}{cpu_ms[tool]:>14.2f}"
            f"{failed:>8}  {each}"
        )
    lines.append("")
    for mine, theirs in COMPARISONS:
        if mine in rates and theirs in rates:
            ratio = rates[mine] / rates[theirs]
            cpu_ratio = cpu_ms[mine] / cpu_ms[theirs]
            lines.append(
                f"{mine} / {theirs}: {ratio:.2f}x hosts/s, {cpu_ratio:.2f}x cpu per check"
                " (below 1: the agent uses less)"
            )
    return "\n".join(lines)


def machine_notes() -> str:
    """CPU count, load and versions, for the record."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr
    return (
        f"{os.cpu_count()} CPUs, load average {load}, Python {platform.python_version()}, "
        f"{ssh.strip()}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--parallelism", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warm-runs",
        type=int,
        default=1,
        help="warm sweeps after each cold one (agent, parallel-ssh)",
    )
    parser.add_argument("--batch-size", type=int, default=Settings().health_batch_size)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tools", default=",".join(RUNNERS), help="comma-separated subset")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    tools = [name.strip() for name in args.tools.split(",") if name.strip()]
    print(f"machine: {machine_notes()}", flush=True)
    with running_fleet(args.instances) as fleet, bench_database(args.database_url) as url:
        settings = configure_agent(url, args)
        seed_instances(fleet, settings)
        runs: list[Run] = []
        for repeat in range(args.repeats):
            # Each repeat starts with a different tool, so no tool always meets the same load.
            for tool in tools[repeat % len(tools) :] + tools[: repeat % len(tools)]:
                for run in RUNNERS[tool](fleet, settings, args):
                    print(
                        f"[{repeat + 1}] {run.tool}: {run.wall_s:.2f}s cpu={run.cpu_s:.2f}s "
                        f"ok={run.ok} load={os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    runs.append(run)
    print(
        f"\n{args.instances} hosts, parallelism {args.parallelism}, medians of {args.repeats}"
        f" repeats ({args.warm_runs} warm runs each)"
    )
    print(report(runs))
    print(f"machine after: {machine_notes()}")


if __name__ == "__main__":
    main()
