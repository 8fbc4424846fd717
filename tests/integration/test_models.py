import datetime as dt
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from models import (
    ApiKey,
    Benchmark,
    InfrastructureInstance,
    InstanceHealthHistory,
    Maintainer,
    Package,
    PackageMaintainer,
    ServiceRegistry,
    User,
    timeseries,
)

NOW = dt.datetime.now(dt.UTC)


def benchmark(package: str, **overrides) -> Benchmark:
    values = {
        "timestamp": NOW,
        "package_name": package,
        "benchmark": "parse",
        "metric": "latency",
        "value": 1.0,
        "unit": "ms",
        "run_id": "run-1",
    }
    return Benchmark(**{**values, **overrides})


@pytest.fixture
def package_name() -> str:
    return f"@graph/layer4-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def native(db_session):
    if timeseries.current_backend(db_session.connection(), "benchmarks") != "native":
        pytest.skip("this server gave the time series to TimescaleDB")


def partition_of(db_session, table: str, key: str, value) -> str:
    sql = text(f"SELECT tableoid::regclass::text FROM {table} WHERE {key} = :value")
    return db_session.execute(sql, {"value": value}).scalar_one()


def test_a_benchmark_lands_in_the_partition_of_its_month(db_session, native, package_name):
    db_session.add(benchmark(package_name))
    db_session.flush()
    expected = timeseries.partition_name("benchmarks", timeseries.period_start(NOW, "month"))
    assert partition_of(db_session, "benchmarks", "package_name", package_name) == expected


def test_a_health_check_lands_in_the_partition_of_its_day(db_session, native):
    instance = InfrastructureInstance(name="web-1", type="vm", host="10.0.0.1")
    db_session.add(instance)
    db_session.flush()
    db_session.add(
        InstanceHealthHistory(time=NOW, instance_id=instance.id, kind="ssh", status="up")
    )
    db_session.flush()
    expected = timeseries.partition_name(
        "instance_health_history", timeseries.period_start(NOW, "day")
    )
    assert partition_of(db_session, "instance_health_history", "instance_id", instance.id) == (
        expected
    )


def test_a_benchmark_outside_every_partition_is_refused(db_session, native, package_name):
    ancient = dt.datetime(1999, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(DBAPIError, match="no partition"), db_session.begin_nested():
        db_session.add(benchmark(package_name, timestamp=ancient))


def test_the_latest_benchmarks_view_gives_the_latest_point_of_each_series(db_session, package_name):
    earlier = NOW - dt.timedelta(hours=1)
    db_session.add_all(
        [
            benchmark(package_name, timestamp=earlier, value=5.0, run_id="run-0"),
            benchmark(package_name, value=3.0),
            benchmark(package_name, metric="memory", unit="MB", value=42.0, timestamp=earlier),
        ]
    )
    db_session.flush()
    sql = text("SELECT metric, value FROM latest_benchmarks_view WHERE package_name = :name")
    rows = db_session.execute(sql, {"name": package_name}).all()
    assert sorted(rows) == [("latency", 3.0), ("memory", 42.0)]


def test_the_package_maintainers_view_finds_a_package_by_its_name(db_session, package_name):
    package = Package(name=package_name, version="1.2.0")
    maintainer = Maintainer(name="Alex Chen", email=f"{uuid.uuid4().hex}@example.com")
    db_session.add_all([package, maintainer])
    db_session.flush()
    db_session.add(
        PackageMaintainer(package_id=package.id, maintainer_id=maintainer.id, scope="full-access")
    )
    db_session.flush()
    sql = text("SELECT * FROM package_maintainers_view WHERE name = :name")
    row = db_session.execute(sql, {"name": package_name}).mappings().one()
    assert row["maintainer_name"] == "Alex Chen"
    assert row["maintainer_role"] == "contributor"
    assert row["scope"] == "full-access"
    assert row["version"] == "1.2.0"


def test_benchmarks_refuse_a_second_copy_of_the_same_point(db_session, package_name):
    db_session.add(benchmark(package_name))
    db_session.flush()
    with pytest.raises(IntegrityError, match="duplicate key"), db_session.begin_nested():
        db_session.add(benchmark(package_name, value=2.0))


def test_the_service_registry_refuses_an_unknown_status(db_session):
    plugin = ServiceRegistry(
        name="BI", slug=f"bi-{uuid.uuid4().hex}", version="1", provider="acme", status="bogus"
    )
    with (
        pytest.raises(IntegrityError, match="ck_service_registry_status"),
        db_session.begin_nested(),
    ):
        db_session.add(plugin)


def test_api_keys_refuse_a_key_hash_that_is_not_a_sha256_hex_digest(db_session):
    user = User(email=f"{uuid.uuid4().hex}@example.com")
    db_session.add(user)
    db_session.flush()
    with pytest.raises(IntegrityError, match="key_length"), db_session.begin_nested():
        db_session.add(ApiKey(user_id=user.id, key_hash="abc123"))


def test_users_refuse_a_malformed_email(db_session):
    with pytest.raises(IntegrityError, match="email_format"), db_session.begin_nested():
        db_session.add(User(email="not-an-email"))


def test_server_defaults_fill_in_a_new_instance(db_session):
    instance = InfrastructureInstance(name="docker-1", type="docker_host", host="10.0.0.2")
    db_session.add(instance)
    db_session.flush()
    db_session.refresh(instance)
    assert (instance.status, instance.protocol) == ("unknown", "ssh")
    assert instance.connection_config == {}
    assert instance.created_at.tzinfo is not None


def test_a_package_is_found_by_its_yapkg_full_name(db_session):
    full_name = f"foo/{uuid.uuid4().hex[:8]}"
    db_session.add(Package(name=f"yapkg:{full_name}", field="npm", full_name=full_name))
    db_session.flush()
    found = db_session.scalars(select(Package).where(Package.full_name == full_name)).one()
    assert found.field == "npm"
