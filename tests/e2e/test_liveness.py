import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.support.processes import BIN, agent_env, wait_until
from tests.support.workers import listening_ports, private_redis, running_worker

pytestmark = pytest.mark.timeout(240)

MAX_AGE_S = 3.0
INTERVAL_S = 0.5
# File times come from the kernel's coarse clock, a tick behind time.time().
TICK_S = 0.05
# The probe reports ages to a tenth of a second.
ROUNDING_S = 0.05
# How long the worker may go on touching the file after SIGSTOP was sent: the stop is
# delivered at once, this only covers a touch already under way.
STOPPING_S = 1.0


def alive(heartbeat, max_age_s: float = MAX_AGE_S) -> subprocess.CompletedProcess:
    env = agent_env(AGENT_LIVENESS_FILE=str(heartbeat), AGENT_LIVENESS_MAX_AGE_S=str(max_age_s))
    return subprocess.run(
        [BIN / "infra-agent", "worker-alive"], env=env, capture_output=True, text=True, timeout=30
    )


@dataclass(frozen=True)
class Probe:
    """One run of the liveness probe: its wall-clock start and end, verdict, and the age it read."""

    started: float
    ended: float
    passed: bool
    age_s: float | None


def probe(heartbeat) -> Probe:
    """Run the probe once; the age it read is the one its message reports."""
    started = time.time()
    run = alive(heartbeat)
    reported = re.search(r"heartbeat (\d+\.\d)s old", run.stdout + run.stderr)
    age_s = float(reported.group(1)) if reported else None
    return Probe(started, time.time(), run.returncode == 0, age_s)


def probe_until_dead(heartbeat) -> list[Probe]:
    """Run the probe back to back until it fails; every run."""
    probes: list[Probe] = []

    def dead() -> bool:
        probes.append(probe(heartbeat))
        return not probes[-1].passed

    wait_until(dead, 60, "the probe to fail")
    return probes


def assert_judged_by_age(probes: list[Probe], touched: float) -> None:
    """Each run passed exactly when the age it read was within the limit, and read a true age.

    A run on a busy machine may take seconds to start; what it reports is the age at the
    moment it read the file, at least the time from the last touch to the run's start.
    """
    for run in probes:
        assert run.age_s is not None, run
        if abs(run.age_s - MAX_AGE_S) > ROUNDING_S:  # else too close to call at one decimal
            assert run.passed == (run.age_s < MAX_AGE_S), run
        assert run.age_s >= run.started - touched - TICK_S - ROUNDING_S, (run, touched)


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


def test_the_probe_fails_once_the_heartbeat_is_older_than_its_limit_and_not_before(tmp_path):
    # Ages far from the limit, since the probe may take seconds to start on a busy machine:
    # a file older than the limit when the probe starts is older still when it reads it.
    heartbeat, now = tmp_path / "worker.alive", time.time()
    heartbeat.touch()
    os.utime(heartbeat, (now - 150, now - 150))
    assert alive(heartbeat, max_age_s=100).returncode == 1
    os.utime(heartbeat, (now, now))
    assert alive(heartbeat, max_age_s=3600).returncode == 0


def test_a_frozen_worker_fails_the_probe_once_its_heartbeat_is_too_old_and_passes_when_thawed(
    live_worker,
):
    assert alive(live_worker.heartbeat).returncode == 0
    os.kill(live_worker.proc.pid, signal.SIGSTOP)
    stopped = time.time()
    try:
        probes = probe_until_dead(live_worker.heartbeat)
        touched = live_worker.heartbeat.stat().st_mtime
        assert "the worker stopped" in alive(live_worker.heartbeat).stderr
    finally:
        os.kill(live_worker.proc.pid, signal.SIGCONT)
    assert touched <= stopped + STOPPING_S  # a frozen worker vouches for nothing
    assert_judged_by_age(probes, touched)
    wait_until(lambda: alive(live_worker.heartbeat).returncode == 0, 30, "the probe to pass")


def test_a_worker_that_lost_its_broker_fails_the_probe_while_its_process_lives(live_worker, broker):
    assert alive(live_worker.heartbeat).returncode == 0
    broker[1].terminate()
    broker[1].wait(timeout=20)
    probes = probe_until_dead(live_worker.heartbeat)
    assert_judged_by_age(probes, live_worker.heartbeat.stat().st_mtime)
    assert live_worker.proc.poll() is None


def test_a_worker_that_shut_down_fails_the_probe(live_worker):
    assert alive(live_worker.heartbeat).returncode == 0
    live_worker.proc.terminate()
    live_worker.proc.wait(timeout=60)
    assert alive(live_worker.heartbeat).returncode == 1


def test_with_metrics_disabled_the_worker_listens_on_no_port(live_worker):
    assert listening_ports(live_worker.proc.pid) == set()
