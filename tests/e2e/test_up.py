import httpx
import psutil
import psycopg
import pytest

from tests.e2e.processes import BIN, agent_env, interrupt, kill_group, start, wait_until
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def run_up(data_dir, port, log):
    env = agent_env(AGENT_DATA_DIR=str(data_dir), AGENT_FLOWER_PORT=str(port))
    return start([str(BIN / "infra-agent"), "up"], env, log)


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


def bring_up(data_dir, tmp_path, name):
    port = free_port()
    proc = run_up(data_dir, port, tmp_path / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(url).status_code == 401, 120, "Flower behind auth")
    password = (data_dir / "flower-password").read_text().strip()
    wait_until(lambda: workers_seen_by_flower(url, password), 120, "a worker in Flower")
    return proc, url, password


def test_up_runs_worker_beat_and_flower_on_the_embedded_default_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "data"
    proc, url, password = bring_up(data_dir, tmp_path, "first")
    try:
        assert httpx.get(url).status_code == 401
        assert password in (tmp_path / "first.log").read_text()  # the banner tells the operator
        write_marker(data_dir)
        assert interrupt(proc) == 0
    finally:
        kill_group(proc)
    wait_until(lambda: not processes_using(data_dir), 30, "every child process to exit")
    log = (tmp_path / "first.log").read_text()
    assert "beat" in log
    assert "agent@" in log


def test_a_second_up_reuses_the_data_and_credentials(tmp_path):
    data_dir = tmp_path / "data"
    proc, _, first_password = bring_up(data_dir, tmp_path, "first")
    try:
        write_marker(data_dir)
        assert interrupt(proc) == 0
    finally:
        kill_group(proc)
    proc, _, second_password = bring_up(data_dir, tmp_path, "second")
    try:
        assert second_password == first_password
        assert read_marker(data_dir) == 1
        assert interrupt(proc) == 0
    finally:
        kill_group(proc)
