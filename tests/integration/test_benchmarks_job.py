import datetime as dt
import json
import threading
import uuid

import pytest
from sqlalchemy import func, select, text

from agent.core.settings import get_settings, load_settings
from models import Benchmark, BenchmarkAlert, BenchmarkIngest, BenchmarkQuarantine, Package
from models.session import session_scope
from models.store import benchmarks as bench_store
from tasks import benchmarks as job
from tests.support.benchmarks import DATA, payload

DAY = dt.timedelta(days=1)


def ingest(content, settings=None, format=None, defaults=None):
    data = content.encode() if isinstance(content, str) else content
    stream = __import__("io").BytesIO(data)
    return job.ingest_stream(settings or get_settings(), stream, format, defaults or {}, "test")


def count(model, *where):
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def latest(package):
    sql = text("SELECT metric, value, unit FROM latest_benchmarks_view WHERE package_name = :p")
    with session_scope() as session:
        return {row.metric: (row.value, row.unit) for row in session.execute(sql, {"p": package})}


def test_a_pytest_benchmark_file_is_stored_with_its_garbage_quarantined(package):
    result = ingest(payload("pytest_benchmark.json", package))
    assert result["status"] == "done"
    assert result["format"] == "pytest-benchmark"
    assert (result["accepted"], result["duplicate"], result["quarantined"]) == (32, 0, 2)
    assert {r["reason"] for r in result["reasons"]} == {
        "negative duration",
        "benchmark has no stats",
    }
    assert count(Benchmark, Benchmark.package_name == package) == 32
    with session_scope() as session:
        rows = session.scalars(
            select(BenchmarkQuarantine).where(
                BenchmarkQuarantine.ingest_id == uuid.UUID(result["ingest_id"])
            )
        ).all()
    assert sorted(r.reason for r in rows) == ["benchmark has no stats", "negative duration"]
    assert all(r.raw and r.run_id.startswith("sha256:") for r in rows)


def test_a_google_benchmark_file_keeps_aggregates_and_refuses_nan_and_errors(package):
    result = ingest(payload("google_benchmark.json", package))
    assert (result["accepted"], result["quarantined"], result["skipped"]) == (18, 4, 5)
    reasons = {r["reason"]: r["rows"] for r in result["reasons"]}
    assert reasons == {"value is not a finite number": 3, "benchmark reported an error": 1}
    with session_scope() as session:
        cv = session.execute(
            select(Benchmark.value, Benchmark.unit).where(
                Benchmark.package_name == package, Benchmark.metric == "real_time_cv"
            )
        ).one()
        testbeds = set(
            session.scalars(select(Benchmark.testbed).where(Benchmark.package_name == package))
        )
    assert cv == (pytest.approx(0.0033817), "ratio")
    assert testbeds == {"ci-x86_64"}


def test_generic_json_links_packages_by_name_or_yapkg_full_name_under_the_registry_name(
    package,
):
    with session_scope() as session:
        by_name = Package(name=package)
        by_full_name = Package(name=f"{package}-yapkg", field="npm", full_name=f"{package}f")
        session.add_all([by_name, by_full_name])
        session.flush()
        ids = {package: by_name.id, f"{package}-yapkg": by_full_name.id}
    result = ingest(payload("generic.json", package))
    assert (result["accepted"], result["duplicate"], result["quarantined"]) == (7, 1, 8)
    with session_scope() as session:
        linked = dict(
            session.execute(
                select(Benchmark.package_name, Benchmark.package_id)
                .where(Benchmark.package_name.like(f"{package}%"))
                .distinct()
            ).all()
        )
    assert linked == ids


def test_generic_csv_is_stored_with_the_latest_value_in_the_view(package):
    result = ingest(payload("generic.csv", package))
    assert (result["accepted"], result["duplicate"], result["quarantined"]) == (4, 1, 5)
    assert latest(package)["latency_p50"] == (0.229, "ms")


def test_sending_the_same_run_again_stores_nothing_new(package):
    content = payload("generic.json", package)
    first = ingest(content)
    again = ingest(content)
    assert (again["accepted"], again["duplicate"], again["quarantined"]) == (0, 8, 8)
    assert again["ingest_id"] == first["ingest_id"]
    assert count(Benchmark, Benchmark.package_name.like(f"{package}%")) == 7
    ingest_id = uuid.UUID(first["ingest_id"])
    assert count(BenchmarkQuarantine, BenchmarkQuarantine.ingest_id == ingest_id) == 8
    with session_scope() as session:
        row = session.get(BenchmarkIngest, ingest_id)
        assert (row.times_received, row.accepted, row.status) == (2, 7, "done")


def test_the_same_run_id_in_other_words_is_a_duplicate(package):
    document = json.loads(payload("generic.json", package))
    ingest(json.dumps(document))
    reformatted = json.dumps(document, indent=4, sort_keys=True)
    result = ingest(reformatted)
    assert (result["accepted"], result["duplicate"]) == (0, 8)


def test_an_unreadable_payload_is_rejected_whole_and_recorded(package):
    rows = [
        {"benchmark": f"b{i}", "metric": "t", "value": i, "unit": "ms", "timestamp": "2025-06-01"}
        for i in range(500)
    ]
    content = json.dumps({"run": {"package": package, "run_id": "r"}, "rows": rows})[:-300]
    small_batches = load_settings(
        database_url=get_settings().database_url, benchmarks_batch_rows=100
    )
    result = ingest(content, settings=small_batches)
    assert result["status"] == "rejected"
    assert "not valid json" in result["error"]
    assert count(Benchmark, Benchmark.package_name == package) == 0
    with session_scope() as session:
        row = session.get(BenchmarkIngest, uuid.UUID(result["ingest_id"]))
        assert row.status == "rejected"
        assert row.error == result["error"]


def test_garbage_that_is_no_format_at_all_is_rejected(database_url):
    result = ingest(b"\x00\x01\x02 not a benchmark file \xff")
    assert result["status"] == "rejected"


def test_old_points_get_partitions_made_for_them(package):
    rows = "package,benchmark,metric,value,unit,timestamp,run_id\n" + "".join(
        f"{package},old,t,{i},ms,2019-0{i}-15T00:00:00Z,r\n" for i in range(1, 4)
    )
    assert ingest(rows)["accepted"] == 3


def history(package, values, unit="ms", metric="latency", start=None):
    """One run per value, a day apart, ending yesterday."""
    start = start or dt.datetime.now(dt.UTC) - DAY * (len(values) + 1)
    for i, value in enumerate(values):
        row = {
            "package": package,
            "benchmark": "route/lookup",
            "metric": metric,
            "value": value,
            "unit": unit,
            "timestamp": (start + DAY * i).isoformat(),
            "run_id": f"run-{i}",
            "branch": "main",
        }
        assert ingest(json.dumps([row]))["accepted"] == 1


def newest(package, value, unit="ms", metric="latency"):
    row = {
        "package": package,
        "benchmark": "route/lookup",
        "metric": metric,
        "value": value,
        "unit": unit,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "run_id": "run-new",
        "branch": "main",
    }
    return ingest(json.dumps([row]))


NOISY = [100.0, 101.5, 99.2, 100.8, 98.9, 100.3, 101.1, 99.6, 100.2, 99.9]


def test_a_real_slowdown_raises_an_alert(package):
    history(package, NOISY)
    result = newest(package, 130.0)
    assert result["alerts"] == 1
    [alert] = result["regressions"]
    assert alert["direction"] == "lower"
    assert alert["change"] == pytest.approx(0.3, abs=0.01)
    assert alert["p_value"] < 0.001
    with session_scope() as session:
        stored = session.scalars(
            select(BenchmarkAlert).where(BenchmarkAlert.package_name == package)
        ).one()
    assert (stored.status, stored.samples, stored.test) == ("open", 10, "t_test")


def test_noise_raises_no_alert(package):
    history(package, NOISY)
    assert newest(package, 101.9)["alerts"] == 0


def test_a_single_jump_after_a_short_history_raises_no_alert(package):
    history(package, [100.0, 100.5, 99.5])
    assert newest(package, 300.0)["alerts"] == 0


def test_a_throughput_drop_alerts_and_a_rise_does_not(package):
    history(package, [1000 + v for v in NOISY], unit="ops/s", metric="throughput")
    assert newest(package, 1400.0, unit="ops/s", metric="throughput")["alerts"] == 0
    other = f"{package}-2"
    history(other, [1000 + v for v in NOISY], unit="ops/s", metric="throughput")
    assert newest(other, 700.0, unit="ops/s", metric="throughput")["alerts"] == 1


def test_history_in_another_time_unit_is_converted(package):
    history(package, [v / 1000 for v in NOISY], unit="s")
    assert newest(package, 100.4)["alerts"] == 0


# --- one package, one name ------------------------------------------------------------


def registered(package: str) -> uuid.UUID:
    """The registry's row for `package` (seed 000), with yapkg's identity (seed 003)."""
    with session_scope() as session:
        row = Package(name=package, field="npm", full_name=package.removeprefix("@"))
        session.add(row)
        session.flush()
        return row.id


def pytest_file_outside_git(project: str) -> str:
    """A pytest-benchmark file as written outside git: no branch, its project named."""
    document = json.loads((DATA / "pytest_benchmark.json").read_text())
    document["commit_info"].update(project=project, branch="(unknown)", id=uuid.uuid4().hex)
    return json.dumps(document)


def stored(package: str) -> set[tuple]:
    sql = text(
        "SELECT DISTINCT package_name, package_id, branch FROM benchmarks"
        " WHERE package_name LIKE :p"
    )
    with session_scope() as session:
        return set(session.execute(sql, {"p": f"%{package.removeprefix('@')}%"}).all())


def test_defaults_name_the_package_and_branch_where_the_file_only_guesses_them(package):
    package_id = registered(package)
    defaults = {"package": package, "branch": "release"}
    result = ingest(pytest_file_outside_git("pybench"), defaults=defaults)
    assert result["accepted"] > 0
    assert stored(package) == {(package, package_id, "release")}


@pytest.mark.parametrize("spelling", ["yapkg full name", "registry name"])
def test_every_spelling_of_a_package_is_filed_under_the_registry_name_and_linked(package, spelling):
    package_id = registered(package)
    given = {
        "yapkg full name": package.removeprefix("@"),
        "registry name": package,
    }[spelling]
    result = ingest(pytest_file_outside_git("pybench"), defaults={"package": given})
    assert result["accepted"] > 0
    assert stored(package) == {(package, package_id, None)}


def test_the_seeds_own_view_queries_see_every_point_of_a_package_however_it_came(package):
    registered(package)
    ingest(pytest_file_outside_git("a"), defaults={"package": package})
    ingest(pytest_file_outside_git("b"), defaults={"package": package.removeprefix("@")})
    with session_scope() as session:
        # Seed 000's "Get latest benchmarks" and "Get package maintainers", with our name.
        latest_rows = session.execute(
            text("SELECT * FROM latest_benchmarks_view WHERE package_name = :p"), {"p": package}
        ).all()
        maintainers = session.execute(
            text("SELECT * FROM package_maintainers_view WHERE name = :p"), {"p": package}
        ).all()
        points = session.scalar(
            text("SELECT count(*) FROM benchmarks WHERE package_name = :p"), {"p": package}
        )
    assert points == 2 * len(latest_rows) > 0
    assert {row.package_id for row in latest_rows} != {None}
    assert maintainers == []


def test_an_unregistered_package_keeps_the_name_it_came_with(package):
    ingest(pytest_file_outside_git("pybench"), defaults={"package": package})
    assert stored(package) == {(package, None, None)}


TAIL = (None, None, "", None, "test")  # branch, commit, testbed, parameters, source


def points(package, runs, start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC)):
    """Validated points, one per run, of one series; in POINT_COLUMNS order."""
    return [
        (start + i * DAY, package, None, "bench/a", "latency", 1.0 + i, "ms", f"run-{i}", *TAIL)
        for i in runs
    ]


def staged_rows(session):
    """Rows in this transaction's staging table: the batches that went the staging way."""
    if session.scalar(text(f"SELECT to_regclass('pg_temp.{bench_store.STAGING}')")) is None:
        return 0
    return session.scalar(text(f"SELECT count(*) FROM {bench_store.STAGING}"))


def store(batch):
    days = {p[0].date() for p in batch}
    with session_scope() as session:
        touched = bench_store.store_points(session, batch, days)
        return sum(t.points for t in touched), staged_rows(session)


def keys_stored(package):
    with session_scope() as session:
        rows = session.execute(
            select(Benchmark.run_id, func.count())
            .where(Benchmark.package_name == package)
            .group_by(Benchmark.run_id)
        ).all()
    return dict(rows)


def test_a_batch_of_new_points_is_copied_straight_into_the_table(package):
    assert store(points(package, range(50))) == (50, 0)
    assert keys_stored(package) == {f"run-{i}": 1 for i in range(50)}


def test_a_batch_with_some_points_stored_goes_the_staging_way_and_adds_only_the_new(package):
    store(points(package, range(0, 50, 2)))
    assert store(points(package, range(50))) == (25, 50)
    assert keys_stored(package) == {f"run-{i}": 1 for i in range(50)}


def test_a_batch_repeating_a_point_of_its_own_stores_it_once(package):
    batch = points(package, range(10))
    assert store(batch + batch[:3]) == (10, 13)
    assert keys_stored(package) == {f"run-{i}": 1 for i in range(10)}


@pytest.mark.timeout(60)
def test_two_ingests_of_overlapping_points_at_once_store_each_point_exactly_once(package):
    first, second = points(package, range(0, 30)), points(package, range(20, 50))
    outcome = {}
    with session_scope() as session:
        touched = bench_store.store_points(session, first, {p[0].date() for p in first})
        assert sum(t.points for t in touched) == 30
        assert staged_rows(session) == 0
        # The second ingest cannot see these points yet: its probe finds none, its COPY
        # waits on the unique key until this transaction commits, then falls back.
        racer = threading.Thread(target=lambda: outcome.update(second=store(second)))
        racer.start()
        racer.join(timeout=2)
        assert racer.is_alive(), "the second COPY did not wait for the first ingest"
    racer.join(timeout=30)
    assert outcome["second"] == (20, 30)
    assert keys_stored(package) == {f"run-{i}": 1 for i in range(50)}


@pytest.mark.timeout(120)
def test_concurrent_ingests_of_overlapping_payloads_give_one_row_per_point(package):
    def csv(runs):
        lines = [
            f"2025-07-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,{package},b,m,{i},ms,r{i}" for i in runs
        ]
        return "timestamp,package,benchmark,metric,value,unit,run_id\n" + "\n".join(lines)

    payloads = [csv(range(0, 600)), csv(range(300, 900)), csv(range(0, 900, 3))]
    results = []
    threads = [threading.Thread(target=lambda p=p: results.append(ingest(p))) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["accepted"] for r in results) == 900
    assert sum(r["duplicate"] for r in results) == 1500 - 900
    assert keys_stored(package) == {f"r{i}": 1 for i in range(900)}
