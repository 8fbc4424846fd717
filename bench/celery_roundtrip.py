"""What Celery costs: `agent.system.ping` round trips against a bare Celery no-op task.

Both workers run `-c 2` (prefork) on one private redis-server (the agent on db 0, the bare
app of `bench/bare_celery_app.py` on db 1), and are measured in turns in the same run:

- throughput: `--tasks` sends, then every result read back, as tasks/s;
- latency: one task at a time, send to result, `--latency` times, p50 and p99;
- worker CPU per task (the worker's whole process tree, user + system);
- memory of the process tree (RSS and PSS from smaps_rollup, per process and summed): idle
  after one task; after each `--checks` real health checks (`--check-rounds` times: batches
  of 20 `tcp` and `http` instances against a loopback HTTP server, `agent.health.check_batch`
  on the worker's `health` queue; the bare worker runs as many no-ops); and after all rounds.

The agent is sent to the way beat and the CLI send (an app with the agent's configuration);
the bare app with Celery's defaults. The agent's worker consumes `agent,health`; its database
is created and migrated on the server named by AGENT_TEST_DATABASE_URL, and dropped after.

    AGENT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/celery_roundtrip.py [--tasks 2000] [--repeat 3] [--bare-events] \
        [--checks 1000] [--check-rounds 3]

`--bare-events` runs the bare worker with `-E` (task events on, as the agent's workers run
for Flower): what Celery's events cost, apart from anything the agent does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


@dataclass
class Contender:
    """One worker under test: its name, its sending app, its task and what was measured."""

    label: str
    app: object
    task: str
    pid: int = 0
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def total(self, point: str) -> tuple[float, float]:
        """RSS and PSS of the whole process tree at `point`, in MiB."""
        members = self.memory[point]
        return sum(rss for rss, _ in members), sum(pss for _, pss in members)


def process_memory_mib(pid: int) -> tuple[float, float]:
    """RSS and PSS of one process, in MiB."""
    found = {}
    for row in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = row.partition(":")
        if name in ("Rss", "Pss"):
            found[name] = int(value.split()[0]) * 1024 / MIB
    return found["Rss"], found["Pss"]


def tree_memory_mib(pid: int) -> list[tuple[float, float]]:
    """RSS and PSS of `pid`, then of each of its children, in MiB."""
    from tests.support.workers import process_tree

    return [process_memory_mib(member) for member in process_tree(pid)]


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its children so far."""
    from tests.support.workers import process_tree

    total = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK_S


def burst(contender: Contender, count: int) -> None:
    """`count` sends, then every result: tasks/s and worker CPU ms per task."""
    app, cpu = contender.app, tree_cpu_s(contender.pid)
    started = time.perf_counter()
    results = [app.send_task(contender.task) for _ in range(count)]
    for result in results:
        assert result.get(timeout=300)["pong"] is True
    contender.rates.append(count / (time.perf_counter() - started))
    contender.cpu_ms.append((tree_cpu_s(contender.pid) - cpu) * 1000 / count)


def singles(contender: Contender, count: int) -> None:
    """`count` round trips one at a time, each timed from send to result."""
    for _ in range(count):
        started = time.perf_counter()
        contender.app.send_task(contender.task).get(timeout=60)
        contender.latencies_ms.append((time.perf_counter() - started) * 1000)


@contextmanager
def worker(args: list[str], env: dict[str, str], log: Path):
    """A `celery worker` subprocess in its own session, stopped at the end."""
    from tests.support.processes import start
    from tests.support.workers import stop

    proc = start([sys.executable, "-m", "celery", *args], env, log)
    try:
        yield proc
    finally:
        stop(proc)


def agent_worker(broker: str, database: str, tmp: Path):
    """The agent's worker, consuming the queues of the ping and of health checks."""
    from tests.support.processes import agent_env

    env = agent_env(
        AGENT_BROKER_URL=broker,
        AGENT_DATABASE_URL=database,
        AGENT_DATA_DIR=str(tmp),
        AGENT_LIVENESS_FILE=str(tmp / "alive"),
        AGENT_HEALTH_JITTER_S="0",
    )
    args = ["-A", "agent", "worker", "-c", "2", "-Q", "agent,health", "--loglevel", "WARNING"]
    return worker([*args, "--hostname", "bench-agent@%h"], env, tmp / "agent.log")


def bare_worker(broker: str, tmp: Path, events: bool):
    """The bare app's worker, on Celery's default queue (`-E`: sending task events)."""
    env = {**os.environ, "BARE_BROKER_URL": broker, "PYTHONPATH": str(ROOT / "bench")}
    args = ["-A", "bare_celery_app", "worker", "-c", "2", "--loglevel", "WARNING"]
    args += ["-E"] if events else []
    return worker([*args, "--hostname", "bench-bare@%h"], env, tmp / "bare.log")


def sending_apps(agent_broker: str, bare_broker: str) -> tuple[object, object]:
    """The agent's sending app (its own configuration) and the bare app."""
    from celery import Celery

    from tests.support.workers import client_app

    bare = Celery("bare-client", set_as_current=False, broker=bare_broker, backend=bare_broker)
    bare.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    return client_app(agent_broker), bare


def ready(contender: Contender) -> None:
    """Wait for the first answer (a worker starting), then note its idle memory."""
    contender.app.send_task(contender.task).get(timeout=120)
    time.sleep(2)
    contender.memory["idle"] = tree_memory_mib(contender.pid)


def health_checks(contender: Contender, instance_ids: list[str]) -> None:
    """Every instance checked once, in batches of 20 sent together; every check must be ok."""
    app = contender.app
    batches = [instance_ids[n : n + 20] for n in range(0, len(instance_ids), 20)]
    results = [app.send_task("agent.health.check_batch", (batch,)) for batch in batches]
    statuses = [c["status"] for r in results for c in r.get(timeout=600)["checks"]]
    assert statuses == ["ok"] * len(instance_ids), sorted(set(statuses))


def noops(contender: Contender, count: int) -> None:
    """As many no-op tasks as the agent ran checks, for the bare worker."""
    results = [contender.app.send_task(contender.task) for _ in range(count)]
    for result in results:
        result.get(timeout=300)


def check_rounds(contenders: list[Contender], instance_ids: list[str], rounds: int) -> None:
    """`rounds` times: every instance checked (the bare worker: no-ops), then memory noted."""
    agent, bare = contenders
    for n in range(1, rounds + 1):
        health_checks(agent, instance_ids)
        noops(bare, len(instance_ids))
        time.sleep(2)
        for contender in contenders:
            contender.memory[f"after {n * len(instance_ids):,} checks"] = tree_memory_mib(
                contender.pid
            )


def measure(
    contenders: list[Contender], tasks: int, repeat: int, latency: int, checks: Checks
) -> None:
    """Idle memory; rounds of health checks; then bursts and single round trips in turns."""
    for contender in contenders:
        ready(contender)
    check_rounds(contenders, checks.instance_ids, checks.rounds)
    for contender in contenders:
        burst(contender, min(200, tasks))  # warm-up: pool connections, lazy imports
        contender.rates.clear()
        contender.cpu_ms.clear()
    for _ in range(repeat):
        for contender in contenders:
            burst(contender, tasks)
        for contender in contenders:
            singles(contender, latency)
    for contender in contenders:
        contender.memory["after all rounds"] = tree_memory_mib(contender.pid)


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report_memory(contender: Contender) -> None:
    """The tree's RSS and PSS at every point, and each process's (parent first)."""
    for point, members in contender.memory.items():
        rss, pss = contender.total(point)
        each = ", ".join(f"{r:.0f}/{p:.0f}" for r, p in members)
        print(f"      {point}: RSS {rss:.0f} MiB, PSS {pss:.0f} MiB (RSS/PSS each: {each})")


def report(agent: Contender, bare: Contender) -> None:
    """Medians, percentiles, memory and the ratios agent / bare."""
    for c in (agent, bare):
        rate, cpu = statistics.median(c.rates), statistics.median(c.cpu_ms)
        p50, p99 = percentile(c.latencies_ms, 0.5), percentile(c.latencies_ms, 0.99)
        rounds = ", ".join(f"{r:.0f}" for r in c.rates)
        print(f"{c.label:5} {rate:7.0f} tasks/s (rounds {rounds}); worker CPU {cpu:.2f} ms/task")
        print(f"      one at a time: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        report_memory(c)
    rates = statistics.median(agent.rates) / statistics.median(bare.rates)
    p50 = percentile(bare.latencies_ms, 0.5) / percentile(agent.latencies_ms, 0.5)
    print(f"ratio agent/bare: tasks/s {rates:.2f}, p50 latency (bare/agent) {p50:.2f}")
    for point in agent.memory:
        rss, pss = (agent.total(point)[i] / bare.total(point)[i] for i in (0, 1))
        print(f"memory agent/bare, {point}: RSS {rss:.2f}x, PSS {pss:.2f}x")


@dataclass
class Checks:
    """The instances every round of health checks goes through, and how many rounds."""

    instance_ids: list[str]
    rounds: int


def health_database(stack: ExitStack, server: str, count: int) -> tuple[str, list[str]]:
    """A migrated database of the bench's own with `count` loopback instances: URL and ids."""
    from health_sweep import bench_database
    from health_targets import loopback_http, seed_instances

    from agent.core.credentials import generate_key
    from agent.core.settings import get_settings

    database = stack.enter_context(bench_database(server))
    os.environ.update(AGENT_DATABASE_URL=database, AGENT_SECRET_KEY=generate_key())
    get_settings.cache_clear()
    port = stack.enter_context(loopback_http())
    return database, seed_instances(count, port)


def run(args: argparse.Namespace) -> None:
    """Start Redis, a database, a loopback server and both workers; measure; report."""
    from tests.support.workers import private_redis

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="celery-bench-")))
        database, instance_ids = health_database(stack, args.database_url, args.checks)
        url, _ = stack.enter_context(private_redis())
        agent_url, bare_url = url, url.rsplit("/", 1)[0] + "/1"
        agent_app, bare_app = sending_apps(agent_url, bare_url)
        agent = Contender("agent", agent_app, "agent.system.ping")
        bare = Contender("bare", bare_app, "bare.noop")
        agent.pid = stack.enter_context(agent_worker(agent_url, database, tmp)).pid
        bare.pid = stack.enter_context(bare_worker(bare_url, tmp, args.bare_events)).pid
        checks = Checks(instance_ids, args.check_rounds)
        measure([agent, bare], args.tasks, args.repeat, args.latency, checks)
        report(agent, bare)


def main() -> None:
    """Parse the arguments, run, and print the load average around it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=int, default=300, help="single round trips a round")
    parser.add_argument("--bare-events", action="store_true", help="run the bare worker with -E")
    parser.add_argument("--checks", type=int, default=1000, help="health checks a round")
    parser.add_argument("--check-rounds", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("AGENT_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("set AGENT_TEST_DATABASE_URL (or --database-url) to a PostgreSQL server")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    run(args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
