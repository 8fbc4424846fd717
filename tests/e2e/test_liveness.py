import os
import signal
import subprocess
import time

import pytest

from tests.e2e.processes import BIN, agent_env, wait_until
from tests.e2e.workers import listening_ports, private_redis, running_worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MAX_AGE_S = 3.0
INTERVAL_S = 0.5
# The probe must fail within the limit plus one heartbeat interval and a poll's slack.
FAILS_WITHIN_S = MAX_AGE_S + INTERVAL_S + 1.5


def alive(heartbeat) -> subprocess.CompletedProcess:
    env = agent_env(AGENT_LIVENESS_FILE=str(heartbeat), AGENT_LIVENESS_MAX_AGE_S=str(MAX_AGE_S))
    return subprocess.run(
        [BIN / "infra-agent", "worker-alive"], env=env, capture_output=True, text=True, timeout=30
    )


def seconds_until_dead(heartbeat) -> float:
    started = time.monotonic()
    wait_until(lambda: alive(heartbeat).returncode == 1, 30, "the probe to fail")
    return time.monotonic() - started


@pytest.fixture
def broker(tmp_path):
    with private_redis() as server:
        yield server


@pytest.fixture
def live_worker(database_url, broker, tmp_path):
    """A worker with a fast heartbeat and metrics left disabled."""
    with running_worker(
        tmp_path,
        broker[0],
        database_url=database_url,
        liveness_interval_s=str(INTERVAL_S),
        liveness_max_age_s=str(MAX_AGE_S),
    ) as worker:
        yield worker


def test_without_a_worker_the_liveness_probe_fails(tmp_path):
    probe = alive(tmp_path / "worker.alive")
    assert probe.returncode == 1
    assert "no heartbeat" in probe.stderr


def test_a_frozen_worker_fails_the_probe_within_the_limit_and_passes_again_when_thawed(
    live_worker,
):
    assert alive(live_worker.heartbeat).returncode == 0
    os.kill(live_worker.proc.pid, signal.SIGSTOP)
    try:
        assert seconds_until_dead(live_worker.heartbeat) <= FAILS_WITHIN_S
        assert "the worker stopped" in alive(live_worker.heartbeat).stderr
    finally:
        os.kill(live_worker.proc.pid, signal.SIGCONT)
    wait_until(lambda: alive(live_worker.heartbeat).returncode == 0, 30, "the probe to pass")


def test_a_worker_that_lost_its_broker_fails_the_probe_while_its_process_lives(live_worker, broker):
    assert alive(live_worker.heartbeat).returncode == 0
    broker[1].terminate()
    broker[1].wait(timeout=20)
    assert seconds_until_dead(live_worker.heartbeat) <= FAILS_WITHIN_S
    assert live_worker.proc.poll() is None


def test_a_worker_that_shut_down_fails_the_probe(live_worker):
    assert alive(live_worker.heartbeat).returncode == 0
    live_worker.proc.terminate()
    live_worker.proc.wait(timeout=60)
    assert alive(live_worker.heartbeat).returncode == 1


def test_with_metrics_disabled_the_worker_listens_on_no_port(live_worker):
    assert listening_ports(live_worker.proc.pid) == set()
