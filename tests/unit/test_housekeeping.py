import datetime as dt

import pytest
from pydantic import ValidationError

from agent.core.prune_targets import PruneTarget
from agent.core.settings import ConfigError, load_settings
from agent.housekeeping import (
    SESSION_TARGETS,
    BatchSizer,
    Tally,
    cutoffs,
    lock_key,
    log_targets,
    prune_targets,
    render_plan,
)

UTC = dt.UTC


def test_the_session_tables_of_both_auth_systems_are_pruned_by_default():
    assert [t.table for t in prune_targets([])] == ["sessions", "session", "verification"]
    assert all(t.column == "expires_at" and t.grace_s == 0 for t in SESSION_TARGETS)


def test_a_configured_table_is_added_and_a_configured_builtin_replaces_the_default():
    extra = [PruneTarget(table="oauth_tokens"), PruneTarget(table="sessions", grace_s=60)]
    targets = {t.table: t for t in prune_targets(extra)}
    assert set(targets) == {"sessions", "session", "verification", "oauth_tokens"}
    assert targets["sessions"].grace_s == 60


@pytest.mark.parametrize(
    "name", ["sessions; DROP TABLE users", 'a"b', "public.sessions", "", "1abc", "x" * 64]
)
def test_a_name_that_is_not_a_plain_identifier_is_refused(name):
    with pytest.raises(ValidationError, match="plain identifier"):
        PruneTarget(table=name)
    with pytest.raises(ValidationError, match="plain identifier"):
        PruneTarget(table="t", column=name)


def test_a_negative_grace_period_is_refused():
    with pytest.raises(ValidationError):
        PruneTarget(table="t", grace_s=-1)


def test_extra_tables_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv(
        "AGENT_PRUNE_EXTRA_TABLES", '[{"table": "oauth_tokens", "column": "valid_until"}]'
    )
    [target] = load_settings().prune_extra_tables
    assert (target.table, target.column, target.grace_s) == ("oauth_tokens", "valid_until", 0)


def test_a_bad_extra_table_stops_the_settings_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("AGENT_PRUNE_EXTRA_TABLES", '[{"table": "x; DROP TABLE users"}]')
    with pytest.raises(ConfigError, match="AGENT_PRUNE_EXTRA_TABLES") as raised:
        load_settings()
    assert "DROP TABLE" not in str(raised.value)


def test_log_retention_is_off_until_a_window_is_set():
    assert log_targets({"access_logs": None, "audit_logs": None}) == []
    [audit] = log_targets({"access_logs": None, "audit_logs": 90})
    assert (audit.table, audit.column, audit.grace_s) == ("audit_logs", "created_at", 90 * 86400)


def test_benchmarks_are_kept_by_default_and_health_history_for_thirty_days():
    settings = load_settings()
    now = dt.datetime(2026, 3, 31, 12, tzinfo=UTC)
    windows = cutoffs(
        {
            "instance_health_history": settings.health_history_retention_days,
            "benchmarks": settings.benchmarks_retention_days,
        },
        now,
    )
    assert windows == {
        "instance_health_history": dt.datetime(2026, 3, 1, 12, tzinfo=UTC),
        "benchmarks": None,
    }


def test_batches_grow_while_statements_are_quick_and_shrink_when_one_is_slow():
    sizer = BatchSizer(largest=5000, target_s=0.1)
    assert sizer.size == 500
    assert [sizer.after(0.01) for _ in range(5)] == [1000, 2000, 4000, 5000, 5000]
    assert sizer.after(0.4) == 1250
    assert sizer.after(0.07) == 1250
    assert sizer.after(60) == 10


def test_a_tally_counts_rows_per_table_and_the_longest_statement():
    tally = Tally()
    tally.add("sessions", 500, 0.05)
    tally.add("sessions", 20, 0.2)
    tally.add("session", 0, 0.01)
    assert tally.summary() == {
        "deleted": {"sessions": 520, "session": 0},
        "total": 520,
        "batches": 3,
        "longest_statement_ms": 200.0,
        "complete": True,
    }


def test_a_lock_key_is_a_stable_signed_64_bit_number_per_name():
    assert lock_key("housekeeping.prune") == lock_key("housekeeping.prune")
    assert lock_key("housekeeping.prune") != lock_key("housekeeping.retention")
    assert -(2**63) <= lock_key("housekeeping.prune") < 2**63


def test_a_plan_is_rendered_one_line_per_table():
    text = render_plan(
        {
            "sessions": {"sessions": 12, "session": 0},
            "api_keys": 3,
            "series": {"instance_health_history": ["instance_health_history_p20260101"]},
            "logs": {},
        }
    )
    assert "  sessions" in text
    assert "expired API keys): 3" in text
    assert "instance_health_history_p20260101" in text
