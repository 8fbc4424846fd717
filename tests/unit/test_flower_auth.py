import pytest

from agent.core.settings import get_settings
from agent.runtime import flower

FLOWER_ARGV = ["/venv/bin/celery", "-A", "agent", "flower", "--port=5555"]


@pytest.fixture
def no_flower_password(monkeypatch):
    monkeypatch.delenv("AGENT_FLOWER_PASSWORD", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_flower_without_any_authentication_refuses_to_start(no_flower_password):
    with pytest.raises(flower.FlowerAuthMissing, match="without authentication"):
        flower.require_auth(FLOWER_ARGV, {})


def test_flower_takes_basic_auth_from_the_agent_settings(monkeypatch):
    monkeypatch.setenv("AGENT_FLOWER_USER", "ops")
    monkeypatch.setenv("AGENT_FLOWER_PASSWORD", "s3cret")
    get_settings.cache_clear()
    environ: dict[str, str] = {}
    flower.require_auth(FLOWER_ARGV, environ)
    get_settings.cache_clear()
    assert environ["FLOWER_BASIC_AUTH"] == "ops:s3cret"


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        ([*FLOWER_ARGV, "--basic-auth=a:b"], {}),
        ([*FLOWER_ARGV, "--auth=.*@example.com"], {}),
        (FLOWER_ARGV, {"FLOWER_BASIC_AUTH": "a:b"}),
    ],
)
def test_flower_with_its_own_authentication_is_left_alone(no_flower_password, argv, environ):
    before = dict(environ)
    flower.require_auth(argv, environ)
    assert environ == before


def test_flower_started_as_a_python_module_is_recognised(no_flower_password):
    argv = ["/venv/lib/python3.11/site-packages/celery/__main__.py", "-A", "agent", "flower"]
    with pytest.raises(flower.FlowerAuthMissing):
        flower.require_auth(argv, {})


@pytest.fixture
def flower_password(monkeypatch):
    monkeypatch.setenv("AGENT_FLOWER_PASSWORD", "s3cret")
    get_settings.cache_clear()
    yield "s3cret"
    get_settings.cache_clear()


@pytest.mark.parametrize("command", ["worker", "beat", "inspect"])
def test_other_celery_commands_are_given_no_flower_credentials(flower_password, command):
    environ = {"PATH": "/usr/bin"}
    flower.require_auth(["/venv/bin/celery", "-A", "agent", command], environ)
    assert environ == {"PATH": "/usr/bin"}


def test_other_celery_commands_start_without_a_flower_password(no_flower_password):
    environ: dict[str, str] = {}
    flower.require_auth(["/venv/bin/celery", "-A", "agent", "worker"], environ)  # no refusal
    assert environ == {}
