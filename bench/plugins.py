"""Plugin health at scale: 1,000 installations spread over 20 loopback services.

Measures one batch of all 1,000 installations through the job's own path (lease and read,
check, write history and status in one transaction) and its check phase alone, with the
worker's shared pooled client; the baseline runs the same 1,000 checks with the instance
HTTP probe, which opens a new client (and connection) per check. Same concurrency for both.
Goal: at least 500 checks/s for the refresh.

    AGENT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/plugins.py [--repeat 5]

The services run in a separate process (asyncio, fixed keep-alive answers) so that they do
not compete with the checks for this process's GIL. A scratch database is created, migrated
and dropped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

SERVICES = 20
SPACES = 50  # 20 services x 50 spaces = 1,000 installations
BASELINE_SAMPLE = 200  # the baseline is slow: a sample of the checks, as checks/s

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

    settings, holder = get_settings(), str(uuid.uuid4())
    started = time.perf_counter()
    with session_scope() as session:
        specs, clock = plugins.take(session, "installation", ids, holder, settings)
    checking = time.perf_counter()
    checked = plugins.check(settings, "installation", specs, clock)
    checked_at = time.perf_counter()
    with session_scope() as session:
        plugins.write(session, "installation", checked, holder, ids)
    total = time.perf_counter() - started
    assert {c.health.value for c in checked} == {"healthy"}, "a bench check failed"
    return total, checked_at - checking


def baseline_once(ports: list[int], concurrency: int, timeout_s: float) -> float:
    """Seconds per check with a new HTTP client per check (the instance probe), over a sample."""
    from agent.core.credentials import SecretResolver
    from agent.probes.http import HttpProbe

    per_port = BASELINE_SAMPLE // len(ports)
    urls = [f"http://127.0.0.1:{port}/health" for _ in range(per_port) for port in ports]
    resolver = SecretResolver(None)

    def one(url: str) -> str:
        return HttpProbe({"url": url}, resolver, timeout_s).run().status.value

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        statuses = set(pool.map(one, urls))
    assert statuses == {"ok"}, statuses
    return (time.perf_counter() - started) / len(urls)


def main() -> None:
    """Run both side by side and print medians, checks/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("AGENT_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("set AGENT_TEST_DATABASE_URL (or --database-url) to a PostgreSQL server")
    from tests.conftest import new_database

    child, ports = start_services()
    try:
        with new_database(args.database_url, "agent_bench") as url:
            run(url, ports, args.repeat)
    finally:
        child.kill()
        child.wait()


def run(url: str, ports: list[int], repeat: int) -> None:
    """Migrate the scratch database, seed it, and measure."""
    os.environ["AGENT_DATABASE_URL"] = url
    # The fleet listens on loopback, which the default address policy closes to plugin checks.
    os.environ["AGENT_PLUGINS_ALLOW_CIDRS"] = '["0.0.0.0/0", "::/0", "127.0.0.0/8"]'
    from agent.cli import migrate
    from agent.core.settings import get_settings
    from models.session import dispose_engine

    get_settings.cache_clear()
    migrate.upgrade(url)
    ids = seed(ports)
    settings = get_settings()
    refresh_once(ids)  # warm-up: connections, imports
    baseline_once(ports, settings.plugins_concurrency, settings.plugins_timeout_s)
    pooled, checks_only, baseline = [], [], []
    for _ in range(repeat):
        total, check_s = refresh_once(ids)
        pooled.append(total)
        checks_only.append(check_s)
        baseline.append(
            baseline_once(ports, settings.plugins_concurrency, settings.plugins_timeout_s)
        )
    dispose_engine()
    report(len(ids), pooled, checks_only, baseline, settings.plugins_concurrency)


def report(
    count: int, pooled: list[float], checks: list[float], baseline: list[float], concurrency: int
) -> None:
    """Medians, throughput and the ratio against the baseline."""
    refresh_s, check_s = statistics.median(pooled), statistics.median(checks)
    base_s = statistics.median(baseline) * count  # per-check seconds, scaled to the same count
    print(f"{count} installations over {SERVICES} loopback services, concurrency {concurrency}")
    line("refresh (read + check + write)", refresh_s, count)
    line("  of which checks (pooled client)", check_s, count)
    line("baseline (a new client per check, est.)", base_s, count)
    print(f"ratio pooled checks / baseline: {base_s / check_s:.1f}x")
    print(
        f"goal >= 500 checks/s for the refresh: {'met' if count / refresh_s >= 500 else 'NOT met'}"
    )


def line(label: str, seconds: float, count: int) -> None:
    """One measured row: median seconds and checks per second."""
    print(f"{label:<42} median {seconds:7.3f} s  {count / seconds:7.0f} checks/s")


if __name__ == "__main__":
    main()
