"""Plugin health at scale: 1,000 installations spread over 20 loopback services.

Measures, in one run and in turns: one batch of all 1,000 installations through the job's
own path (lease and read, check, write history and status in one transaction), its check
phase alone (coroutines on the worker's event loop and shared aiohttp session), and the
baseline, a bare `aiohttp` loop making the same 1,000 GETs (one session, a semaphore of 32,
the body read). Prints medians, checks/s, the ratios against the bare loop, and the load
average before and after. Goals: refresh >= 0.5x the bare loop, checks alone >= 0.7x.

    AGENT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/plugins.py [--repeat 5]

The services run in a separate process (asyncio, fixed keep-alive answers) so that they do
not compete with the checks for this process's GIL. A scratch database is created, migrated
and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

SERVICES = 20
SPACES = 50  # 20 services x 50 spaces = 1,000 installations
BARE_CONCURRENCY = 32

SERVER = r"""
import asyncio, sys
BODY = b'{"status": "ok"}'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
ANSWER = HEAD % len(BODY) + BODY

class Health(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(ANSWER)

async def main(count):
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Health, "127.0.0.1", 0) for _ in range(count)]
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


def start_services() -> tuple[subprocess.Popen[str], list[int]]:
    """The 20 services in a child process, and their ports."""
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(SERVICES)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    return child, [int(port) for port in child.stdout.readline().split()]


def seed(ports: list[int]) -> list[uuid.UUID]:
    """20 registry entries (one per port) installed in 50 spaces each."""
    from models import ServiceInstallation, ServiceRegistry, Space
    from models.session import session_scope

    with session_scope() as session:
        spaces = [Space(name=f"bench-{n}") for n in range(SPACES)]
        services = [
            ServiceRegistry(
                name=f"svc-{port}",
                slug=f"svc-{port}",
                version="1",
                provider="bench",
                status="approved",
                api_base_url=f"http://127.0.0.1:{port}",
                api_auth_type="none",
            )
            for port in ports
        ]
        session.add_all(spaces + services)
        session.flush()
        rows = [
            ServiceInstallation(service_id=service.id, space_id=space.id)
            for service in services
            for space in spaces
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def refresh_once(ids: list[uuid.UUID]) -> tuple[float, float]:
    """Seconds for a whole batch (read, check, write) and for its check phase alone."""
    from agent.core.settings import get_settings
    from models.session import session_scope
    from tasks import plugins
    from tasks.sweep import held

    settings, holder = get_settings(), str(uuid.uuid4())
    job = plugins.PluginJob(settings, "installation")
    started = time.perf_counter()
    with session_scope() as session:
        taken = job.load(session, held(session, ids, holder, job.lease_s, job.lease_of))
    checking = time.perf_counter()
    checked = job.run(taken, None)
    checked_at = time.perf_counter()
    job.write(taken, checked, holder, ids)
    total = time.perf_counter() - started
    assert {c.health.value for c in checked} == {"healthy"}, "a bench check failed"
    return total, checked_at - checking


def bare_once(ports: list[int]) -> float:
    """Seconds for the same 1,000 GETs on a bare aiohttp loop (one session, semaphore 32)."""
    import aiohttp

    urls = [f"http://127.0.0.1:{port}/health" for _ in range(SPACES) for port in ports]

    async def all_of_them() -> set[int]:
        slots = asyncio.Semaphore(BARE_CONCURRENCY)
        async with aiohttp.ClientSession() as session:

            async def one(url: str) -> int:
                async with slots, session.get(url) as response:
                    await response.read()
                    return response.status

            return set(await asyncio.gather(*(one(url) for url in urls)))

    started = time.perf_counter()
    statuses = asyncio.run(all_of_them())
    assert statuses == {200}, statuses
    return time.perf_counter() - started


def main() -> None:
    """Run both side by side and print medians, checks/s and the ratios."""
    run_on_services(run, __doc__)


def run_on_services(run: Callable[[str, list[int], int], None], doc: str | None) -> None:
    """Parse --repeat and --database-url, start the services and a scratch database, run."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("AGENT_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("set AGENT_TEST_DATABASE_URL (or --database-url) to a PostgreSQL server")
    from tests.support.databases import new_database

    child, ports = start_services()
    try:
        with new_database(args.database_url, "agent_bench") as url:
            run(url, ports, args.repeat)
    finally:
        child.kill()
        child.wait()


def run(url: str, ports: list[int], repeat: int) -> None:
    """Migrate the scratch database, seed it, and measure the contenders in turns."""
    os.environ["AGENT_DATABASE_URL"] = url
    # The fleet listens on loopback, which the default address policy closes to plugin checks.
    os.environ["AGENT_PLUGINS_ALLOW_CIDRS"] = '["0.0.0.0/0", "::/0", "127.0.0.0/8"]'
    from agent.cli import migrate
    from agent.core.settings import get_settings
    from agent.plugins.client import close_shared_pool
    from agent.probes.aio import close_process_loop
    from models.session import dispose_engine

    get_settings.cache_clear()
    migrate.upgrade(url)
    ids = seed(ports)
    refresh_once(ids)  # warm-up: connections, imports
    bare_once(ports)
    load_before = os.getloadavg()
    refreshes, checks_only, bare = [], [], []
    for _ in range(repeat):
        total, check_s = refresh_once(ids)
        refreshes.append(total)
        checks_only.append(check_s)
        bare.append(bare_once(ports))
    load_after = os.getloadavg()
    close_shared_pool()
    close_process_loop()
    dispose_engine()
    report(len(ids), refreshes, checks_only, bare, get_settings().plugins_concurrency)
    print(f"load average before {fmt_load(load_before)}, after {fmt_load(load_after)}")


def report(
    count: int, refreshes: list[float], checks: list[float], bare: list[float], concurrency: int
) -> None:
    """Medians, throughput and the ratios against the bare loop."""
    refresh_s, check_s, bare_s = (statistics.median(x) for x in (refreshes, checks, bare))
    print(f"{count} installations over {SERVICES} loopback services, concurrency {concurrency}")
    line("refresh (read + check + write)", refresh_s, count)
    line("  of which checks", check_s, count)
    line(f"bare aiohttp loop (semaphore {BARE_CONCURRENCY})", bare_s, count)
    print(f"ratio refresh / bare: {bare_s / refresh_s:.2f} (goal >= 0.5)")
    print(f"ratio checks / bare:  {bare_s / check_s:.2f} (goal >= 0.7)")
    rounds = ", ".join(
        f"{count / r:.0f}/{count / c:.0f}/{count / b:.0f}"
        for r, c, b in zip(refreshes, checks, bare, strict=True)
    )
    print(f"rounds (refresh/checks/bare checks/s): {rounds}")


def fmt_load(load: tuple[float, float, float]) -> str:
    """A load average triple, as `uptime` shows it."""
    return " ".join(f"{x:.2f}" for x in load)


def line(label: str, seconds: float, count: int) -> None:
    """One measured row: median seconds and checks per second."""
    print(f"{label:<42} median {seconds:7.3f} s  {count / seconds:7.0f} checks/s")


if __name__ == "__main__":
    main()
