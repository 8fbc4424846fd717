import json
import re

import httpx
import psutil
import psycopg
import pytest

import beat_schedule
from agent.core.settings import Settings
from tests.support.network import free_port
from tests.support.processes import BIN, agent_env, interrupt, kill_group, start, wait_until

pytestmark = pytest.mark.timeout(300)


# Every periodic job at its shortest interval, so each one runs within the test.
EVERY_JOB_SOON = {
    f"AGENT_{entry['every'].upper()}": str(Settings.model_fields[entry["every"]].metadata[0].ge)
    for entry in beat_schedule.SCHEDULE.values()
}
BROKEN = re.compile(r"Traceback|Couldn.t apply scheduled task|Pool callback raised|ERROR/")


def run_up(data_dir, port, log, **env):
    env = agent_env(AGENT_DATA_DIR=str(data_dir), AGENT_FLOWER_PORT=str(port), **env)
    return start([str(BIN / "infra-agent"), "up"], env, log)


def succeeded_in_flower(url, password, task):
    response = httpx.get(
        f"{url}/api/tasks",
        params={"taskname": task, "state": "SUCCESS"},
        auth=("admin", password),
        timeout=10,
    )
    return response.status_code == 200 and response.json()


def workers_seen_by_flower(url, password):
    response = httpx.get(f"{url}/api/workers?refresh=1", auth=("admin", password), timeout=10)
    return response.status_code == 200 and response.json()


def processes_using(path):
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(path) in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def write_marker(data_dir):
    with psycopg.connect(
        host=str(data_dir / "postgres"), dbname="infra_agent", user="postgres", autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS up_marker (seen int)")
        conn.execute("INSERT INTO up_marker VALUES (1)")


def read_marker(data_dir):
    with psycopg.connect(
        host=str(data_dir / "postgres"), dbname="infra_agent", user="postgres"
    ) as conn:
        return conn.execute("SELECT count(*) FROM up_marker").fetchone()[0]


def bring_up(data_dir, tmp_path, name, **env):
    port = free_port()
    proc = run_up(data_dir, port, tmp_path / f"{name}.log", **env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(url).status_code == 401, 120, "Flower behind auth")
    password = (data_dir / "flower-password").read_text().strip()
    wait_until(lambda: workers_seen_by_flower(url, password), 120, "a worker in Flower")
    return proc, url, password


def test_up_runs_every_periodic_job_on_the_embedded_default_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "data"
    proc, url, password = bring_up(data_dir, tmp_path, "first", **EVERY_JOB_SOON)
    try:
        assert httpx.get(url).status_code == 401
        assert password in (tmp_path / "first.log").read_text()  # the banner tells the operator
        for entry in beat_schedule.SCHEDULE.values():
            # Dispatched by beat, consumed by the worker, its result stored and seen by Flower.
            wait_until(
                lambda task=entry["task"]: succeeded_in_flower(url, password, task),
                180,
                f"a succeeded {entry['task']}",
            )
        write_marker(data_dir)
        assert interrupt(proc) == 0
    finally:
        kill_group(proc)
    wait_until(lambda: not processes_using(data_dir), 30, "every child process to exit")
    log = (tmp_path / "first.log").read_text()
    assert [line for line in log.splitlines() if BROKEN.search(line)] == []
    assert not (data_dir / "agent.json").exists(), "the connection profile outlived the agent"


def broker_in_profile(data_dir):
    return json.loads((data_dir / "agent.json").read_text())["broker_url"]


def test_a_second_up_reuses_the_data_credentials_and_broker_address(tmp_path):
    data_dir = tmp_path / "data"
    proc, _, first_password = bring_up(data_dir, tmp_path, "first")
    try:
        write_marker(data_dir)
        first_broker = broker_in_profile(data_dir)
        assert interrupt(proc) == 0
    finally:
        kill_group(proc)
    proc, _, second_password = bring_up(data_dir, tmp_path, "second")
    try:
        assert second_password == first_password
        assert read_marker(data_dir) == 1
        # The embedded Redis listens where it did: other tools configured once keep working.
        assert broker_in_profile(data_dir) == first_broker
        assert first_broker == f"redis+socket://{data_dir / 'redis' / 'redis.sock'}"
        assert interrupt(proc) == 0
    finally:
        kill_group(proc)
