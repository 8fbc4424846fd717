"""Plugin health end to end: real HTTP services, a real MCP server, the real database."""

import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select

from agent.cli.commands import main as cli
from agent.core.settings import get_settings
from agent.plugins.auth import shared_tokens
from models import (
    AgentInstallationHealth,
    AuditLog,
    McpServer,
    McpTool,
    PluginHealthHistory,
    ServiceInstallation,
    Tenant,
    queries,
)
from models.agent import AgentLease
from models.session import session_scope
from tasks import plugins
from tests.support.plugin_servers import SLOW_S


@pytest.fixture
def tenant(plugin_resolver):
    with session_scope() as session:
        row = Tenant(name="Tenant", slug=f"t-{uuid.uuid4().hex[:8]}")
        session.add(row)
        session.flush()
        tenant_id = row.id
    yield tenant_id
    with session_scope() as session:
        session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def check(installation_id):
    return plugins.check_now(get_settings(), "installation", installation_id, str(uuid.uuid4()))


def check_mcp(server_id):
    return plugins.check_now(get_settings(), "mcp_server", server_id, str(uuid.uuid4()))


def load(model, key):
    with session_scope() as session:
        return session.get(model, key)


def history(plugin_id):
    with session_scope() as session:
        query = select(PluginHealthHistory).where(PluginHealthHistory.plugin_id == plugin_id)
        return session.scalars(query.order_by(PluginHealthHistory.time)).all()


def tools(server_id):
    with session_scope() as session:
        rows = session.scalars(select(McpTool).where(McpTool.server_id == server_id)).all()
        return {row.name: row for row in rows}


def test_a_healthy_service_is_active_and_healthy_with_a_history_row(install, plugin_services):
    installation_id = install(plugin_services.url("open"))
    summary = check(installation_id)
    row = load(ServiceInstallation, installation_id)
    assert summary["health_status"] == row.health_status == "healthy"
    assert row.status == "active"
    assert row.last_health_check is not None
    [entry] = history(installation_id)
    assert entry.plugin_type == "installation"
    assert entry.latency_ms > 0
    assert entry.details["facts"]["status_code"] == 200


@pytest.mark.parametrize(
    ("service", "auth_type", "auth_config", "field", "secret"),
    [
        ("apikey", "api_key", {}, "api_key", "api_key"),
        ("apikey-query", "api_key", {"location": "query"}, "api_key", "api_key"),
        ("bearer", "bearer", {}, "token", "bearer"),
    ],
)
def test_each_auth_type_reaches_its_service_with_the_installations_secret(
    install, plugin_services, plugin_resolver, service, auth_type, auth_config, field, secret
):
    reference = plugin_resolver.encrypt(getattr(plugin_services.state, secret))
    good = install(plugin_services.url(service), auth_type, auth_config, {field: reference})
    wrong = install(
        plugin_services.url(service),
        auth_type,
        auth_config,
        {field: plugin_resolver.encrypt("nope")},
    )
    assert check(good)["health_status"] == "healthy"
    refused = check(wrong)
    assert (refused["health_status"], refused["error_class"]) == ("unhealthy", "auth")


def test_oauth2_client_credentials_fetch_a_token_once_and_reuse_it(
    install, plugin_services, plugin_resolver
):
    state = plugin_services.state
    config = {"token_url": f"{plugin_services.base_url}/oauth/token", "scope": "health"}
    credentials = {
        "client_id": state.client_id,
        "client_secret": plugin_resolver.encrypt(state.client_secret),
    }
    first = install(plugin_services.url("oauth"), "oauth2", config, credentials, name="A")
    second = install(plugin_services.url("oauth"), "oauth2", config, credentials, name="B")
    before = state.token_requests
    assert check(first)["health_status"] == "healthy"
    assert check(second)["health_status"] == "healthy"
    assert state.token_requests - before == 1
    assert len(shared_tokens) >= 1


def test_oauth2_with_a_wrong_client_secret_is_an_auth_failure(
    install, plugin_services, plugin_resolver
):
    config = {"token_url": f"{plugin_services.base_url}/oauth/token", "client_auth": "body"}
    credentials = {"client_id": "agent-client", "client_secret": plugin_resolver.encrypt("wrong")}
    summary = check(install(plugin_services.url("oauth"), "oauth2", config, credentials))
    assert summary["error_class"] == "auth"
    assert "invalid_client" in summary["reason"]


def test_a_failing_service_goes_to_error_after_three_checks_and_keeps_its_since(
    install, plugin_services, space
):
    installation_id = install(plugin_services.url("fail"))
    summaries = [check(installation_id) for _ in range(3)]
    assert [s["status"] for s in summaries] == ["active", "active", "error"]
    assert {s["health_status"] for s in summaries} == {"unhealthy"}
    assert summaries[0]["since"] == summaries[2]["since"]
    with session_scope() as session:
        [row] = queries.installed_plugins_for_space(session, space)
        audit = session.scalars(select(AuditLog).where(AuditLog.entity_id == installation_id)).one()
    assert (row.status, row.health_status, row.reason) == ("error", "unhealthy", "HTTP 500")
    assert row.since.isoformat() == summaries[0]["since"]
    assert audit.changes["after"] == {"status": "error"}
    state = load(AgentInstallationHealth, installation_id)
    assert state.damping == {"consecutive_failures": 3, "consecutive_successes": 0}


def test_a_slow_service_is_unreachable_by_timeout(install, plugin_services):
    summary = check(install(plugin_services.url("slow")))
    assert (summary["health_status"], summary["error_class"]) == ("unreachable", "timeout")
    assert summary["latency_ms"] < SLOW_S * 1000


def test_a_bad_certificate_is_unhealthy_and_never_trusted(install, bad_tls_service):
    summary = check(install(bad_tls_service.url("open")))
    assert (summary["health_status"], summary["error_class"]) == ("unhealthy", "tls")
    assert bad_tls_service.state.requests["open"] == 0


def test_a_service_that_reports_degraded_is_degraded_but_active(install, plugin_services):
    summary = check(install(plugin_services.url("degraded")))
    assert (summary["health_status"], summary["status"]) == ("degraded", "active")
    assert "degraded" in summary["reason"]


def test_the_health_path_comes_from_the_registry_capabilities(install, plugin_services):
    base = plugin_services.base_url
    summary = check(install(base, capabilities={"health_path": "/bearer/health"}))
    assert summary["error_class"] == "auth"  # reached /bearer/health, which wants a token


def test_a_deprecated_service_is_checked_and_flagged_a_rejected_one_is_not_called(
    install, plugin_services
):
    deprecated = check(install(plugin_services.url("open"), registry_status="deprecated"))
    assert deprecated["health_status"] == "healthy"
    assert deprecated["deprecated"] is True
    before = plugin_services.state.requests["open"]
    rejected_id = install(plugin_services.url("open"), registry_status="rejected")
    rejected = check(rejected_id)
    assert rejected["status"] == "not_checked"
    assert "rejected" in rejected["message"]
    assert plugin_services.state.requests["open"] == before
    assert history(rejected_id) == []
    with session_scope() as session:
        assert session.get(AgentLease, f"plugins.installation.{rejected_id}") is None


def test_cookies_from_one_installation_never_reach_another(install, plugin_services):
    for _ in range(3):
        check(install(plugin_services.url("open")))
    assert plugin_services.state.cookies_seen == []


def test_secrets_never_reach_the_summary_history_or_health_rows(
    install, plugin_services, plugin_resolver
):
    state = plugin_services.state
    config = {"token_url": f"{plugin_services.base_url}/oauth/token"}
    credentials = {
        "client_id": state.client_id,
        "client_secret": plugin_resolver.encrypt(state.client_secret),
    }
    ids = [
        install(plugin_services.url("oauth"), "oauth2", config, credentials),
        install(
            plugin_services.url("bearer"),
            "bearer",
            {},
            {"token": plugin_resolver.encrypt(state.bearer)},
        ),
        install(
            plugin_services.url("apikey"),
            "api_key",
            {},
            {"api_key": plugin_resolver.encrypt("canary-x")},
        ),
    ]
    dumped = repr([check(i) for i in ids])
    for i in ids:
        dumped += repr([(h.message, h.details) for h in history(i)])
        dumped += repr(load(AgentInstallationHealth, i).last_check)
    for secret in (state.client_secret, state.bearer, "canary-x", *state.issued):
        assert secret not in dumped


def test_a_clear_text_credential_is_refused_and_says_so(install, plugin_services):
    summary = check(install(plugin_services.url("bearer"), "bearer", {}, {"token": "plain"}))
    assert summary["error_class"] == "config"
    assert "clear-text" in summary["reason"]
    assert "plain" not in repr(summary).replace("'plain'", "")


def test_an_mcp_server_records_its_info_and_tools_and_follows_their_changes(
    add_mcp_server, mcp_servers
):
    server_id = add_mcp_server(mcp_servers.http_url)
    first = check_mcp(server_id)
    assert (first["health_status"], first["status"]) == ("healthy", "active")
    assert first["tools"] == {"added": 2, "changed": 0, "removed": 0, "unchanged": 0}
    row = load(McpServer, server_id)
    assert row.server_info["server_info"] == {"name": "plugin-test-server", "version": "1.2.3"}
    assert row.health_details["check"]["facts"]["ping_ms"] >= 0
    echo_schema = tools(server_id)["echo"].input_schema
    mcp_servers.change_tools()
    second = check_mcp(server_id)
    assert second["tools"] == {"added": 1, "changed": 1, "removed": 1, "unchanged": 0}
    after = tools(server_id)
    assert after["add"].status == "removed"
    assert after["add"].removed_at is not None
    assert after["echo"].status == "active"
    assert after["echo"].input_schema != echo_schema
    assert "times" in after["echo"].input_schema["properties"]
    assert after["now"].status == "active"


def test_an_mcp_server_over_sse_is_checked_too(add_mcp_server, mcp_servers):
    summary = check_mcp(add_mcp_server(mcp_servers.sse_url, "sse"))
    assert summary["health_status"] == "healthy"
    assert summary["tools"]["added"] == 2


@pytest.mark.parametrize(
    ("transport", "words"), [("stdio", "subprocess"), ("websocket", "WebSocket")]
)
def test_stdio_and_websocket_servers_are_recorded_plainly_as_not_checkable(
    add_mcp_server, transport, words
):
    server_id = add_mcp_server("node server.js", transport, status="active")
    summary = check_mcp(server_id)
    row = load(McpServer, server_id)
    assert (row.health_status, row.status) == ("unknown", "active")
    assert words in row.health_details["reason"]
    assert summary["error_class"] == "unsupported"


def test_an_mcp_server_that_does_not_answer_is_unreachable(add_mcp_server, closed_port):
    summary = check_mcp(add_mcp_server(f"http://127.0.0.1:{closed_port}/mcp"))
    assert (summary["health_status"], summary["error_class"]) == ("unreachable", "refused")


def test_a_tenants_server_is_checked_like_a_global_one_and_keeps_its_own_tools(
    add_mcp_server, mcp_servers, tenant
):
    global_id = add_mcp_server(mcp_servers.http_url)
    tenant_id = add_mcp_server(mcp_servers.http_url, tenant_id=tenant)
    assert check_mcp(tenant_id)["health_status"] == "healthy"
    assert set(tools(tenant_id)) == {"add", "echo"}
    assert tools(global_id) == {}
    with session_scope() as session:
        rows = queries.plugin_health(session, tenant_id=tenant)
    assert [(r.id, r.tools) for r in rows] == [(tenant_id, 2)]


def test_the_refresh_checks_every_due_plugin_through_a_real_worker(
    install, plugin_services, add_mcp_server, mcp_servers, celery_worker, monkeypatch
):
    with session_scope() as session:
        session.execute(delete(AgentLease).where(AgentLease.name.like("plugins.%")))
    ids = [install(plugin_services.url("open"), name=f"S{n}") for n in range(3)]
    server_id = add_mcp_server(mcp_servers.http_url)
    result = plugins.refresh.delay().get(timeout=60)
    assert result["dispatched"] >= 4
    for _ in range(200):
        if (
            all(load(ServiceInstallation, i).health_status for i in ids)
            and load(McpServer, server_id).health_status
        ):
            break
        time.sleep(0.1)
    assert {load(ServiceInstallation, i).health_status for i in ids} == {"healthy"}
    assert load(McpServer, server_id).health_status == "healthy"
    assert plugins.refresh.delay().get(timeout=60)["dispatched"] == 0


def test_the_cli_prints_a_table_of_plugin_health(install, plugin_services, space):
    check(install(plugin_services.url("fail"), name="Broken"))
    result = CliRunner().invoke(cli, ["plugins", "--space", str(space)])
    assert result.exit_code == 0, result.output
    header, line = result.output.splitlines()[:2]
    assert header.split()[:5] == ["kind", "name", "scope", "status", "health"]
    assert "Broken" in line or "svc-" in line
    assert "unhealthy" in line
    assert "HTTP 500" in line


def test_bad_task_input_is_refused_clearly():
    with pytest.raises(plugins.TaskInputError, match="plugin_type must be one of"):
        plugins.as_plugin_type("printer")
