"""Long tasks against the visibility timeout.

Redis hands an unacknowledged message to another worker once the visibility timeout has
passed, running or not. So every time limit must stay below it: the agent refuses to start
otherwise, and a task that runs long within the limits is executed once.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import BIN, agent_env, wait_until
from tests.support.stack import made, received, report
from tests.support.workers import running_worker

pytestmark = pytest.mark.e2e

REFUSAL = "must be below the broker visibility timeout 60s"
TOO_LONG = {"AGENT_VISIBILITY_TIMEOUT_S": "60", "AGENT_TASK_SOFT_TIME_LIMIT_S": "30"}
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "agent", "worker", "--pool", "solo"]
STARTS = {
    "celery worker, limit from the environment": (CELERY_WORKER, {"AGENT_TASK_TIME_LIMIT_S": "90"}),
    "celery worker --time-limit": ([*CELERY_WORKER, "--time-limit", "90"], {}),
    "infra-agent up": ([str(BIN / "infra-agent"), "up"], {"AGENT_TASK_TIME_LIMIT_S": "60"}),
}
# A check that takes 45 s of a 60 s visibility timeout, within a 55 s limit.
LONG_CHECK = {
    "health_timeout_s": "45",
    "visibility_timeout_s": "60",
    "task_soft_time_limit_s": "52",
    "task_time_limit_s": "55",
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", STARTS)
def test_the_agent_refuses_to_start_with_a_time_limit_not_below_the_visibility_timeout(
    how, tmp_path, broker
):
    """A worker (time limit from the environment or from `--time-limit`) and `infra-agent up`
    exit at start-up, before consuming anything, and say which limit is wrong and why."""
    args, limits = STARTS[how]
    env = agent_env(
        AGENT_BROKER_URL=broker.url,
        AGENT_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        AGENT_DATA_DIR=str(tmp_path),
        **TOO_LONG,
        **limits,
    )
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert REFUSAL in done.stderr
    assert "a running task would be delivered a second time" in done.stderr
    assert broker.client().keys("_kombu.binding.*") == []  # it never declared a queue


@pytest.mark.timeout(180)
def test_a_long_check_is_run_once_while_a_second_worker_looks_for_abandoned_messages(
    fault_db, broker, silent_listener, tmp_path
):
    """A check that runs for three quarters of the visibility timeout, with a second worker
    scanning Redis for abandoned messages every 6 s all along, is received by one worker,
    connects once and writes one history row: a running task is not handed out again."""
    fault_db.add_tcp_instances(1, silent_listener.ports, read_banner=True)
    instance = fault_db.value("SELECT id::text FROM infrastructure_instances")
    settings = {"database_url": fault_db.url, **LONG_CHECK}
    with (
        running_worker(made(tmp_path / "one"), broker.url, **settings) as one,
        running_worker(made(tmp_path / "two"), broker.url, **settings) as two,
    ):
        task = one.client.send_task("agent.health.check_instance", args=[instance])
        result = task.get(timeout=120)
        report("long check (45 s timeout) ran", [float(result["check"]["latency_ms"]) / 1000])
        wait_until(lambda: fault_db.history_rows_per_instance(), 10, "history")
        assert received([one.log, two.log], task.id) == 1
    assert result["check"]["error_class"] == "timeout"
    assert silent_listener.accepted == 1
    assert fault_db.history_rows_per_instance() == {1: 1}
