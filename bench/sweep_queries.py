"""The sweeps' selection and lease statements on 100,000 instances: timings and plans.

    .venv/bin/python bench/sweep_queries.py [--instances 100000] [--installations 50000]
        [--repeat 7] [--explain] [--database-url URL]

Makes a scratch database on the server of --database-url (default: AGENT_TEST_DATABASE_URL,
else AGENT_DATABASE_URL), migrates it with the project's migrations, and fills it with a
realistic mix: instances of five connection kinds (ssh, docker_api, kubernetes, http, tcp),
three in ten tagged with one of seven zones, one in fifty soft-deleted, mixed statuses;
registry entries (approved, deprecated, pending, rejected) installed across spaces, some
inactive or deleted; 1,000 MCP servers; and lease rows as a running fleet leaves them (5 % of
instances under a live health lease, 5 % with an expired one, the same for discovery and
plugins). Due times follow two scenarios:

- steady: the previous sweep checked everything 52-60 s ago (all due; 1 % never checked);
- quiet: 99 % were checked in the last 5 s, 1 % are due (a sweep with little to do).

Then it calls the project's own functions (no SQL copied here) and times each, medians of
--repeat runs, each in a transaction that is rolled back (so lease claims leave nothing):
`queries.due_instances`, `tasks.sweep.lease_batches` (the sweep's lease phase),
`queries.discovery_candidates`, `queries.due_installations`, `queries.due_mcp_servers`,
`tasks.sweep.lease_batches` of the refresh, and a batch's read (`HealthJob.load`: database clock,
lease claim, instance rows, known host keys). With --explain, every distinct statement those
calls send is printed with `EXPLAIN (ANALYZE, BUFFERS)` of the same parameters.

Last, the broker side: on a private `redis-server` (started and stopped here), the sweep's
sending step (`tasks.sweep.send`) sends --broker-instances ids (10,000 by default) in
batches of the default size to `agent.health.check_batch`; printed: the queue's depth, the
bytes per message and the Redis memory they take. The load average is printed before and
after.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

SERVICES = 500
MCP_SERVERS = 1_000
HEALTH_INTERVAL_S = 60
PLUGINS_INTERVAL_S = 120

KINDS = "ARRAY['ssh','ssh','ssh','ssh','docker_api','docker_api','kubernetes','http','http','tcp']"
STATUSES = "ARRAY['online','online','online','online','online','online','offline','error'," + (
    "'unknown','online']"
)

SEED_INSTANCES = f"""
    INSERT INTO infrastructure_instances (name, type, host, port, connection_type,
        connection_config, status, tags, deleted_at, created_at)
    SELECT 'host-' || i, 'server', '10.' || (i / 65536) %% 256 || '.' || (i / 256) %% 256 || '.'
        || i %% 256, 22, ({KINDS})[1 + i %% 10], '{{}}'::jsonb, ({STATUSES})[1 + (i * 7) %% 10],
        CASE WHEN i %% 10 < 3 THEN ARRAY['zone:z' || i %% 7, 'env:prod'] ELSE ARRAY['env:prod'] END,
        CASE WHEN i %% 50 = 0 THEN now() - interval '1 day' END, now() - interval '30 days'
    FROM generate_series(1, %(n)s) AS i
"""

SEED_REGISTRY = """
    INSERT INTO service_registry (name, slug, version, provider, status, api_base_url,
        api_auth_type, deleted_at)
    SELECT 'svc-' || i, 'svc-' || i, '1', 'bench',
        (ARRAY['approved','approved','approved','approved','approved','approved','approved',
               'approved','deprecated','pending','rejected'])[1 + i %% 11],
        'http://10.1.' || i / 256 || '.' || i %% 256, 'none',
        CASE WHEN i %% 97 = 0 THEN now() END
    FROM generate_series(1, %(n)s) AS i
"""

SEED_SPACES = "INSERT INTO spaces (name) SELECT 'space-' || i FROM generate_series(1, %(n)s) i"

SEED_INSTALLATIONS = """
    INSERT INTO service_installations (service_id, space_id, status, deleted_at)
    SELECT r.id, s.id,
        (ARRAY['active','active','active','active','active','active','active','active',
               'inactive','error'])[1 + abs(hashtext(r.id::text || s.id::text)) %% 10],
        CASE WHEN abs(hashtext(s.id::text || r.id::text)) %% 50 = 0 THEN now() END
    FROM service_registry r CROSS JOIN spaces s
    LIMIT %(n)s
"""

SEED_MCP = """
    INSERT INTO mcp_server (name, endpoint_url, status)
    SELECT 'mcp-' || i, 'http://10.2.' || i / 256 || '.' || i %% 256 || '/mcp',
        (ARRAY['active','active','active','active','active','active','error','inactive',
               'maintenance','active'])[1 + i %% 10]
    FROM generate_series(1, %(n)s) AS i
"""

# Lease rows as a running fleet leaves them: a twentieth live (batches in flight), a
# twentieth expired (holders that died before giving theirs back).
SEED_LEASES = """
    INSERT INTO agent_leases (name, holder, expires_at)
    SELECT %(prefix)s || id, 'bench-holder',
        CASE WHEN n %% 20 = 0 THEN now() + interval '10 minutes'
             ELSE now() - interval '10 minutes' END
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM {table}) AS t
    WHERE n %% 20 IN (0, 1)
"""

# Due times: `steady` is the state just before a punctual sweep, `quiet` a sweep with little
# to do. The same for installations and MCP servers with their own interval.
DUE_TIMES = {
    "steady": "CASE WHEN random() < 0.01 THEN NULL"
    " ELSE now() - make_interval(secs => {i} - 8 * random()) END",
    "quiet": "CASE WHEN random() < 0.01 THEN now() - make_interval(secs => {i})"
    " ELSE now() - make_interval(secs => 5 * random()) END",
}
DUE_TABLES = {
    "infrastructure_instances": HEALTH_INTERVAL_S,
    "service_installations": PLUGINS_INTERVAL_S,
    "mcp_server": PLUGINS_INTERVAL_S,
}


def seed(url: str, instances: int, installations: int) -> None:
    """The rows described in the module docstring, then VACUUM ANALYZE."""
    spaces = -(-installations // SERVICES)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED_INSTANCES, {"n": instances})
        conn.execute(SEED_REGISTRY, {"n": SERVICES})
        conn.execute(SEED_SPACES, {"n": spaces})
        conn.execute(SEED_INSTALLATIONS, {"n": installations})
        conn.execute(SEED_MCP, {"n": MCP_SERVERS})
        seed_leases(conn)


def seed_leases(conn: psycopg.Connection) -> None:
    """Live and expired leases of each job's own kind."""
    from models.agent import INSTANCE_LEASE
    from models.plugins import INSTALLATION, MCP_SERVER, PLUGIN_LEASE
    from tasks.discovery import INSTANCE_LEASE as DISCOVERY_LEASE

    for prefix, table in (
        (INSTANCE_LEASE, "infrastructure_instances"),
        (DISCOVERY_LEASE, "infrastructure_instances"),
        (f"{PLUGIN_LEASE}{INSTALLATION}.", "service_installations"),
        (f"{PLUGIN_LEASE}{MCP_SERVER}.", "mcp_server"),
    ):
        conn.execute(SEED_LEASES.format(table=table), {"prefix": prefix})


def set_due_times(url: str, scenario: str) -> None:
    """Date every target's last check as `scenario` has it, then VACUUM ANALYZE."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table, interval_s in DUE_TABLES.items():
            when = DUE_TIMES[scenario].format(i=interval_s)
            conn.execute(f"UPDATE {table} SET last_health_check = {when}")
        for table in (*DUE_TABLES, "agent_leases", "service_registry"):
            conn.execute(f"VACUUM ANALYZE {table}")


class Recorder:
    """The statements (and parameters) an engine sends while `recording` is on."""

    def __init__(self) -> None:
        self.recording = False
        self.statements: list[tuple[str, Any]] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        """Keep one statement (the `before_cursor_execute` event)."""
        if self.recording and not executemany:
            self.statements.append((statement, parameters))


@contextmanager
def rolled_back() -> Iterator[Session]:
    """A session whose transaction is rolled back: lease claims leave nothing behind."""
    from models.session import get_engine

    session = Session(get_engine())
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def timed(call: Callable[[Session], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of `call` over `repeat` rolled-back runs, and its last result."""
    runs, result = [], None
    for _ in range(repeat):
        with rolled_back() as session:
            started = time.perf_counter()
            result = call(session)
            runs.append(time.perf_counter() - started)
    return statistics.median(runs), result


def recorded(recorder: Recorder, call: Callable[[Session], Any]) -> list[tuple[str, Any]]:
    """The distinct statements one run of `call` sends (the first of each text)."""
    recorder.statements.clear()
    recorder.recording = True
    try:
        with rolled_back() as session:
            call(session)
    finally:
        recorder.recording = False
    distinct: dict[str, Any] = {}
    for statement, parameters in recorder.statements:
        distinct.setdefault(statement, parameters)
    return list(distinct.items())


def explain(statement: str, parameters: Any) -> str:
    """`EXPLAIN (ANALYZE, BUFFERS)` of one recorded statement, in a rolled-back transaction."""
    from models.session import get_engine

    raw = get_engine().raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            return "\n".join(row[0] for row in cursor.fetchall())
    finally:
        raw.rollback()
        raw.close()


def calls(settings: Any, batch_ids: list[uuid.UUID]) -> dict[str, Callable[[Session], Any]]:
    """The project's own selection and lease steps, each a function of a session."""
    from models import queries
    from tasks import discovery, health, plugins, sweep
    from tasks.discovery import MODULES

    max_health, max_plugins = settings.health_max_per_sweep, settings.plugins_max_per_refresh
    health_sweep, refresh = health.health_sweep(settings), plugins.plugins_refresh(settings)

    def health_due(s: Session) -> list[Any]:
        due = queries.due_instances(s, HEALTH_INTERVAL_S, max_health)
        return [(health.queue_for(row.tags or ()), row.connection_type, row.id) for row in due]

    def installations_due(s: Session) -> list[Any]:
        due = queries.due_installations(s, PLUGINS_INTERVAL_S, max_plugins)
        return [(plugins.INSTALLATION, plugins.INSTALLATION, i) for i in due]

    return {
        "health: due_instances": lambda s: queries.due_instances(s, HEALTH_INTERVAL_S, max_health),
        "health: due + lease_batches": lambda s: sweep.lease_batches(
            s, health_sweep, health_due(s)
        ),
        "health: batch read (take, 50 ids)": lambda s: take(
            s, health.HealthJob(settings), batch_ids
        ),
        "discovery: discovery_candidates": lambda s: queries.discovery_candidates(
            s, sorted(MODULES), discovery.INSTANCE_LEASE, settings.discovery_max_per_sweep
        ),
        "plugins: due_installations": lambda s: queries.due_installations(
            s, PLUGINS_INTERVAL_S, max_plugins
        ),
        "plugins: due + lease_batches": lambda s: sweep.lease_batches(
            s, refresh, installations_due(s)
        ),
        "plugins: due_mcp_servers": lambda s: queries.due_mcp_servers(
            s, PLUGINS_INTERVAL_S, max_plugins
        ),
    }


def take(session: Session, job: Any, ids: list[uuid.UUID]) -> Any:
    """A batch's read: its leases claimed, then what its checks need (`tasks.sweep.run_batch`)."""
    from tasks.sweep import held

    return job.load(session, held(session, ids, "bench-batch", job.lease_s, job.lease_of))


def size_of(result: Any) -> int:
    """How many rows (or ids in batches) a call returned."""
    if hasattr(result, "specs"):  # a batch's read: specs, known hosts, clock
        return len(result.specs)
    if (
        result
        and isinstance(result[0], tuple)
        and len(result[0]) == 3
        and not hasattr(result[0], "_fields")
    ):
        return sum(len(batch[2]) for batch in result)
    return len(result)


def measure(url: str, scenario: str, args: argparse.Namespace, recorder: Recorder) -> None:
    """Time each call in `scenario` and, if asked, print the plans of its statements.

    Due times are set afresh before each step, so the clock moving on during a slow step does
    not make the next one's targets due.
    """
    from agent.core.settings import get_settings
    from models import queries

    with rolled_back() as session:
        due = queries.due_instances(session, HEALTH_INTERVAL_S, 50)
    steps = calls(get_settings(), [row.id for row in due])
    print(f"\n== scenario {scenario} ==")
    for name, call in steps.items():
        set_due_times(url, scenario)
        median_s, result = timed(call, args.repeat)
        print(f"{name:<40} median {median_s * 1000:9.1f} ms  rows {size_of(result):>7,}")
        if args.explain:
            explain_all({name: call}, recorder)


def explain_all(steps: dict[str, Callable[[Session], Any]], recorder: Recorder) -> None:
    """Every distinct statement of every step, with its plan (each text once per step)."""
    for name, call in steps.items():
        for statement, parameters in recorded(recorder, call):
            print(f"\n-- {name}\n{statement.strip()}\n")
            print(explain(statement, parameters))


@contextmanager
def private_redis() -> Iterator[str]:
    """A Redis server of this run's own on a free loopback port (no persistence)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url)
        yield url
    finally:
        server.terminate()
        server.wait()


def wait_for_redis(url: str) -> None:
    """Return once the server at `url` answers a PING (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def broker_side(url: str, instances: int) -> None:
    """Queue depth and bytes per message when a sweep sends `instances` ids in batches.

    The sweep's own sending step (`tasks.sweep.send` of the health sweep, to
    `agent.health.check_batch`) on the agent's Celery app, against the private Redis; nothing
    consumes the queue.
    """
    import agent.celery  # noqa: F401  (the agent's app, on the private Redis, becomes current)
    from agent.core.settings import get_settings
    from tasks.health import health_sweep
    from tasks.sweep import send

    settings, client = get_settings(), redis.Redis.from_url(url)
    ids = [uuid.uuid4() for _ in range(instances)]
    size = settings.health_batch_size
    batches = [(str(uuid.uuid4()), "health", ids[i : i + size]) for i in range(0, instances, size)]
    used_before = client.info("memory")["used_memory"]
    started = time.perf_counter()
    sweep = health_sweep(settings)
    for batch in batches:
        send(sweep, batch)
    sent_s = time.perf_counter() - started
    messages = client.lrange("health", 0, -1)
    used = client.info("memory")["used_memory"] - used_before
    print(f"\n== broker: one sweep of {instances:,} instances, batches of {size} ==")
    print(
        f"queue depth {len(messages)} messages; {statistics.median(map(len, messages)):,.0f} "
        f"bytes per message (median), {sum(map(len, messages)):,} bytes in all; Redis memory "
        f"+{used:,} bytes; sent in {sent_s * 1000:.0f} ms ({len(messages) / sent_s:,.0f}/s)"
    )


def fmt_load(load: tuple[float, float, float]) -> str:
    """A load average triple, as `uptime` shows it."""
    return " ".join(f"{x:.2f}" for x in load)


def run(url: str, broker_url: str, args: argparse.Namespace) -> None:
    """Migrate and seed the scratch database, then measure each scenario and the broker."""
    os.environ["AGENT_DATABASE_URL"] = url
    os.environ["AGENT_BROKER_URL"] = broker_url
    from agent.cli import migrate
    from agent.core.settings import get_settings
    from models.session import dispose_engine, get_engine

    get_settings.cache_clear()
    migrate.upgrade(url)
    started = time.perf_counter()
    seed(url, args.instances, args.installations)
    print(
        f"seeded {args.instances:,} instances, {args.installations:,} installations, "
        f"{MCP_SERVERS:,} MCP servers in {time.perf_counter() - started:.1f} s"
    )
    recorder = Recorder()
    event.listen(get_engine(), "before_cursor_execute", recorder)
    load_before = os.getloadavg()
    for scenario in args.scenarios:
        measure(url, scenario, args, recorder)
    broker_side(broker_url, args.broker_instances)
    print(f"\nload average before {fmt_load(load_before)}, after {fmt_load(os.getloadavg())}")
    dispose_engine()


def main() -> None:
    """Parse the arguments and run on a scratch database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--installations", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--scenarios", nargs="+", default=list(DUE_TIMES), choices=DUE_TIMES)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--broker-instances", type=int, default=10_000)
    default_url = os.environ.get("AGENT_TEST_DATABASE_URL") or os.environ.get("AGENT_DATABASE_URL")
    parser.add_argument("--database-url", default=default_url)
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("set AGENT_TEST_DATABASE_URL (or --database-url) to a PostgreSQL server")
    from tests.support.databases import new_database

    with new_database(args.database_url, "agent_bench_sweep") as url, private_redis() as broker:
        run(url, broker, args)


if __name__ == "__main__":
    main()
