import os
import stat
import subprocess
import sys

import pytest

from agent.cli import profile


def a_profile(tmp_path, pid=None, **changes):
    (tmp_path / "secret.key").write_text("generated-key\n")
    values = {
        "pid": os.getpid() if pid is None else pid,
        "data_dir": str(tmp_path),
        "database_url": "postgresql://postgres@/infra_agent?host=/data/postgres",
        "broker_url": "redis+socket:///data/redis/redis.sock",
        "result_backend": "redis+socket:///data/redis/redis.sock",
        "flower_url": "http://127.0.0.1:5555/",
        "flower_user": "admin",
        "flower_password_file": str(tmp_path / "flower-password"),
        "secret_key_file": str(tmp_path / "secret.key"),
    }
    return profile.Profile(**{**values, **changes})


def a_dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_profile_is_written_for_its_owner_only_and_read_back(tmp_path):
    path = profile.path_in(tmp_path)
    profile.write(path, a_profile(tmp_path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert profile.read(path) == a_profile(tmp_path)


def test_unset_variables_come_from_a_running_agents_profile_and_it_says_so(tmp_path):
    profile.write(profile.path_in(tmp_path), a_profile(tmp_path))
    environ = {"AGENT_BROKER_URL": "redis://elsewhere:6379/0"}
    said = profile.fill(environ, tmp_path)
    assert environ["AGENT_DATABASE_URL"] == a_profile(tmp_path).database_url
    assert environ["AGENT_BROKER_URL"] == "redis://elsewhere:6379/0"  # the environment wins
    assert environ["AGENT_SECRET_KEY"] == "generated-key"
    assert str(profile.path_in(tmp_path)) in said
    assert "AGENT_DATABASE_URL" in said
    assert "AGENT_BROKER_URL" not in said


def test_a_stale_profile_is_reported_and_never_used(tmp_path):
    profile.write(profile.path_in(tmp_path), a_profile(tmp_path, pid=a_dead_pid()))
    environ = {}
    said = profile.fill(environ, tmp_path)
    assert environ == {}
    assert "not running" in said


def test_a_configured_environment_ignores_the_profile(tmp_path):
    profile.write(profile.path_in(tmp_path), a_profile(tmp_path))
    environ = {"AGENT_DATABASE_URL": "postgresql://db/x", "AGENT_BROKER_URL": "redis://r/0"}
    assert profile.fill(environ, tmp_path) is None
    assert set(environ) == {"AGENT_DATABASE_URL", "AGENT_BROKER_URL"}


def test_removing_leaves_a_profile_another_agent_wrote(tmp_path):
    path = profile.path_in(tmp_path)
    profile.write(path, a_profile(tmp_path, pid=os.getpid() + 1))
    profile.remove(path, os.getpid())
    assert path.exists()
    profile.write(path, a_profile(tmp_path))
    profile.remove(path, os.getpid())
    assert not path.exists()


def test_env_exports_every_variable_and_reads_the_key_from_its_file(tmp_path):
    text = profile.exports(a_profile(tmp_path))
    assert "generated-key" not in text
    assert f'export AGENT_SECRET_KEY="$(cat {tmp_path / "secret.key"})"' in text
    environ = dict(
        line.removeprefix("export ").split("=", 1)
        for line in text.splitlines()
        if line.startswith("export AGENT_") and "SECRET" not in line
    )
    assert environ["AGENT_BROKER_URL"] == "redis+socket:///data/redis/redis.sock"
    assert environ["AGENT_DATABASE_URL"].strip("'") == a_profile(tmp_path).database_url


def test_an_unreadable_profile_is_a_clear_error(tmp_path):
    profile.path_in(tmp_path).write_text("not json")
    with pytest.raises(profile.ProfileError, match="not an infra-agent profile"):
        profile.read(profile.path_in(tmp_path))
