"""Benchmark ingestion, end to end, against a raw binary COPY of the same rows.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--repeat 3] [--database-url URL]

Makes a scratch database on the server of --database-url (default: AGENT_TEST_DATABASE_URL,
else AGENT_DATABASE_URL), migrates it, and writes one generic CSV file of --rows points
(1,000 series over several months). Then, --repeat times, alternating, each in a fresh
process on an emptied `benchmarks` table (all its indexes in place):

- raw COPY: the rows, already typed in memory, sent by one binary COPY into `benchmarks`;
- end to end: `tasks.benchmarks.ingest_stream` on the file: parse, validate, probe the
  unique key, COPY new batches straight in (staging and `ON CONFLICT` otherwise),
  quarantine, run bookkeeping and regression checks.

Prints the load average before and after, the medians, the ratio (end to end / raw COPY),
and each process's peak RSS, also for a file of a tenth of the rows, to show memory does not
grow with the input.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

HEADER = ("timestamp", "package", "benchmark", "metric", "value", "unit", "run_id")
COLUMNS = ("timestamp", "package_name", "benchmark", "metric", "value", "unit", "run_id")
TYPES = ("timestamptz", "text", "text", "text", "float8", "text", "text")
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            series, step = divmod(i, max(rows // 1000, 1))
            moment = START + dt.timedelta(minutes=5 * step)
            writer.writerow(
                (
                    moment.isoformat(),
                    "@graph/layer4",
                    f"bench/{series % 100}",
                    f"metric_{series // 100}",
                    100.0 + (i % 17) * 0.5,
                    "ms",
                    f"run-{step}",
                )
            )


def typed_rows(path: Path) -> list[tuple]:
    with path.open(newline="") as source:
        reader = csv.reader(source)
        next(reader)
        return [
            (dt.datetime.fromisoformat(r[0]), r[1], r[2], r[3], float(r[4]), r[5], r[6])
            for r in reader
        ]


def empty_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE benchmarks, benchmark_ingests CASCADE")
        conn.execute("VACUUM ANALYZE benchmarks")


def raw_copy(url: str, path: str, queue: multiprocessing.Queue) -> None:
    rows = typed_rows(Path(path))
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY benchmarks ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
    queue.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def end_to_end(url: str, path: str, queue: multiprocessing.Queue) -> None:
    os.environ["AGENT_DATABASE_URL"] = url
    from agent.core.settings import get_settings
    from tasks.benchmarks import ingest_stream

    settings = get_settings()
    started = time.perf_counter()
    with open(path, "rb") as stream:
        result = ingest_stream(settings, stream, None, {}, path)
    elapsed = time.perf_counter() - started
    assert result["status"] == "done", result
    queue.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, result["accepted"]))


def in_child(target, *args) -> tuple:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    found = queue.get()
    process.join()
    return found


def scratch_database(server: str) -> str:
    from agent.cli import migrate

    name = f"agent_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def drop_database(server: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def prepare_partitions(url: str) -> None:
    from sqlalchemy import create_engine

    from agent.core.settings import to_sqlalchemy_url
    from models import timeseries

    engine = create_engine(to_sqlalchemy_url(url))
    moments = [START + dt.timedelta(days=30 * i) for i in range(13)]
    with engine.begin() as conn:
        timeseries.ensure_partitions_for(conn, timeseries.SERIES["benchmarks"], moments)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    default = os.environ.get("AGENT_TEST_DATABASE_URL") or os.environ.get("AGENT_DATABASE_URL")
    parser.add_argument("--database-url", default=default)
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("name a PostgreSQL server: --database-url or AGENT_TEST_DATABASE_URL")
    url = scratch_database(args.database_url)
    print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        run(url, args.rows, args.repeat)
    finally:
        drop_database(args.database_url, url)
    print(f"load average after: {os.getloadavg()}")


def run(url: str, rows: int, repeat: int) -> None:
    prepare_partitions(url)
    with tempfile.TemporaryDirectory() as directory:
        big, small = Path(directory) / "big.csv", Path(directory) / "small.csv"
        write_csv(big, rows)
        write_csv(small, rows // 10)
        raw, e2e = [], []
        for _ in range(repeat):
            empty_table(url)
            raw.append(in_child(raw_copy, url, str(big)))
            empty_table(url)
            e2e.append(in_child(end_to_end, url, str(big)))
            assert e2e[-1][2] == rows, e2e[-1]
        empty_table(url)
        small_e2e = in_child(end_to_end, url, str(small))
    report(rows, raw, e2e, small_e2e)


def report(rows: int, raw: list, e2e: list, small: tuple) -> None:
    raw_s = statistics.median(r[0] for r in raw)
    e2e_s = statistics.median(r[0] for r in e2e)
    print(f"rows: {rows}")
    print(f"raw binary COPY into benchmarks: median {raw_s:.2f} s = {rows / raw_s:,.0f} rows/s")
    print(f"end to end (ingest_stream):      median {e2e_s:.2f} s = {rows / e2e_s:,.0f} rows/s")
    print(f"ratio end to end / raw COPY: {raw_s / e2e_s:.2f} (goal >= 0.80)")
    print(f"all runs raw: {[round(r[0], 2) for r in raw]} e2e: {[round(r[0], 2) for r in e2e]}")
    peak = max(r[1] for r in e2e) / 1024
    tenth = small[1] / 1024
    print(f"peak RSS end to end: {peak:.0f} MiB at {rows} rows, {tenth:.0f} MiB at {rows // 10}")
    print(f"peak RSS raw COPY (rows held in memory): {max(r[1] for r in raw) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
