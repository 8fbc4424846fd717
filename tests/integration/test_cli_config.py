"""The CLI without configuration: clear one-line refusals, never a silent default."""

import subprocess

from tests.support.processes import BIN, agent_env


def infra_agent(args, tmp_path, **env):
    environment = agent_env(AGENT_DATA_DIR=str(tmp_path / "no-agent-here"), **env)
    return subprocess.run(
        [str(BIN / "infra-agent"), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_without_a_broker_refuses_in_one_line(tmp_path):
    done = infra_agent(["send", "agent.system.ping"], tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "infra-agent: AGENT_BROKER_URL is not set (run `infra-agent up` for the embedded default)"
    ]


def test_wait_without_a_result_backend_refuses_before_sending(tmp_path):
    # RabbitMQ keeps no results; with no AGENT_RESULT_BACKEND there is nothing to wait on.
    amqp = "amqp://guest:guest@127.0.0.1:1//"  # port 1: sending would fail differently
    done = infra_agent(["send", "agent.system.ping", "--wait"], tmp_path, AGENT_BROKER_URL=amqp)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no result backend" in lines[0]


def test_env_without_a_running_agent_says_how_to_start_one(tmp_path):
    done = infra_agent(["env"], tmp_path)
    assert done.returncode == 2
    assert "infra-agent up" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_without_a_broker_refuses_to_start(tmp_path):
    celery = [str(BIN / "celery"), "-A", "agent", "worker", "--loglevel", "WARNING"]
    done = subprocess.run(
        celery, env=agent_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "AGENT_BROKER_URL is not set" in done.stderr
