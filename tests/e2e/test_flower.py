import sys

import httpx

from tests.support.network import free_port
from tests.support.processes import agent_env, kill_group, start, wait_until


def flower_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agent",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
    ]


def test_flower_without_a_password_refuses_to_start(redis_url, tmp_path):
    log = tmp_path / "flower.log"
    proc = start(flower_command(free_port()), agent_env(AGENT_BROKER_URL=redis_url), log)
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        kill_group(proc)
    assert "without authentication" in log.read_text()


def test_flower_answers_only_with_the_configured_credentials(redis_url, tmp_path):
    port = free_port()
    env = agent_env(AGENT_BROKER_URL=redis_url, AGENT_FLOWER_PASSWORD="flower-canary-7")
    proc = start(flower_command(port), env, tmp_path / "flower.log")
    url = f"http://127.0.0.1:{port}"
    try:
        status = wait_until(lambda: httpx.get(url).status_code, 60, "Flower to listen")
        assert status == 401
        assert httpx.get(f"{url}/api/tasks").status_code == 401
        assert httpx.get(url, auth=("admin", "wrong")).status_code == 401
        assert httpx.get(url, auth=("admin", "flower-canary-7")).status_code == 200
    finally:
        kill_group(proc)
    assert "flower-canary-7" not in (tmp_path / "flower.log").read_text()
