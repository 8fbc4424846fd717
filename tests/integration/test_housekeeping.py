import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from agent.cli import migrate
from agent.cli.commands import main
from agent.core.prune_targets import PruneTarget
from agent.core.settings import get_settings
from agent.housekeeping import lock_key
from models import timeseries
from models.session import dispose_engine, session_scope
from models.store import housekeeping as store
from tasks import housekeeping
from tests.support.rows import add_sessions

UTC = dt.UTC


def sql(statement, **params):
    with session_scope() as session:
        result = session.execute(text(statement), params)
        return result.all() if result.returns_rows else None


def scalar(statement, **params):
    return sql(statement, **params)[0][0]


def plain_url():
    return get_settings().database_url


def settings(**changes):
    return get_settings().model_copy(update=changes)


def add_better_auth(user_id, count, offset_s):
    sql(
        "INSERT INTO session (id, token, user_id, expires_at)"
        " SELECT gen_random_uuid()::text, gen_random_uuid()::text, :uid,"
        "   now() + make_interval(secs => :offset) FROM generate_series(1, :count)",
        uid=user_id,
        count=count,
        offset=offset_s,
    )
    sql(
        "INSERT INTO verification (id, identifier, value, expires_at)"
        " SELECT gen_random_uuid()::text, :uid, 'v',"
        "   now() + make_interval(secs => :offset) FROM generate_series(1, :count)",
        uid=str(user_id),
        count=count,
        offset=offset_s,
    )


def counts(user_id):
    """(expired, live) rows of the user in sessions, session and verification."""
    return {
        table: tuple(
            sql(
                "SELECT count(*) FILTER (WHERE expires_at < now()),"
                " count(*) FILTER (WHERE expires_at >= now())"
                f" FROM {table} WHERE CAST({column} AS text) = :uid",
                uid=str(user_id),
            )[0]
        )
        for table, column in (
            ("sessions", "user_id"),
            ("session", "user_id"),
            ("verification", "identifier"),
        )
    }


def test_expired_rows_go_and_live_rows_stay_in_every_session_table(user_id):
    add_sessions(user_id, 700, -3600)
    add_sessions(user_id, 300, 3600)
    add_better_auth(user_id, 40, -60)
    add_better_auth(user_id, 10, 60)
    result = housekeeping.run_prune(settings(prune_batch_size=50))
    assert counts(user_id) == {"sessions": (0, 300), "session": (0, 10), "verification": (0, 10)}
    assert result["deleted"]["sessions"] >= 700
    assert result["deleted"]["session"] >= 40
    assert result["complete"] is True
    assert result["batches"] > 700 // 50


def prune_audits():
    return sql(
        "SELECT entity_id, action, user_agent, changes FROM audit_logs"
        " WHERE entity_type = 'housekeeping.prune' ORDER BY created_at, id"
    )


def test_each_prune_run_leaves_one_audit_summary_even_when_nothing_expired(user_id):
    before = len(prune_audits())
    add_sessions(user_id, 30, -3600)
    add_better_auth(user_id, 4, -60)
    first = housekeeping.run_prune(settings(prune_batch_size=10))
    housekeeping.run_prune(settings())
    audits = prune_audits()[before:]
    assert len(audits) == 2
    [(run_id, action, agent, changes), (_, _, _, empty)] = audits
    assert (action, agent) == ("DELETE", "infra-agent")
    assert run_id is not None
    assert {t: c["rows"] for t, c in changes["tables"].items()} == first["deleted"]
    assert changes["total"] == first["total"] >= 34
    assert changes["tables"]["sessions"]["column"] == "expires_at"
    started = dt.datetime.fromisoformat(changes["started_at"])
    assert dt.datetime.fromisoformat(changes["tables"]["sessions"]["expired_before"]) == started
    assert empty["total"] == 0
    assert set(empty["tables"]) == set(changes["tables"])


def test_a_row_expiring_exactly_now_is_not_yet_expired(user_id, db_session):
    # One transaction: now() is the same instant for the inserts and for the prune statement.
    db_session.execute(
        text(
            "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES"
            " (:u, repeat('a', 64), now()),"
            " (:u, repeat('b', 64), now() - interval '1 microsecond'),"
            " (:u, repeat('c', 64), now() + interval '1 microsecond')"
        ),
        {"u": user_id},
    )
    target = store.resolve(db_session, PruneTarget(table="sessions"))
    store.delete_expired(db_session, target, 1000)
    left = db_session.execute(
        text("SELECT left(token_hash, 1) FROM sessions WHERE user_id = :u ORDER BY 1"),
        {"u": user_id},
    )
    assert [row[0] for row in left] == ["a", "c"]


def test_a_grace_period_keeps_recently_expired_rows_of_a_configured_table(database_url):
    sql("CREATE TABLE hk_grace (id int PRIMARY KEY, valid_until timestamp)")
    try:
        sql(
            "INSERT INTO hk_grace VALUES (1, localtimestamp - interval '2 hours'),"
            " (2, localtimestamp - interval '30 minutes'), (3, localtimestamp + interval '1 hour')"
        )
        extra = (PruneTarget(table="hk_grace", column="valid_until", grace_s=3600),)
        result = housekeeping.run_prune(settings(prune_extra_tables=extra))
        assert result["deleted"]["hk_grace"] == 1
        assert [r[0] for r in sql("SELECT id FROM hk_grace ORDER BY id")] == [2, 3]
    finally:
        sql("DROP TABLE hk_grace")


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        (PruneTarget(table="no_such_table"), "no such table"),
        (PruneTarget(table="sessions", column="no_such_column"), "no such column"),
        (PruneTarget(table="sessions", column="token_hash"), "not a timestamp"),
        # Partitioned or (on TimescaleDB) a hypertable: either way, retention's.
        (PruneTarget(table="instance_health_history", column="time"), "kept by retention"),
        (PruneTarget(table="SESSIONS"), "no such table"),
    ],
)
def test_a_configured_table_the_catalog_does_not_back_is_refused_before_anything_is_deleted(
    user_id, target, problem
):
    add_sessions(user_id, 5, -60)
    with pytest.raises(store.PruneTargetError, match=problem):
        housekeeping.run_prune(settings(prune_extra_tables=(target,)))
    assert counts(user_id)["sessions"] == (5, 0)


def test_a_locked_row_is_skipped_not_waited_for_and_goes_in_the_next_run(user_id):
    [token] = add_sessions(user_id, 1, -60)
    add_sessions(user_id, 50, -60)
    with psycopg.connect(plain_url()) as login:
        login.execute("SELECT 1 FROM sessions WHERE token_hash = %s FOR UPDATE", [token])
        started = time.monotonic()
        housekeeping.run_prune(settings())
        assert time.monotonic() - started < 10
        assert counts(user_id)["sessions"] == (1, 0)
    housekeeping.run_prune(settings())
    assert counts(user_id)["sessions"] == (0, 0)


def test_only_one_pruner_runs_at_a_time(user_id):
    add_sessions(user_id, 10, -60)
    with psycopg.connect(plain_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [lock_key(housekeeping.PRUNE_LOCK)])
        result = housekeeping.run_prune(settings())
    assert result["skipped"] == "another prune is running"
    assert counts(user_id)["sessions"] == (10, 0)


def lookups_and_extensions(expired, live, stop, report):
    """Look sessions up by token hash and extend expired ones, until `stop` is set."""
    with psycopg.connect(plain_url(), autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            found = conn.execute(
                "SELECT id FROM sessions WHERE token_hash = %s", [live[i % len(live)]]
            )
            report["latencies"].append(time.monotonic() - started)
            report["missing"] += found.fetchone() is None
            extended = conn.execute(
                "UPDATE sessions SET expires_at = now() + interval '1 hour'"
                " WHERE token_hash = %s RETURNING token_hash",
                [expired[i * 7 % len(expired)]],
            ).fetchone()
            if extended:
                report["extended"].add(extended[0])
            i += 1


def prune_while_looking_up(expired, live, lookers):
    """A prune run (batches of 500) while `lookers` threads look sessions up and extend them."""
    stop = threading.Event()
    reports = [{"latencies": [], "missing": 0, "extended": set()} for _ in range(lookers)]
    threads = [
        threading.Thread(target=lookups_and_extensions, args=(expired, live, stop, r))
        for r in reports
    ]
    for thread in threads:
        thread.start()
    try:
        return housekeeping.run_prune(settings(prune_batch_size=500)), reports
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_concurrent_lookups_and_updates_are_not_held_up_and_extended_sessions_survive(user_id):
    expired = add_sessions(user_id, 20000, -60)
    live = add_sessions(user_id, 1000, 3600)
    result, reports = prune_while_looking_up(expired, live, lookers=3)
    extended = set().union(*(r["extended"] for r in reports))
    latencies = sorted(x for r in reports for x in r["latencies"])
    assert result["complete"] is True
    assert sum(r["missing"] for r in reports) == 0
    assert len(latencies) > 50
    assert latencies[-1] < 2.0
    kept = {row[0] for row in sql("SELECT token_hash FROM sessions WHERE user_id = :u", u=user_id)}
    assert kept == set(live) | extended


def add_shuffled_sessions(user_id, expired, live):
    """Expired and live sessions interleaved at random over the heap, then analyzed."""
    rows = sql(
        "INSERT INTO sessions (user_id, token_hash, expires_at)"
        " SELECT :uid, encode(sha256(gen_random_uuid()::text::bytea), 'hex'),"
        "   now() + make_interval(secs => CASE WHEN i <= :expired THEN -60 ELSE 3600 END)"
        " FROM generate_series(1, :total) AS i ORDER BY random()"
        " RETURNING token_hash, expires_at < now()",
        uid=user_id,
        expired=expired,
        total=expired + live,
    )
    sql("ANALYZE sessions")
    return [t for t, gone in rows if gone], [t for t, gone in rows if not gone]


def sessions_target():
    with session_scope() as session:
        target = store.resolve(session, PruneTarget(table="sessions"))
        return target, store.planned_sweep(session, target)


def test_a_shuffled_heap_mostly_expired_is_swept_by_page_and_loses_exactly_its_expired_rows(
    user_id,
):
    expired, live = add_shuffled_sessions(user_id, 20000, 5000)
    _, sweep = sessions_target()
    assert sweep is not None
    assert sweep.pages > 100
    result, reports = prune_while_looking_up(expired, live, lookers=2)
    extended = set().union(*(r["extended"] for r in reports))
    assert result["complete"] is True
    assert result["batches"] > 10
    assert result["deleted"]["sessions"] == 20000 - len(extended)
    assert sum(r["missing"] for r in reports) == 0
    kept = {row[0] for row in sql("SELECT token_hash FROM sessions WHERE user_id = :u", u=user_id)}
    assert kept == set(live) | extended


def test_a_few_expired_rows_in_a_big_table_are_found_through_the_expiry_index(user_id):
    add_shuffled_sessions(user_id, 100, 20000)
    assert sessions_target()[1] is None
    housekeeping.run_prune(settings())
    assert counts(user_id)["sessions"] == (0, 20000)


def test_a_heap_in_expiry_order_mostly_expired_is_swept_too(user_id):
    add_sessions(user_id, 20000, -60)
    add_sessions(user_id, 5000, 3600)
    sql("ANALYZE sessions")
    assert sessions_target()[1] is not None
    housekeeping.run_prune(settings())
    assert counts(user_id)["sessions"] == (0, 5000)


def test_a_locked_row_in_a_swept_page_is_skipped_not_waited_for(user_id):
    expired, _ = add_shuffled_sessions(user_id, 3000, 100)
    assert sessions_target()[1] is not None
    with psycopg.connect(plain_url()) as login:
        login.execute("SELECT 1 FROM sessions WHERE token_hash = %s FOR UPDATE", [expired[0]])
        started = time.monotonic()
        housekeeping.run_prune(settings())
        assert time.monotonic() - started < 10
        assert counts(user_id)["sessions"] == (1, 100)
    housekeeping.run_prune(settings())
    assert counts(user_id)["sessions"] == (0, 100)


SLOW_TABLE = """
    CREATE TABLE hk_slow (id bigserial PRIMARY KEY, expires_at timestamptz NOT NULL);
    CREATE INDEX ON hk_slow (expires_at);
    CREATE FUNCTION hk_slow_down() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(%(sleep_s)s); RETURN NULL; END $$;
    CREATE TRIGGER hk_slow_down BEFORE DELETE ON hk_slow
        FOR EACH STATEMENT EXECUTE FUNCTION hk_slow_down();
    INSERT INTO hk_slow (expires_at)
        SELECT now() - interval '1 hour' FROM generate_series(1, %(expired)s);
    INSERT INTO hk_slow (expires_at)
        SELECT now() + interval '1 hour' FROM generate_series(1, 100);
"""


@pytest.fixture
def slow_table(database_url):
    """A configured prune target of which every delete statement takes at least 0.1 s."""

    def make(expired):
        with psycopg.connect(plain_url(), autocommit=True) as conn:
            conn.execute(SLOW_TABLE % {"sleep_s": 0.1, "expired": expired})
        return (PruneTarget(table="hk_slow"),)

    yield make
    with psycopg.connect(plain_url(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS hk_slow; DROP FUNCTION IF EXISTS hk_slow_down")


def slow_counts():
    expired, live = sql(
        "SELECT count(*) FILTER (WHERE expires_at < now()),"
        " count(*) FILTER (WHERE expires_at >= now()) FROM hk_slow"
    )[0]
    return expired, live


def others_on_slow_table():
    """Locks other backends hold on hk_slow, plus the pruner's advisory lock if held."""
    return scalar(
        "SELECT count(*) FROM pg_locks WHERE pid <> pg_backend_pid() AND ("
        " relation = to_regclass('hk_slow') OR (locktype = 'advisory' AND objid = :lo))",
        lo=lock_key(housekeeping.PRUNE_LOCK) & 0xFFFFFFFF,
    )


def wait_for(predicate, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


PRUNER = "from agent.core.settings import get_settings; from tasks.housekeeping import run_prune; run_prune(get_settings())"  # noqa: E501


def test_a_prune_killed_mid_way_loses_nothing_and_the_next_run_finishes_it(slow_table):
    extra = slow_table(expired=3000)
    env = {
        **os.environ,
        "AGENT_DATABASE_URL": plain_url(),
        "AGENT_PRUNE_EXTRA_TABLES": json.dumps([t.model_dump() for t in extra]),
        "AGENT_PRUNE_BATCH_SIZE": "10",
    }
    pruner = subprocess.Popen([sys.executable, "-c", PRUNER], env=env)
    try:
        wait_for(lambda: slow_counts()[0] <= 2950)
    finally:
        pruner.send_signal(signal.SIGKILL)
        pruner.wait()
    wait_for(lambda: others_on_slow_table() == 0)
    left, live = slow_counts()
    assert 0 < left <= 2950
    assert live == 100
    sql("ALTER TABLE hk_slow DISABLE TRIGGER hk_slow_down")
    result = housekeeping.run_prune(settings(prune_extra_tables=extra))
    assert result["complete"] is True
    assert result["deleted"]["hk_slow"] == left
    assert slow_counts() == (0, 100)


def test_the_worker_reports_progress_and_returns_counts(
    celery_app, celery_worker, slow_table, monkeypatch
):
    extra = slow_table(expired=300)
    monkeypatch.setenv("AGENT_PRUNE_EXTRA_TABLES", json.dumps([t.model_dump() for t in extra]))
    monkeypatch.setenv("AGENT_PRUNE_BATCH_SIZE", "10")
    get_settings.cache_clear()
    try:
        job = celery_app.send_task("agent.housekeeping.prune_sessions")
        seen = []
        while not job.ready():
            # State and meta read together: reading `state`, then `info`, can pair a PROGRESS
            # state with the final result that replaced it in between.
            meta = job.backend.get_task_meta(job.id)
            if meta["status"] == "PROGRESS":
                seen.append(meta["result"])
            time.sleep(0.02)
        result = job.get(timeout=60)
    finally:
        get_settings.cache_clear()
    assert seen, "no PROGRESS state was seen"
    assert {"table", "deleted", "batches", "longest_statement_ms"} <= set(seen[-1])
    assert result["deleted"]["hk_slow"] == 300
    assert result["complete"] is True


def test_expired_active_keys_are_deactivated_each_with_one_audit_row(user_id):
    keys = {}
    for name, offset, active in [
        ("expired", "-1 hour", "true"),
        ("expired-null", "-1 hour", "NULL"),
        ("live", "1 hour", "true"),
        ("never", None, "true"),
        ("already-off", "-1 hour", "false"),
    ]:
        expires = f"now() + interval '{offset}'" if offset else "NULL"
        keys[name] = scalar(
            "INSERT INTO api_keys (user_id, key_hash, name, expires_at, is_active) VALUES"
            f" (:u, encode(sha256(gen_random_uuid()::text::bytea), 'hex'), :n, {expires}, {active})"
            " RETURNING id",
            u=user_id,
            n=name,
        )
    first = housekeeping.run_expire_keys(settings())
    second = housekeeping.run_expire_keys(settings())
    assert first["deactivated"] >= 2
    assert second["deactivated"] == 0
    active = dict(sql("SELECT name, is_active FROM api_keys WHERE user_id = :u", u=user_id))
    assert active == {
        "expired": False,
        "expired-null": False,
        "live": True,
        "never": True,
        "already-off": False,
    }
    audits = sql(
        "SELECT entity_id, user_id, entity_type, action, changes FROM audit_logs"
        " WHERE entity_id = ANY(:ids)",
        ids=list(keys.values()),
    )
    by_key = {row[0]: row for row in audits}
    assert set(by_key) == {keys["expired"], keys["expired-null"]}
    assert len(audits) == 2
    _, who, entity_type, action, changes = by_key[keys["expired"]]
    assert (who, entity_type, action) == (None, "api_keys", "UPDATE")
    assert changes["before"] == {"is_active": True}
    assert changes["after"] == {"is_active": False}
    assert by_key[keys["expired-null"]][4]["before"] == {"is_active": None}


def test_expired_gateway_api_tokens_are_deactivated_each_with_one_audit_row(user_id):
    tokens = sql(
        "INSERT INTO api_token (token_hash, user_id, expires_at) VALUES"
        " (encode(sha256(gen_random_uuid()::text::bytea), 'hex'), :u, now() - interval '1 day'),"
        " (encode(sha256(gen_random_uuid()::text::bytea), 'hex'), :u, now() + interval '1 day')"
        " RETURNING id",
        u=user_id,
    )
    expired, live = (row[0] for row in tokens)
    try:
        assert housekeeping.run_expire_keys(settings())["deactivated"] >= 1
        active = dict(
            sql("SELECT id, is_active FROM api_token WHERE id IN (:a, :b)", a=expired, b=live)
        )
        assert active == {expired: False, live: True}
        audits = sql("SELECT entity_type, changes FROM audit_logs WHERE entity_id = :t", t=expired)
        assert [(kind, changes["after"]) for kind, changes in audits] == [
            ("api_token", {"is_active": False})
        ]
    finally:
        sql("DELETE FROM api_token WHERE id IN (:a, :b)", a=expired, b=live)


def test_a_key_expiring_exactly_now_stays_active(user_id, db_session):
    db_session.execute(
        text(
            "INSERT INTO api_keys (user_id, key_hash, expires_at)"
            " VALUES (:u, repeat('e', 64), now())"
        ),
        {"u": user_id},
    )
    store.expire_api_keys(db_session, 1000)
    active = db_session.execute(
        text("SELECT is_active FROM api_keys WHERE key_hash = repeat('e', 64)")
    ).scalar_one()
    assert active is True


@pytest.fixture
def native_backend(database_url):
    with session_scope() as session:
        backend = timeseries.current_backend(session.connection(), "instance_health_history")
    if backend != "native":
        pytest.skip("the test database's time series are not natively partitioned")


@pytest.fixture
def instance_id(database_url):
    iid = scalar(
        "INSERT INTO infrastructure_instances (name, type, host) VALUES ('hk', 'vm', 'h')"
        " RETURNING id"
    )
    yield iid
    sql("DELETE FROM infrastructure_instances WHERE id = :i", i=iid)


def add_history(instance_id, moments):
    with session_scope() as session:
        series = timeseries.SERIES["instance_health_history"]
        timeseries.ensure_partitions_for(session.connection(), series, moments)
        for moment in moments:
            session.execute(
                text(
                    "INSERT INTO instance_health_history (time, instance_id, kind, status)"
                    " VALUES (:t, :i, 'tcp', 'ok')"
                ),
                {"t": moment, "i": instance_id},
            )


def history_times(instance_id):
    rows = sql(
        "SELECT time FROM instance_health_history WHERE instance_id = :i ORDER BY time",
        i=instance_id,
    )
    return [row[0] for row in rows]


def test_health_history_keeps_its_window_and_partitions_are_ready_ahead(
    native_backend, instance_id
):
    now = dt.datetime.now(UTC)
    days = [now - dt.timedelta(days=d) for d in (40, 31, 29, 1)]
    add_history(instance_id, days)
    result = housekeeping.run_retention(settings(health_history_retention_days=30), now)
    assert history_times(instance_id) == days[2:]
    dropped = result["dropped"]["instance_health_history"]
    assert (
        timeseries.partition_name(
            "instance_health_history", days[0].replace(hour=0, minute=0, second=0, microsecond=0)
        )
        in dropped
    )
    assert result["deferred"] == []


def test_partitions_created_ahead_keep_inserts_working_day_after_day(native_backend, instance_id):
    now = dt.datetime.now(UTC)
    for day in range(0, 21, 3):
        later = now + dt.timedelta(days=day)
        housekeeping.run_retention(settings(partitions_ahead=7), later)
        with session_scope() as session:
            session.execute(
                text(
                    "INSERT INTO instance_health_history (time, instance_id, kind, status)"
                    " VALUES (:t, :i, 'tcp', 'ok')"
                ),
                {"t": later + dt.timedelta(days=6), "i": instance_id},
            )
    assert len(history_times(instance_id)) == 7
    sql("DELETE FROM instance_health_history WHERE instance_id = :i", i=instance_id)


def add_benchmark(moment):
    with session_scope() as session:
        timeseries.ensure_partitions_for(
            session.connection(), timeseries.SERIES["benchmarks"], [moment]
        )
        return session.execute(
            text(
                "INSERT INTO benchmarks (timestamp, package_name, benchmark, metric, value,"
                " unit, run_id) VALUES (:t, 'p', 'b', 'm', 1, 'ms', :r) RETURNING id"
            ),
            {"t": moment, "r": uuid.uuid4().hex},
        ).scalar_one()


def test_benchmarks_are_kept_unless_a_retention_is_configured(native_backend):
    now = dt.datetime.now(UTC)
    old = add_benchmark(now - dt.timedelta(days=800))
    housekeeping.run_retention(settings(), now)
    assert scalar("SELECT count(*) FROM benchmarks WHERE id = :i", i=old) == 1
    housekeeping.run_retention(settings(benchmarks_retention_days=365), now)
    assert scalar("SELECT count(*) FROM benchmarks WHERE id = :i", i=old) == 0


def test_a_retention_drop_waiting_on_a_busy_table_is_deferred_not_queued(
    native_backend, instance_id
):
    now = dt.datetime.now(UTC)
    add_history(instance_id, [now - dt.timedelta(days=60)])
    with psycopg.connect(plain_url()) as writer:
        writer.execute("LOCK TABLE instance_health_history IN ROW EXCLUSIVE MODE")
        result = housekeeping.run_retention(settings(), now)
    assert result["deferred"] == ["instance_health_history"]
    housekeeping.run_retention(settings(), now)
    assert history_times(instance_id) == []


def test_audit_and_access_log_retention_is_off_by_default_and_deletes_old_rows_when_set(
    database_url,
):
    old, recent = (
        scalar(
            "INSERT INTO audit_logs (entity_type, entity_id, action, created_at)"
            " VALUES ('t', gen_random_uuid(), 'X', now() - make_interval(days => :d)) RETURNING id",
            d=age,
        )
        for age in (400, 10)
    )
    package = scalar(
        "INSERT INTO packages (name) VALUES (:n) RETURNING id", n=f"hk-{uuid.uuid4().hex}"
    )
    scalar(
        "INSERT INTO access_logs (package_id, action, created_at)"
        " VALUES (:p, 'get', now() - interval '400 days') RETURNING id",
        p=package,
    )
    now = dt.datetime.now(UTC)
    housekeeping.run_retention(settings(), now)
    assert scalar("SELECT count(*) FROM audit_logs WHERE id IN (:a, :b)", a=old, b=recent) == 2
    assert scalar("SELECT count(*) FROM access_logs WHERE package_id = :p", p=package) == 1
    result = housekeeping.run_retention(
        settings(audit_logs_retention_days=90, access_logs_retention_days=90), now
    )
    assert scalar("SELECT count(*) FROM audit_logs WHERE id IN (:a, :b)", a=old, b=recent) == 1
    assert scalar("SELECT count(*) FROM audit_logs WHERE id = :b", b=recent) == 1
    assert scalar("SELECT count(*) FROM access_logs WHERE package_id = :p", p=package) == 0
    assert result["logs"]["deleted"]["audit_logs"] >= 1
    sql("DELETE FROM packages WHERE id = :p", p=package)
    sql("DELETE FROM audit_logs WHERE id = :b", b=recent)


def test_a_dry_run_shows_what_would_go_per_table_and_changes_nothing(user_id):
    add_sessions(user_id, 7, -60)
    add_better_auth(user_id, 3, -60)
    output = CliRunner().invoke(main, ["prune", "--dry-run"])
    assert output.exit_code == 0, output.output
    lines = output.output.splitlines()
    assert any(line.split()[:1] == ["sessions"] and int(line.split()[1]) >= 7 for line in lines)
    assert any(line.split()[:1] == ["verification"] for line in lines)
    assert "would deactivate (expired API keys)" in output.output
    assert counts(user_id) == {"sessions": (7, 0), "session": (3, 0), "verification": (3, 0)}


def test_the_prune_command_runs_all_three_jobs_and_prints_counts(user_id):
    add_sessions(user_id, 4, -60)
    output = CliRunner().invoke(main, ["prune"])
    assert output.exit_code == 0, output.output
    done = json.loads(output.output)
    assert done["sessions"]["deleted"]["sessions"] >= 4
    assert "deactivated" in done["api_keys"]
    assert "ready" in done["retention"]
    assert counts(user_id)["sessions"] == (0, 0)


def test_key_expiry_and_retention_run_through_the_worker(celery_app, celery_worker, user_id):
    keys = celery_app.send_task("agent.housekeeping.expire_api_keys").get(timeout=60)
    retention = celery_app.send_task("agent.housekeeping.apply_retention").get(timeout=60)
    assert keys["complete"] is True
    assert set(retention["ready"]) == set(timeseries.SERIES)


@pytest.fixture
def timescaledb_settings(timescaledb_database_url, monkeypatch):
    """The agent pointed at a migrated TimescaleDB database for the length of a test."""
    monkeypatch.setenv("AGENT_DATABASE_URL", timescaledb_database_url)
    monkeypatch.setenv("AGENT_TIMESERIES_BACKEND", "timescaledb")
    get_settings.cache_clear()
    dispose_engine()
    migrate.upgrade(timescaledb_database_url)
    yield get_settings()
    dispose_engine()
    get_settings.cache_clear()


@pytest.mark.timescaledb
def test_health_history_chunks_past_the_window_are_dropped_on_timescaledb(timescaledb_settings):
    iid = scalar(
        "INSERT INTO infrastructure_instances (name, type, host) VALUES ('hk', 'vm', 'h')"
        " RETURNING id"
    )
    now = dt.datetime.now(UTC)
    moments = [now - dt.timedelta(days=d) for d in (40, 1)]
    add_history(iid, moments)
    result = housekeeping.run_retention(timescaledb_settings, now)
    assert history_times(iid) == moments[1:]
    assert result["dropped"]["instance_health_history"]
    assert result["ready"] == dict.fromkeys(timeseries.SERIES)
    assert housekeeping.plan(timescaledb_settings, now)["series"]["instance_health_history"] == []


@pytest.mark.timescaledb
def test_a_hypertable_named_as_a_prune_target_is_refused_like_a_partitioned_table(
    timescaledb_settings,
):
    target = PruneTarget(table="instance_health_history", column="time")
    with pytest.raises(store.PruneTargetError, match="a hypertable is kept by retention"):
        housekeeping.run_prune(
            timescaledb_settings.model_copy(update={"prune_extra_tables": (target,)})
        )
