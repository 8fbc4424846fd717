"""Session pruning: the agent's batched pruner against one plain DELETE, side by side.

    .venv/bin/python bench/prune.py --rounds 3

Creates, migrates and finally drops a database of its own on the PostgreSQL server at
`--database-url`. Each round seeds `sessions` with `--rows` rows (2,000,000 by default),
half of them expired, in creation order (`--layout created`: a session expires a fixed time
after it is created, so the heap is in expiry order) or shuffled (`--layout random`), then
VACUUM ANALYZE and CHECKPOINT, and runs one contender while `--lookups` processes look live
sessions up by `token_hash` as fast as they can (as logins would):

- plain: `DELETE FROM sessions WHERE expires_at < now()`, one statement.
- pruner: `tasks.housekeeping.run_prune` with the default settings (batches of up to
  AGENT_PRUNE_BATCH_SIZE, each near AGENT_PRUNE_STATEMENT_TARGET_MS, its own transaction).

Reported, with the load average before and after, per contender (medians over rounds, the
order alternating between rounds): rows deleted per second, the longest single statement
(for the pruner, a batch's statement and commit as the client sees them), and the p99
latency of the concurrent lookups. Goals: the pruner at least half the plain DELETE's
throughput, no statement over 250 ms, lookups p99 under 20 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from agent.cli import migrate
from agent.core.settings import get_settings

SEED = """
    INSERT INTO sessions (user_id, token_hash, expires_at, created_at)
    SELECT %(user)s, encode(sha256(i::text::bytea), 'hex'),
        now() + make_interval(
            secs => CASE WHEN i <= %(half)s THEN i - %(half)s - 1 ELSE 86400 + i END),
        now() - interval '1 day'
    FROM generate_series(1, %(rows)s) AS i
    ORDER BY CASE WHEN %(shuffle)s THEN random() ELSE i END
"""


@dataclass
class Outcome:
    """One contender's run."""

    deleted: int
    wall_s: float
    longest_statement_ms: float
    lookups_p99_ms: float
    lookups: int

    @property
    def rows_per_s(self) -> float:
        """Deleted rows per second of wall time."""
        return self.deleted / self.wall_s


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A new database on `server_url`, migrated, dropped on the way out."""
    name = f"bench_prune_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def seed(url: str, rows: int, shuffle: bool) -> None:
    """`rows` sessions, the first half (by number) expired; in expiry or random physical order."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE sessions, users CASCADE")
        user = conn.execute(
            "INSERT INTO users (email) VALUES ('bench@example.org') RETURNING id"
        ).fetchone()[0]
        params = {"user": user, "half": rows // 2, "rows": rows, "shuffle": shuffle}
        conn.execute(SEED, params)
        conn.execute("VACUUM ANALYZE sessions")
        conn.execute("CHECKPOINT")


def look_up(url: str, rows: int, measuring: Any, stop: Any, out: Any) -> None:
    """Look live sessions up by token hash until `stop` is set; latencies while `measuring`."""
    latencies = []
    with psycopg.connect(url, autocommit=True) as conn:
        out.put("ready")
        i = 0
        while not stop.is_set():
            token = f"{rows // 2 + 1 + (i * 7919) % (rows // 2)}"
            started = time.perf_counter()
            conn.execute(
                "SELECT id, user_id, expires_at FROM sessions"
                " WHERE token_hash = encode(sha256(%s::bytea), 'hex')",
                [token],
            ).fetchone()
            if measuring.is_set():
                latencies.append(time.perf_counter() - started)
            i += 1
    out.put(latencies)


def while_looking_up(url: str, rows: int, lookups: int, run: Callable[[], tuple[int, float]]):
    """Run `run` under concurrent lookups; its result, wall time and the lookup latencies.

    The lookups run in processes of their own, as logins do: threads of this process would
    make the contender wait for the interpreter lock at each of its round trips.
    """
    context = multiprocessing.get_context("spawn")
    measuring, stop, out = context.Event(), context.Event(), context.Queue()
    workers = [
        context.Process(target=look_up, args=(url, rows, measuring, stop, out))
        for _ in range(lookups)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        assert out.get(timeout=120) == "ready"
    time.sleep(0.5)
    measuring.set()
    started = time.perf_counter()
    try:
        deleted, longest_ms = run()
    finally:
        wall_s = time.perf_counter() - started
        stop.set()
        latencies = [x for _ in workers for x in out.get()]
        for worker in workers:
            worker.join()
    return deleted, wall_s, longest_ms, latencies


def plain(url: str) -> tuple[int, float]:
    """One DELETE of every expired session."""
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        deleted = conn.execute("DELETE FROM sessions WHERE expires_at < now()").rowcount
        return deleted, (time.perf_counter() - started) * 1000


def pruner() -> tuple[int, float]:
    """The agent's pruner, as the task runs it."""
    from tasks.housekeeping import run_prune

    result = run_prune(get_settings())
    assert result["complete"], result
    return result["total"], result["longest_statement_ms"]


def measure(url: str, args: argparse.Namespace, name: str) -> Outcome:
    """Seed, then run one contender under lookups."""
    rows, lookups = args.rows, args.lookups
    seed(url, rows, args.layout == "random")
    run = (lambda: plain(url)) if name == "plain" else pruner
    deleted, wall_s, longest_ms, latencies = while_looking_up(url, rows, lookups, run)
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert deleted == rows // 2, deleted
    assert left == rows - rows // 2, left
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return Outcome(deleted, wall_s, longest_ms, p99, len(latencies))


def median(outcomes: list[Outcome], field: str) -> float:
    """The median of one figure over rounds."""
    return statistics.median(getattr(o, field) for o in outcomes)


def report(results: dict[str, list[Outcome]], rows: int) -> None:
    """The table of medians and the pruner/plain throughput ratio."""
    print(f"\n{rows:,} sessions, {rows // 2:,} expired; medians of {len(results['plain'])} rounds")
    print(f"{'':8} {'rows/s':>10} {'wall s':>8} {'longest stmt ms':>16} {'lookups p99 ms':>15}")
    for name, outcomes in results.items():
        print(
            f"{name:8} {median(outcomes, 'rows_per_s'):>10,.0f} {median(outcomes, 'wall_s'):>8.2f}"
            f" {median(outcomes, 'longest_statement_ms'):>16.1f}"
            f" {median(outcomes, 'lookups_p99_ms'):>15.2f}"
        )
    ratio = median(results["pruner"], "rows_per_s") / median(results["plain"], "rows_per_s")
    print(f"throughput ratio pruner/plain: {ratio:.2f} (goal >= 0.5)")
    for name, outcomes in results.items():
        for i, o in enumerate(outcomes):
            print(
                f"  {name} round {i + 1}: {o.rows_per_s:,.0f} rows/s,"
                f" longest {o.longest_statement_ms:.1f} ms,"
                f" p99 {o.lookups_p99_ms:.2f} ms over {o.lookups} lookups"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=2, help="lookup processes")
    parser.add_argument(
        "--layout",
        choices=["created", "random"],
        default="created",
        help="physical order: as sessions are created (expiry follows it), or shuffled",
    )
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    with bench_database(args.database_url) as url:
        os.environ["AGENT_DATABASE_URL"] = url
        get_settings.cache_clear()
        results: dict[str, list[Outcome]] = {"plain": [], "pruner": []}
        for round_ in range(args.rounds):
            order = ["plain", "pruner"] if round_ % 2 == 0 else ["pruner", "plain"]
            for name in order:
                results[name].append(measure(url, args, name))
                print(f"round {round_ + 1} {name}: {results[name][-1]}", flush=True)
        from models.session import dispose_engine

        dispose_engine()
    report(results, args.rows)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
