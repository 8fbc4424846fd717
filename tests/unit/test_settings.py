import pytest

from agent.core.settings import (
    ConfigError,
    Settings,
    check_time_limits,
    load_settings,
    to_sqlalchemy_url,
)


def test_time_limits_at_or_above_the_visibility_timeout_are_refused():
    with pytest.raises(ConfigError, match="visibility timeout"):
        load_settings(task_soft_time_limit_s=100, task_time_limit_s=3600, visibility_timeout_s=3600)


def test_a_configuration_error_never_echoes_the_values_given(monkeypatch):
    monkeypatch.setenv("AGENT_FLOWER_PASSWORD", "canary-9f2c")
    monkeypatch.setenv("AGENT_WORKER_CONCURRENCY", "zero")
    with pytest.raises(ConfigError, match="AGENT_WORKER_CONCURRENCY") as caught:
        load_settings()
    assert "canary-9f2c" not in str(caught.value)
    assert "zero" not in str(caught.value)


def test_a_soft_limit_above_the_hard_limit_is_refused():
    with pytest.raises(ConfigError, match="soft time limit"):
        check_time_limits(400, 300, 3600)


def test_limits_below_the_visibility_timeout_are_accepted():
    settings = Settings(task_soft_time_limit_s=50, task_time_limit_s=60, visibility_timeout_s=120)
    assert settings.task_time_limit_s == 60


def test_settings_are_read_from_agent_variables(monkeypatch):
    monkeypatch.setenv("AGENT_HEALTH_INTERVAL_S", "42")
    monkeypatch.setenv("AGENT_FLOWER_PASSWORD", "canary-flower")
    settings = Settings()
    assert settings.health_interval_s == 42
    assert "canary-flower" not in repr(settings)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_database_urls_name_the_psycopg_driver(given, expected):
    assert to_sqlalchemy_url(given) == expected


def test_a_missing_database_url_says_which_variable_to_set():
    with pytest.raises(ConfigError, match="AGENT_DATABASE_URL"):
        _ = Settings(database_url=None).sqlalchemy_url
