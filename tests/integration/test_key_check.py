"""One key, checked (issue 15): the worker's key against the fingerprints in `agent_keys`."""

import json
import re
import subprocess
import sys

import pytest
from sqlalchemy import delete, select

from agent.core.credentials import SecretResolver, generate_key
from agent.core.settings import ConfigError, load_settings
from agent.runtime.key_check import check_key, rotate_references
from models.agent import AgentKey
from models.infrastructure import InfrastructureInstance
from models.session import session_scope
from tests.support.processes import BIN, agent_env

pytestmark = pytest.mark.timeout(120)

SECRET = "canary-key-check-5e1b"


def settings_with(key: str, *previous: str):
    return load_settings(secret_key=key, secret_previous_keys=previous)


def recorded() -> set[str]:
    with session_scope() as session:
        return set(session.scalars(select(AgentKey.fingerprint)))


def test_the_first_worker_records_its_key_and_the_same_key_starts_again(database_url):
    key = generate_key()
    check_key(settings_with(key))
    check_key(settings_with(key))
    assert recorded() == {SecretResolver(key).fingerprint()}


def test_a_worker_with_another_key_refuses_to_start_naming_the_fix(database_url):
    check_key(settings_with(generate_key()))
    other = generate_key()
    with pytest.raises(ConfigError, match="AGENT_SECRET_PREVIOUS_KEYS") as caught:
        check_key(settings_with(other))
    assert other not in str(caught.value)
    assert len(recorded()) == 1


def test_rotation_accepts_the_new_key_then_re_encrypts_and_retires_the_old(
    database_url, add_instance
):
    old, new = generate_key(), generate_key()
    check_key(settings_with(old))
    reference = SecretResolver(old).encrypt(SECRET)
    instance_id = add_instance("ssh", config={"username": "u", "password": reference})

    check_key(settings_with(new, old))  # every worker gets the new key, the old one as previous
    changed = rotate_references(settings_with(new, old))

    assert changed["infrastructure_instances.connection_config"] >= 1
    with session_scope() as session:
        config = session.get(InfrastructureInstance, instance_id).connection_config
    assert config["username"] == "u"
    assert SecretResolver(new).resolve(config["password"]) == SECRET
    assert recorded() == {SecretResolver(new).fingerprint()}
    with pytest.raises(ConfigError, match="does not match"):
        check_key(settings_with(old))


def test_a_real_worker_with_a_foreign_key_does_not_start(database_url, tmp_path):
    check_key(settings_with(generate_key()))
    env = agent_env(
        AGENT_DATABASE_URL=database_url,
        AGENT_BROKER_URL="redis://127.0.0.1:1/0",
        AGENT_SECRET_KEY=generate_key(),
        AGENT_DATA_DIR=str(tmp_path),
    )
    args = [sys.executable, "-m", "celery", "-A", "agent", "worker", "--pool", "solo"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "does not match the key the other workers use" in done.stdout + done.stderr


@pytest.fixture(autouse=True)
def _no_keys_left(database_url):
    yield
    with session_scope() as session:
        session.execute(delete(AgentKey))


def test_infra_agent_secret_rotate_re_encrypts_and_says_how_many_rows(database_url, add_instance):
    old, new = generate_key(), generate_key()
    instance_id = add_instance("ssh", config={"password": SecretResolver(old).encrypt(SECRET)})
    env = {
        "AGENT_DATABASE_URL": database_url,
        "AGENT_SECRET_KEY": new,
        "AGENT_SECRET_PREVIOUS_KEYS": json.dumps([old]),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [str(BIN / "infra-agent"), "secret", "rotate"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert re.search(r"infrastructure_instances.connection_config: [1-9]\d* rows", done.stdout)
    for secret in (old, new, SECRET):
        assert secret not in done.stdout + done.stderr
    with session_scope() as session:
        config = session.get(InfrastructureInstance, instance_id).connection_config
    assert SecretResolver(new).resolve(config["password"]) == SECRET
