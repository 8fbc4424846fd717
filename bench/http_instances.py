"""A health batch of HTTP instances: 1,000 instances spread over 20 loopback services.

Measures, in one run and in turns: one batch of all 1,000 instances through the job's own
path (`tasks.health.run_batch`: lease and read, check, write status and history in one
transaction), its check phase alone (`agent.health.check_all`: coroutines on the worker's
event loop), and the baseline, a bare `aiohttp` loop making the same 1,000 GETs with a
semaphore of the batch's concurrency and, like the probe, a new connection per GET and no
body read. Prints medians, checks/s, the ratios against the bare loop, and the load average
before and after.

    AGENT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/http_instances.py [--repeat 5]

The services run in a separate process (`bench/plugins.py`'s), so that they do not compete
with the checks for this process's GIL. A scratch database is created, migrated and dropped.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.plugins import SERVICES, fmt_load, line, run_on_services  # noqa: E402

PER_SERVICE = 50  # 20 services x 50 = 1,000 instances
CONCURRENCY = 32


def seed(ports: list[int]) -> list[uuid.UUID]:
    """50 HTTP instances per service port."""
    from models import InfrastructureInstance
    from models.session import session_scope

    with session_scope() as session:
        rows = [
            InfrastructureInstance(
                name=f"bench-{port}-{n}",
                type="service",
                host="127.0.0.1",
                port=port,
                connection_type="http",
                connection_config={"path": "/health"},
            )
            for n in range(PER_SERVICE)
            for port in ports
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def batch_once(ids: list[uuid.UUID]) -> tuple[float, float]:
    """Seconds for a whole batch (lease and read, check, write) and for its checks alone."""
    from agent.core.settings import get_settings
    from agent.health import check_all
    from models.session import session_scope
    from tasks import health
    from tasks.sweep import held

    settings, holder = get_settings(), str(uuid.uuid4())
    job = health.HealthJob(settings)
    started = time.perf_counter()
    with session_scope() as session:
        taken = job.load(session, held(session, ids, holder, job.lease_s, job.lease_of))
    checking = time.perf_counter()
    make = health.prober(settings, taken.known)
    checked = check_all(taken.specs, make, CONCURRENCY, clock=taken.clock)
    checked_at = time.perf_counter()
    job.write(taken, checked, holder, ids)
    total = time.perf_counter() - started
    assert {c.result.status.value for c in checked} == {"ok"}, "a bench check failed"
    return total, checked_at - checking


def bare_once(ports: list[int]) -> float:
    """Seconds for the same 1,000 GETs on a bare aiohttp loop (new connection per GET)."""
    import aiohttp

    urls = [f"http://127.0.0.1:{port}/health" for _ in range(PER_SERVICE) for port in ports]

    async def all_of_them() -> set[int]:
        slots = asyncio.Semaphore(CONCURRENCY)
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(url: str) -> int:
                async with slots, session.get(url, allow_redirects=False) as response:
                    return response.status

            return set(await asyncio.gather(*(one(url) for url in urls)))

    started = time.perf_counter()
    statuses = asyncio.run(all_of_them())
    assert statuses == {200}, statuses
    return time.perf_counter() - started


def main() -> None:
    """Run both side by side and print medians, checks/s and the ratios."""
    run_on_services(run, __doc__)


def run(url: str, ports: list[int], repeat: int) -> None:
    """Migrate the scratch database, seed it, and measure the contenders in turns."""
    os.environ.update(AGENT_DATABASE_URL=url, AGENT_HEALTH_JITTER_S="0")
    from agent.cli import migrate
    from agent.core.settings import get_settings
    from agent.probes.aio import close_process_loop
    from models.session import dispose_engine

    get_settings.cache_clear()
    migrate.upgrade(url)
    ids = seed(ports)
    batch_once(ids)  # warm-up: sessions, imports
    bare_once(ports)
    load_before = os.getloadavg()
    batches, checks_only, bare = [], [], []
    for _ in range(repeat):
        total, check_s = batch_once(ids)
        batches.append(total)
        checks_only.append(check_s)
        bare.append(bare_once(ports))
    load_after = os.getloadavg()
    close_process_loop()
    dispose_engine()
    report(len(ids), batches, checks_only, bare)
    print(f"load average before {fmt_load(load_before)}, after {fmt_load(load_after)}")


def report(count: int, batches: list[float], checks: list[float], bare: list[float]) -> None:
    """Medians, throughput and the ratios against the bare loop."""
    batch_s, check_s, bare_s = (statistics.median(x) for x in (batches, checks, bare))
    print(f"{count} HTTP instances over {SERVICES} loopback services, concurrency {CONCURRENCY}")
    line("batch (lease + read + check + write)", batch_s, count)
    line("  of which checks", check_s, count)
    line(f"bare aiohttp loop (semaphore {CONCURRENCY})", bare_s, count)
    print(f"ratio batch / bare:  {bare_s / batch_s:.2f}")
    print(f"ratio checks / bare: {bare_s / check_s:.2f}")
    rounds = ", ".join(
        f"{count / b:.0f}/{count / c:.0f}/{count / r:.0f}"
        for b, c, r in zip(batches, checks, bare, strict=True)
    )
    print(f"rounds (batch/checks/bare checks/s): {rounds}")


if __name__ == "__main__":
    main()
