import asyncio
import datetime as dt
import threading

import pytest

from agent.cli.reports import plugins as report
from agent.core.clock import Clock
from agent.core.credentials import SecretResolver
from agent.core.damping import Policy
from agent.core.results import ErrorClass, Observation, ProbeError, ProbeResult, Status
from agent.plugins.auth import AuthConfig, TokenCache, authenticate, token_key
from agent.plugins.installation import (
    InstallationSpec,
    check_installations,
    health_path_of,
    judge,
)
from agent.plugins.mcp import McpSpec, check_mcp_servers
from agent.plugins.outcome import Health, Prior, conclude, health_of
from agent.plugins.tools import ToolInfo, diff_tools
from agent.probes.base import Probe

OK = ProbeResult(kind="plugin.http", status=Status.OK, latency_ms=1.0)
FAIL = ProbeResult(kind="plugin.http", status=Status.CRITICAL, latency_ms=1.0, message="HTTP 500")
DOWN = ProbeResult(
    kind="plugin.http", status=Status.CRITICAL, latency_ms=1.0, error_class=ErrorClass.TIMEOUT
)
STDIO = ProbeResult(
    kind="mcp", status=Status.ERROR, latency_ms=0.0, error_class=ErrorClass.UNSUPPORTED
)
POLICY = Policy(3, 2)


def run(results, prior=None):
    prior = prior or Prior()
    checked = None
    for result in results:
        checked = conclude("installation", "id", "name", result, prior, POLICY)
        state = checked.state
        prior = Prior(
            checked.status,
            checked.health.value,
            checked.since,
            state.consecutive_failures,
            state.consecutive_successes,
        )
    return checked


@pytest.mark.parametrize(
    ("result", "health"),
    [
        (OK, Health.HEALTHY),
        (ProbeResult(kind="x", status=Status.WARNING, latency_ms=1.0), Health.DEGRADED),
        (FAIL, Health.UNHEALTHY),
        (DOWN, Health.UNREACHABLE),
        (STDIO, Health.UNKNOWN),
    ],
)
def test_each_result_has_one_health_word(result, health):
    assert health_of(result) is health


def test_a_plugin_goes_to_error_on_the_third_failure_and_back_after_two_successes():
    assert run([FAIL, FAIL]).status == "active"
    failed = run([FAIL, FAIL, FAIL])
    assert failed.status == "error"
    assert run([OK], Prior("error", "unhealthy", None, 3, 0)).status == "error"
    assert run([OK, OK], Prior("error", "unhealthy", None, 3, 0)).status == "active"


def test_since_holds_while_the_health_word_holds_and_moves_when_it_changes():
    earlier = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert run([FAIL], Prior("active", "unhealthy", earlier)).since == earlier
    assert run([OK], Prior("active", "unhealthy", earlier)).since > earlier


def test_a_plugin_that_cannot_be_checked_keeps_its_status_and_counters():
    checked = run([STDIO], Prior("error", "unhealthy", None, 4, 0))
    assert (checked.status, checked.health) == ("error", Health.UNKNOWN)
    assert checked.state.consecutive_failures == 4
    assert not checked.changed


def test_the_reason_is_empty_when_healthy_and_the_message_otherwise():
    assert run([OK]).reason is None
    assert run([FAIL]).reason == "HTTP 500"
    assert run([DOWN]).reason == "timeout"


@pytest.mark.parametrize(
    ("status_code", "body", "expected"),
    [
        (200, b'{"status": "ok"}', Status.OK),
        (200, b"plain text", Status.OK),
        (204, b"", Status.OK),
        (200, b'{"status": "Degraded"}', Status.WARNING),
        (200, b'{"status": "down"}', Status.CRITICAL),
        (503, b'{"status": "ok"}', Status.CRITICAL),
        (302, b"", Status.CRITICAL),
    ],
)
def test_a_health_answer_is_judged_by_status_code_then_reported_status(status_code, body, expected):
    assert judge(status_code, body).status is expected


def test_the_health_path_defaults_to_health():
    assert health_path_of(None) == "/health"
    assert health_path_of({"health_path": "/api/v1/ping"}) == "/api/v1/ping"
    assert health_path_of({"health_path": 3}) == "/health"


def test_only_approved_and_deprecated_services_are_called():
    assert InstallationSpec("i", "n", None, "http://x").refusal() is None
    assert InstallationSpec("i", "n", None, "http://x", registry_status="deprecated").deprecated
    refusal = InstallationSpec("i", "n", None, "http://x", registry_status="rejected").refusal()
    assert refusal == "service is rejected in the registry"
    assert InstallationSpec("i", "n", None, "http://x/", "health").url() == "http://x/health"


def test_a_service_without_a_base_url_is_a_config_error():
    with pytest.raises(ProbeError) as raised:
        InstallationSpec("i", "n", None, None).url()
    assert raised.value.error_class is ErrorClass.CONFIG


def test_tool_lists_are_diffed_into_added_changed_removed_and_unchanged():
    a, b = ToolInfo("a", "A", {"type": "object"}), ToolInfo("b", "B", {})
    recorded = {"a": a, "b": b, "gone": ToolInfo("gone", None, {}), "old": None}
    listed = [
        a,
        ToolInfo("b", "B", {"type": "object"}),
        ToolInfo("new", None, {}),
        ToolInfo("old", None, {}),
    ]
    changes = diff_tools(recorded, listed)
    assert [t.name for t in changes.added] == ["new", "old"]
    assert [t.name for t in changes.changed] == ["b"]
    assert changes.removed == ("gone",)
    assert changes.unchanged == ("a",)


def test_a_token_is_cached_until_shortly_before_it_expires(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("agent.plugins.auth.time.monotonic", lambda: clock[0])
    cache, fetched = TokenCache(margin_s=60), []

    async def fetch():
        fetched.append(1)
        return f"token-{len(fetched)}", 3600.0

    def get():
        return asyncio.run(cache.get("k", fetch))

    assert get() == "token-1"
    clock[0] += 3600 - 61
    assert get() == "token-1"
    clock[0] += 2
    assert get() == "token-2"
    cache.forget("k")
    assert get() == "token-3"


def test_the_token_cache_key_holds_no_secret():
    key = token_key(AuthConfig(token_url="https://idp/token"), "client", "s3cret-value")
    assert "s3cret" not in key
    assert key != token_key(AuthConfig(token_url="https://idp/token"), "client", "other")


@pytest.mark.parametrize(
    ("auth_type", "credentials", "words"),
    [
        ("kerberos", {}, "unknown api_auth_type"),
        ("bearer", {}, "credentials.token is missing"),
        ("oauth2", {"client_id": "c", "client_secret": "env:X"}, "token_url is missing"),
    ],
)
def test_an_unusable_auth_configuration_is_a_config_error(auth_type, credentials, words):
    with pytest.raises(ProbeError, match=words) as raised:
        asyncio.run(authenticate(auth_type, {}, credentials, SecretResolver(None), pool=None))
    assert raised.value.error_class is ErrorClass.CONFIG


def test_api_keys_go_in_the_named_header_or_query_parameter(monkeypatch):
    monkeypatch.setenv("AGENT_SECRET_PLUGIN_KEY", "k-123")
    resolver, creds = SecretResolver(None), {"api_key": "env:AGENT_SECRET_PLUGIN_KEY"}
    in_header = asyncio.run(
        authenticate("api_key", {"header": "X-Key"}, creds, resolver, pool=None)
    )
    in_query = asyncio.run(
        authenticate("api_key", {"location": "query", "param": "key"}, creds, resolver, pool=None)
    )
    assert in_header.headers == {"X-Key": "k-123"}
    assert in_query.params == {"key": "k-123"}
    assert in_header.secrets == ("k-123",)


def test_the_report_shows_age_and_reason():
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert report.age(now - dt.timedelta(minutes=5, seconds=3), now) == "5m ago"
    assert report.age(None, now) == "-"
    assert "(no installations or MCP servers)" in report.render([], now)


class Stuck(Probe):
    """A plugin probe that runs until the test releases it."""

    kind = "plugin.http"

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.tools = None

    def check(self) -> Observation:
        self.release.wait(10)
        return Observation()


@pytest.mark.parametrize(
    ("check_batch", "spec"),
    [
        (check_installations, InstallationSpec("i", "n", None, "http://x")),
        (check_mcp_servers, McpSpec("m", "n", "http://x/mcp", "http")),
    ],
)
def test_a_plugin_check_late_at_the_batch_deadline_is_a_timeout_dated_by_the_batch_clock(
    check_batch, spec
):
    database = Clock.reading(dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.UTC))
    release = threading.Event()
    try:
        [late] = check_batch([spec], lambda spec: Stuck(release), 1, database, 0.2)
    finally:
        release.set()
    assert late.result.error_class == ErrorClass.TIMEOUT
    assert dt.timedelta(0) < late.checked_at - database.at < dt.timedelta(seconds=5)
    assert late.since == late.checked_at  # a new health word: it holds since this check
