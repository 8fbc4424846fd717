"""Other apps triggering the agent: the client, a raw Redis message, progress and `send --wait`."""

import datetime as dt
import json
import re
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from sqlalchemy import delete

from agent.api import schemas
from agent.api.client import AgentClient
from agent.cli.commands import main
from agent.core.settings import get_settings
from models.agent import AgentLease
from models.session import session_scope
from tests.support.broker import redis_client

DOCS = Path(__file__).resolve().parents[2] / "docs"
TIMEOUT_S = 60


def result_errors(name, value):
    """What in `value` breaks the checked-in result schema of task `name`."""
    doc = json.loads((DOCS / "schemas" / f"{name}.json").read_text())
    validator = Draft202012Validator(schemas.part_schema(doc, "result"))
    return [error.message for error in validator.iter_errors(value)]


@pytest.fixture
def agent_client(celery_app, celery_worker):
    """A client on the test's Redis, with the workers' transport options (their key prefix)."""
    client = AgentClient(
        celery_app.conf.broker_url,
        celery_app.conf.result_backend,
        transport_options=celery_app.conf.broker_transport_options,
        result_transport_options=celery_app.conf.result_backend_transport_options,
    )
    yield client
    client.close()


@pytest.fixture
def no_sweep_lease(database_url):
    """The health sweep's lease gone, so a sweep now is not skipped for an earlier one."""
    with session_scope() as session:
        session.execute(delete(AgentLease).where(AgentLease.name == "health.sweep"))


def test_results_of_real_tasks_match_their_checked_in_schemas(
    agent_client, add_instance, closed_port, package
):
    instance = add_instance("tcp", port=closed_port)
    csv = f"package,benchmark,metric,value,unit,timestamp\n{package},parse,latency,1.5,ms,{NOW}\n"
    sent = {
        "agent.system.ping": agent_client.ping(),
        "agent.health.check_instance": agent_client.check_instance(instance),
        "agent.discovery.discover_instance": agent_client.discover_instance(uuid.uuid4()),
        "agent.plugins.check_installation": agent_client.check_installation(uuid.uuid4()),
        "agent.plugins.check_mcp_server": agent_client.check_mcp_server(uuid.uuid4()),
        "agent.benchmarks.ingest": agent_client.ingest(csv, format="csv"),
        "agent.benchmarks.alerts": agent_client.alerts(limit=5),
        "agent.housekeeping.expire_api_keys": agent_client.expire_api_keys(),
        "agent.housekeeping.prune_sessions": agent_client.prune_sessions(),
    }
    results = {name: job.get(timeout=TIMEOUT_S) for name, job in sent.items()}
    errors = {name: result_errors(name, value) for name, value in results.items()}
    assert errors == {name: [] for name in sent}
    assert results["agent.health.check_instance"]["check"]["error_class"] == "refused"
    assert results["agent.benchmarks.ingest"]["accepted"] == 1


def test_a_rejected_payload_and_an_unknown_instance_match_the_other_branch_of_their_schemas(
    agent_client,
):
    rejected = agent_client.ingest("not,a\nbenchmark", format="json").get(timeout=TIMEOUT_S)
    unknown = agent_client.check_instance(uuid.uuid4()).get(timeout=TIMEOUT_S)
    assert rejected["status"] == "rejected"
    assert unknown["status"] == "not_checked"
    assert result_errors("agent.benchmarks.ingest", rejected) == []
    assert result_errors("agent.health.check_instance", unknown) == []
    assert result_errors("agent.health.check_instance", {**unknown, "status": "x"}) != []


def test_a_task_refuses_bad_arguments_sent_by_the_client_with_a_clear_error(agent_client):
    with pytest.raises(Exception, match="instance_id must be a UUID"):
        agent_client.check_instance("'; DROP TABLE x; --").get(timeout=TIMEOUT_S)
    with pytest.raises(ValueError, match="unknown task"):
        agent_client.send("agent.health.no_such_task")


NOW = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def documented_message():
    """The JSON message of docs/client.md, the one a non-Python app pushes."""
    found = re.search(r"```json\n(\{\n  \"body\".*?)\n```", (DOCS / "client.md").read_text(), re.S)
    assert found, "docs/client.md has no message example"
    return found[1]


def test_a_raw_message_pushed_onto_the_redis_list_as_documented_is_run_by_a_worker(
    celery_app, celery_worker, add_instance, closed_port
):
    instance, task_id = add_instance("tcp", port=closed_port), str(uuid.uuid4())
    message = (
        documented_message()
        .replace("TASK_ID", task_id)
        .replace("DELIVERY_TAG", str(uuid.uuid4()))
        .replace("INSTANCE_ID", str(instance))
    )
    broker = redis_client(celery_app.conf.broker_url)
    prefix = celery_app.conf.broker_transport_options["global_keyprefix"]
    broker.lpush(f"{prefix}health", message)
    result_prefix = celery_app.conf.result_backend_transport_options.get("global_keyprefix", "")
    meta = wait_for_result(broker, f"{result_prefix}celery-task-meta-{task_id}")
    assert meta["status"] == "SUCCESS", meta
    assert meta["result"]["instance_id"] == str(instance)
    assert meta["result"]["check"]["error_class"] == "refused"
    assert result_errors("agent.health.check_instance", meta["result"]) == []


def wait_for_result(client, key):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        raw = client.get(key)
        if raw and json.loads(raw)["status"] in ("SUCCESS", "FAILURE"):
            return json.loads(raw)
        time.sleep(0.1)
    raise AssertionError(f"no result under {key}")


@pytest.fixture
def file_root(tmp_path, monkeypatch, database_url):
    """AGENT_BENCHMARKS_FILE_ROOT in a fresh directory, ingests in small batches."""
    monkeypatch.setenv("AGENT_BENCHMARKS_FILE_ROOT", str(tmp_path))
    monkeypatch.setenv("AGENT_BENCHMARKS_BATCH_ROWS", "200")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.timeout(180)
def test_a_big_ingest_reports_its_progress_in_bytes_while_the_worker_reads_it(
    agent_client, file_root, package
):
    rows = [f"{package},b{n % 50},latency,{1 + n % 7},ms,{NOW}" for n in range(30_000)]
    run = file_root / "big.csv"
    run.write_text("package,benchmark,metric,value,unit,timestamp\n" + "\n".join(rows) + "\n")
    seen = []
    result = agent_client.ingest_file("big.csv", format="csv").wait(150, seen.append)
    assert result["status"] == "done"
    assert seen, "no PROGRESS state was seen"
    assert {p["unit"] for p in seen} == {"bytes"}
    assert {p["total"] for p in seen} == {run.stat().st_size}
    assert any(0 < p["done"] < p["total"] for p in seen)
    assert result_errors("agent.benchmarks.ingest_file", result) == []


@pytest.mark.timeout(120)
def test_send_wait_follows_a_sweep_through_its_batches_with_a_progress_bar(
    celery_app, celery_worker, add_instance, closed_port, no_sweep_lease, monkeypatch
):
    monkeypatch.setenv("AGENT_HEALTH_BATCH_SIZE", "2")
    get_settings.cache_clear()
    for _ in range(5):
        add_instance("tcp", port=closed_port)
    done = CliRunner().invoke(main, ["send", "agent.health.sweep", "--wait", "--timeout", "90"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["dispatched"] >= 5
    assert len(result["batch_ids"]) == result["batches"] >= 3
    assert f"{result['dispatched']}/{result['dispatched']} instances" in done.stderr
    assert result_errors("agent.health.sweep", result) == []


def test_send_without_wait_prints_the_task_id_and_refuses_unknown_tasks(celery_app, celery_worker):
    sent = CliRunner().invoke(main, ["send", "agent.system.ping"])
    assert sent.exit_code == 0, sent.output
    assert celery_app.AsyncResult(sent.stdout.strip()).get(timeout=TIMEOUT_S)["pong"] is True
    unknown = CliRunner().invoke(main, ["send", "agent.nope"])
    assert unknown.exit_code == 2
    assert "unknown task" in unknown.output


@pytest.mark.timeout(120)
def test_a_health_batch_reports_the_instances_it_has_checked_while_it_runs(
    agent_client, add_instance, silent_port, monkeypatch
):
    monkeypatch.setenv("AGENT_HEALTH_CONCURRENCY", "1")
    monkeypatch.setenv("AGENT_HEALTH_TIMEOUT_S", "0.7")
    get_settings.cache_clear()
    config = {"read_banner": True}  # a silent server makes each check wait for its timeout
    ids = [str(add_instance("tcp", port=silent_port, config=config)) for _ in range(4)]
    seen = []
    batch = agent_client.send("agent.health.check_batch", instance_ids=ids)
    result = batch.wait(90, seen.append)
    assert result["checked"] == 4
    assert {(p["total"], p["unit"]) for p in seen} == {(4, "instances")}
    assert any(0 < p["done"] < 4 for p in seen)
    assert result_errors("agent.health.check_batch", result) == []


def test_real_plugin_checks_match_their_schemas(
    agent_client,
    install,
    plugin_services,
    add_mcp_server,
    mcp_servers,
):
    installation = agent_client.check_installation(install(plugin_services.url("open")))
    server = agent_client.check_mcp_server(add_mcp_server(mcp_servers.http_url))
    summaries = {
        "agent.plugins.check_installation": installation.get(timeout=TIMEOUT_S),
        "agent.plugins.check_mcp_server": server.get(timeout=TIMEOUT_S),
    }
    assert [s["health_status"] for s in summaries.values()] == ["healthy", "healthy"]
    assert summaries["agent.plugins.check_mcp_server"]["tools"]["added"] == 2
    assert {name: result_errors(name, s) for name, s in summaries.items()} == {
        name: [] for name in summaries
    }
