"""Hostile input, sent by name to a real worker: a clear refusal, a live worker, nothing written.

Other apps call the on-demand tasks with whatever they have. Every argument a task can take
gets wrong types, missing and extra fields, unknown IDs, huge and deeply nested values,
SQL-looking and shell-looking strings, path traversal, NUL bytes and lone surrogates. The
answer must be a FAILURE whose exception is `TaskInputError` (not retried), or the task's
documented "nothing to do" result; the worker must answer a ping afterwards; and no row of
any table may change.
"""

import json
import uuid

import pytest
from celery.result import AsyncResult
from sqlalchemy import text

from models.session import session_scope

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOSTILE = {
    "null": None,
    "number": 42,
    "boolean": True,
    "list": ["x"],
    "object": {"id": 1},
    "not a uuid": "not-a-uuid",
    "sql": "'; DROP TABLE infrastructure_instances; --",
    "shell": "$(touch /tmp/pwned) `id` | sh; rm -rf / &",
    "traversal": "../../../../etc/passwd",
    "nul": "abc\x00def",
    "surrogates": "\udcff\ud800",
    "huge": "x" * 2_000_000,
    "deep": json.loads("[" * 200 + "]" * 200),
}
ONE_ID_TASKS = {
    "agent.health.check_instance": "instance_id",
    "agent.discovery.discover_instance": "instance_id",
    "agent.plugins.check_installation": "installation_id",
    "agent.plugins.check_mcp_server": "server_id",
}
PERIODIC_TASKS = [
    "agent.health.sweep",
    "agent.discovery.sweep",
    "agent.plugins.refresh",
    "agent.housekeeping.prune_sessions",
    "agent.housekeeping.expire_api_keys",
    "agent.housekeeping.apply_retention",
]
RESULT_TIMEOUT_S = 60


def fingerprint() -> dict[str, tuple[int, str]]:
    """Row count and a digest of the content of every table of the schema."""
    with session_scope() as session:
        tables = session.scalars(
            text(
                "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p')"
                " AND relnamespace = current_schema()::regnamespace ORDER BY relname"
            )
        ).all()
        return {
            name: tuple(
                session.execute(
                    text(
                        f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY"
                        f" t::text), '')) FROM \"{name}\" t"
                    )
                ).one()
            )
            for name in tables
        }


@pytest.fixture
def unchanged_database(celery_worker):
    """Fails the test if any table's rows changed while it ran."""
    before = fingerprint()
    yield
    after = fingerprint()
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}


def send_all(app, calls):
    """Send every (name, args, kwargs) at once; their results, in order."""
    sent = [app.send_task(name, args=args, kwargs=kwargs) for name, args, kwargs in calls]
    for result in sent:
        result.get(timeout=RESULT_TIMEOUT_S, propagate=False)
    return sent


def assert_refused(results: list[AsyncResult], calls) -> None:
    """Each call failed at once with a TaskInputError: no retry, no other exception."""
    for result, call in zip(results, calls, strict=True):
        name = repr(call)[:200]
        assert result.state == "FAILURE", (name, result.state, result.result)
        assert type(result.result).__name__ == "TaskInputError", (name, repr(result.result))
        assert (result.retries or 0) == 0, name


def assert_worker_alive(app) -> None:
    assert app.send_task("agent.system.ping").get(timeout=30)["pong"] is True


@pytest.mark.parametrize(("task", "argument"), sorted(ONE_ID_TASKS.items()))
def test_a_task_on_one_id_refuses_every_hostile_id_and_writes_nothing(
    celery_app, unchanged_database, task, argument
):
    """Wrong types, SQL, shell, traversal, NUL, surrogates, 2 MB and 200-deep ids are refused."""
    calls = [(task, [value], {}) for value in HOSTILE.values()]
    calls += [
        (task, [], {}),
        (task, [str(uuid.uuid4()), "extra"], {}),
        (task, [], {argument: str(uuid.uuid4()), "evil": "'; DROP TABLE users; --"}),
        (task, [], {"id": str(uuid.uuid4())}),
    ]
    assert_refused(send_all(celery_app, calls), calls)
    assert_worker_alive(celery_app)


@pytest.mark.parametrize("task", sorted(ONE_ID_TASKS))
def test_an_unknown_id_is_a_clear_nothing_to_do_and_writes_nothing(
    celery_app, unchanged_database, task
):
    """A well-formed id that names nothing gives the task's documented not-done answer."""
    answer = celery_app.send_task(task, args=[str(uuid.uuid4())]).get(timeout=RESULT_TIMEOUT_S)
    assert answer["status"] in ("not_checked", "not_discovered")
    assert "no such" in answer["message"]


BATCHES = [
    ("agent.health.check_batch", lambda ids: ([ids], {})),
    ("agent.discovery.discover_batch", lambda ids: ([ids], {})),
    ("agent.plugins.check_batch", lambda ids: (["installation", ids], {})),
]


@pytest.mark.parametrize(("task", "shape"), BATCHES, ids=[b[0] for b in BATCHES])
def test_a_batch_task_refuses_hostile_id_lists_and_writes_nothing(
    celery_app, unchanged_database, task, shape
):
    """Not a list, hostile members, or more than 10,000 ids: refused before any lease."""
    lists = [*HOSTILE.values(), *([v] for v in HOSTILE.values())]
    lists.append([str(uuid.uuid4()) for _ in range(10_001)])
    calls = [(task, *shape(ids)) for ids in lists]
    calls.append((task, [], {}))
    assert_refused(send_all(celery_app, calls), calls)
    assert_worker_alive(celery_app)


def test_a_plugin_batch_refuses_an_unknown_plugin_type(celery_app, unchanged_database):
    """`plugin_type` outside installation/mcp_server is refused whatever it looks like."""
    calls = [
        ("agent.plugins.check_batch", [value, [str(uuid.uuid4())]], {})
        for value in HOSTILE.values()
    ]
    assert_refused(send_all(celery_app, calls), calls)


def test_periodic_tasks_refuse_any_argument_and_run_nothing(celery_app, unchanged_database):
    """A periodic task takes no arguments: one sent with some is refused before it runs."""
    calls = [(task, ["x"], {}) for task in PERIODIC_TASKS]
    calls += [(task, [], {"tables": ["users"]}) for task in PERIODIC_TASKS]
    calls += [("agent.system.ping", [1], {})]
    assert_refused(send_all(celery_app, calls), calls)
    assert_worker_alive(celery_app)


@pytest.fixture
def small_payload_limit(monkeypatch, database_url):
    """AGENT_BENCHMARKS_MAX_PAYLOAD_BYTES at 1 MB, for the in-process worker."""
    from agent.core.settings import get_settings

    monkeypatch.setenv("AGENT_BENCHMARKS_MAX_PAYLOAD_BYTES", str(1 << 20))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def benchmark_calls() -> list[tuple[str, list, dict]]:
    good = '[{"package": "p"}]'
    ingest, path, alerts = (
        "agent.benchmarks.ingest",
        "agent.benchmarks.ingest_file",
        "agent.benchmarks.alerts",
    )
    refused = ("null", "number", "boolean", "nul", "surrogates", "huge")
    calls = [(ingest, [HOSTILE[k]], {}) for k in refused]
    calls += [(ingest, [good], {"format": v}) for v in HOSTILE.values() if v is not None]
    calls += [(ingest, [good], {"defaults": v}) for v in HOSTILE.values() if v not in (None, {})]
    not_text = [HOSTILE[k] for k in refused] + [HOSTILE[k] for k in ("list", "object", "deep")]
    calls += [(ingest, [good], {"defaults": {"package": v}}) for v in not_text]
    calls += [(ingest, [good], {"defaults": {"run_id": v}}) for v in not_text]
    calls += [(ingest, [good], {"defaults": {"evil": "x"}}), (ingest, [], {"formats": "csv"})]
    calls += [(path, [v], {}) for v in HOSTILE.values()]
    calls += [(path, ["/etc/passwd"], {}), (path, ["."], {}), (path, ["x" * 5000], {})]
    calls += [(alerts, [v], {}) for v in not_text if v is not None]
    limits = [None, True, "10", 4.5, [1], {"n": 1}, 0, -1, 10_001, 10**30, HOSTILE["sql"]]
    calls += [(alerts, [None, v], {}) for v in limits]
    return calls


def test_benchmark_tasks_refuse_hostile_arguments_and_write_nothing(
    celery_app, unchanged_database, small_payload_limit
):
    """Payload, format, defaults, path and alert arguments: refused, not read, not stored."""
    calls = benchmark_calls()
    assert_refused(send_all(celery_app, calls), calls)
    assert_worker_alive(celery_app)


def test_alerts_of_a_package_named_like_sql_or_shell_is_an_empty_list(
    celery_app, unchanged_database
):
    """A package name is a value, never SQL or a command: an unknown one has no alerts."""
    for name in (HOSTILE["sql"], HOSTILE["shell"], "%", "_"):
        assert celery_app.send_task("agent.benchmarks.alerts", args=[name]).get(timeout=30) == []


def hostile_payloads(package: str) -> dict[str, tuple[str, str]]:
    """Payload text shaped to hurt, and the status its ingest must end in."""
    row = {"package": package, "metric": "mean", "value": 1.5, "unit": "s"}
    row["timestamp"] = "2024-01-01T00:00:00Z"

    def rows(**fields):
        return json.dumps([{**row, **fields}])

    return {
        "sql": (rows(benchmark=HOSTILE["sql"]), "done"),
        "shell": (rows(benchmark=HOSTILE["shell"], testbed=HOSTILE["traversal"]), "done"),
        "escaped nul": (rows(benchmark="a\x00b"), "done"),
        "escaped surrogate": (rows(benchmark="\udcff"), "rejected"),
        "run_id an object": (
            json.dumps({"run": {"run_id": {"x": 1}}, "rows": [{**row, "benchmark": "b"}]}),
            "done",
        ),
        "deep": ('{"rows": [' + "[" * 100_000 + "]" * 100_000 + "]}", "rejected"),
        "sql as csv": (f"value,benchmark\n1,{HOSTILE['sql']}\n", "done"),
        "binary noise": (bytes(range(1, 256)).decode("latin-1"), "rejected"),
    }


@pytest.mark.parametrize("case", sorted(hostile_payloads("p")))
def test_hostile_benchmark_content_is_data_stored_quarantined_or_rejected(
    celery_app, celery_worker, case
):
    """Content is never executed: SQL and shell text is stored as text, the rest refused."""
    package = f"hostile-{uuid.uuid4().hex[:8]}"
    payload, status = hostile_payloads(package)[case]
    answer = celery_app.send_task("agent.benchmarks.ingest", args=[payload]).get(timeout=60)
    assert answer["status"] == status, answer
    with session_scope() as session:
        stored = session.scalars(
            text("SELECT benchmark FROM benchmarks WHERE package_name = :p"), {"p": package}
        ).all()
    if answer["status"] == "done":
        assert answer["accepted"] + answer["quarantined"] >= 1
        assert len(stored) == answer["accepted"]
    assert_worker_alive(celery_app)
