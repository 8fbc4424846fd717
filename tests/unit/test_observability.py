import io
import json
import logging
import os
import threading
import time

import pytest

from agent.core import logs
from agent.core.concurrency import each
from agent.runtime import liveness, metrics


@pytest.fixture
def json_lines():
    """A logger writing JSON lines to a buffer, and a function returning them parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"test.json.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.end_task()


@pytest.fixture
def recorded(tmp_path):
    """Metrics enabled in a fresh directory, and a reader of the summed samples."""
    found = metrics.enable(tmp_path)
    registry = metrics.collecting_registry(tmp_path)
    yield found, lambda name, **labels: registry.get_sample_value(name, labels) or 0.0
    metrics.disable()


def test_lines_logged_in_a_batchs_threads_carry_the_task_and_their_instance(json_lines):
    logger, lines = json_lines
    logs.start_task("task-1", "agent.health.check_batch")
    threads = set()

    def work(item):
        threads.add(threading.get_ident())
        logger.info("checking %s", item)
        return item.upper()

    done = each(work, ["a", "b", "c"], 3, lambda item: {"instance_id": f"id-{item}"})
    assert done == ["A", "B", "C"]
    assert threading.get_ident() not in threads
    found = {line["message"]: line for line in lines()}
    for item in "abc":
        line = found[f"checking {item}"]
        assert (line["task_id"], line["instance_id"]) == ("task-1", f"id-{item}")


def test_a_line_logged_after_a_task_carries_no_task_id(json_lines):
    logger, lines = json_lines
    logs.start_task("task-2", "agent.system.ping")
    logs.end_task()
    logger.info("between tasks")
    assert "task_id" not in lines()[0]


def test_a_json_line_has_its_level_logger_and_one_line_exception_with_secrets_scrubbed(
    json_lines,
):
    logger, lines = json_lines
    try:
        raise RuntimeError("login failed: password=hunter22")
    except RuntimeError:
        logger.exception("connect token: abc123")
    [line] = lines()
    assert (line["level"], line["logger"]) == ("ERROR", logger.name)
    assert line["message"] == "connect token: ***"
    assert "hunter22" not in line["exception"]
    assert "RuntimeError" in line["exception"]


def test_task_results_move_the_metrics_of_their_job(recorded):
    _, sample = recorded
    metrics.task_succeeded(
        "agent.discovery.discover_batch",
        {"discovered": 2, "failed": 1, "new": 3, "updated": 1, "missing": 2},
        {},
    )
    metrics.task_succeeded(
        "agent.plugins.check_batch",
        {"by_health": {"healthy": 4, "unreachable": 1}},
        {"plugin_type": "installation"},
    )
    metrics.task_succeeded(
        "agent.housekeeping.apply_retention",
        {"logs": {"deleted": {"audit_logs": 7}}, "dropped": {"benchmarks": ["p1", "p2"]}},
        {},
    )
    metrics.task_succeeded("agent.housekeeping.expire_api_keys", {"deactivated": 5}, {})
    assert sample("agent_discoveries_total", status="failed") == 1
    assert sample("agent_discovery_changes_total", change="added") == 3
    assert sample("agent_discovery_changes_total", change="removed") == 2
    assert sample("agent_plugin_checks_total", plugin_type="installation", health="healthy") == 4
    assert sample("agent_pruned_rows_total", table="audit_logs") == 7
    assert sample("agent_dropped_partitions_total", series="benchmarks") == 2
    assert sample("agent_expired_api_keys_total") == 5


def test_a_result_of_a_task_without_metrics_or_a_skipped_run_records_nothing(recorded):
    _, sample = recorded
    metrics.task_succeeded("agent.system.ping", {"pong": True}, {})
    metrics.task_succeeded("agent.discovery.discover_instance", {"status": "not_discovered"}, {})
    assert sample("agent_discoveries_total", status="discovered") == 0
    assert sample("agent_discoveries_total", status="failed") == 0


def test_a_heartbeat_older_than_the_limit_or_missing_fails_and_a_fresh_one_passes(tmp_path):
    path = tmp_path / "worker.alive"
    assert liveness.verdict(path, 5)[0] is False
    liveness.touch(path)
    assert liveness.verdict(path, 5)[0] is True
    stale = time.time() - 6
    os.utime(path, (stale, stale))
    alive, reason = liveness.verdict(path, 5)
    assert alive is False
    assert "stopped" in reason
