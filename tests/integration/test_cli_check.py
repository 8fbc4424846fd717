import os
import subprocess

from tests.support.processes import BIN


def run_check(instance_id, database_url, key, command="check"):
    env = {"AGENT_DATABASE_URL": database_url, "AGENT_SECRET_KEY": key, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(BIN / "infra-agent"), command, str(instance_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_infra_agent_check_prints_the_instance_status_and_facts(
    add_instance, sshd, ssh_config, database_url
):
    config = {**ssh_config, "host_key": sshd.host_key}
    instance_id = add_instance("ssh", sshd.host, sshd.port, config)
    done = run_check(instance_id, database_url, os.environ["AGENT_SECRET_KEY"])
    assert done.returncode == 0, done.stderr
    assert "unknown -> online" in done.stdout
    assert "ssh ok in" in done.stdout
    assert "os_type: linux" in done.stdout


def test_infra_agent_check_refuses_a_malformed_id_with_one_clear_line(database_url):
    done = run_check("12; rm -rf /", database_url, "")
    assert done.returncode == 2
    assert done.stderr.strip() == "infra-agent: instance_id must be a UUID string"


def test_infra_agent_discover_prints_every_container_of_a_podman_host(
    add_instance, podman_socket, podman_containers, database_url
):
    config = {"docker_host": f"unix://{podman_socket}"}
    instance_id = add_instance("docker_api", config=config)
    done = run_check(instance_id, database_url, os.environ["AGENT_SECRET_KEY"], "discover")
    assert done.returncode == 0, done.stderr
    assert f"({instance_id}): discovered" in done.stdout
    assert "agent-test-running" in done.stdout
    assert "agent-test-exited-3" in done.stdout


def test_infra_agent_discover_of_an_unreachable_engine_says_why_and_fails(
    add_instance, database_url
):
    config = {"docker_host": "unix:///nonexistent/podman.sock"}
    instance_id = add_instance("docker_api", config=config)
    done = run_check(instance_id, database_url, os.environ["AGENT_SECRET_KEY"], "discover")
    assert done.returncode == 1
    assert f"({instance_id}): failed" in done.stdout
    assert "no services recorded" in done.stdout
