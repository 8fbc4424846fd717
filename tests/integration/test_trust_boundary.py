"""The trust boundary, tried as a hostile tenant would (issue 15), on loopback only.

Each test reproduces one case of the issue against real servers on 127.0.0.1: a tenant's
row names a secret reference or a target, and the worker must neither send a secret of its
own nor connect where the operator's address policy says no. The test servers record every
request they get, so "nothing was sent" is observed, not assumed.
"""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from agent.core.credentials import generate_key
from agent.core.results import ErrorClass, Status
from agent.core.settings import get_settings
from agent.plugins.client import ClientLimits, build_pool
from agent.plugins.installation import InstallationProbe, InstallationSpec
from agent.plugins.mcp import McpProbe, McpSpec
from agent.probes import probe_for
from tasks.common import resolver_for
from tests.support.network import free_port, serving_http
from tests.support.plugin_servers import self_signed

pytestmark = pytest.mark.timeout(60)

WORKER_KEY = generate_key()


class Recorder:
    """What a loopback server was sent: one (path, headers) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def handler(self, status: int = 200, location: str | None = None) -> type:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with recorder.lock:
                    recorder.requests.append((self.path, dict(self.headers.items())))
                body = json.dumps({"status": "ok"}).encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def tenant_server(recorder):
    """A server of the tenant's choosing on loopback: port, and what it received."""
    with serving_http(recorder.handler()) as port:
        yield port


@pytest.fixture
def worker_settings(monkeypatch):
    """The worker's own secrets in its environment, as in production."""
    monkeypatch.setenv("AGENT_SECRET_KEY", WORKER_KEY)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def default_policy(monkeypatch, worker_settings):
    """The address policy an operator gets without configuring one (loopback closed to plugins)."""
    for name in ("AGENT_PLUGINS_ALLOW_CIDRS", "AGENT_PLUGINS_DENY_CIDRS"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AGENT_INSTANCES_ALLOW_CIDRS", "AGENT_INSTANCES_DENY_CIDRS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def loopback_denied_to_instances(monkeypatch, worker_settings):
    """An operator policy that keeps instance checks off loopback."""
    monkeypatch.setenv("AGENT_INSTANCES_DENY_CIDRS", json.dumps(["127.0.0.0/8", "::1/128"]))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def installation(port: int, credentials: dict, auth_config: dict | None = None, host="127.0.0.1"):
    return InstallationSpec(
        id="inst-1",
        name="tenant service",
        space_id="space-1",
        api_base_url=f"http://{host}:{port}",
        auth_type="api_key",
        auth_config=auth_config or {},
        credentials=credentials,
    )


def check_installation(spec: InstallationSpec, settings) -> object:
    pool = build_pool(ClientLimits(timeout_s=5.0))
    try:
        return InstallationProbe(spec, pool, resolver_for(settings)).run()
    finally:
        pool.close()


def instance(kind: str, host: str, port: int | None, config: dict, settings) -> object:
    return probe_for(kind, host, port, config, resolver_for(settings), 5.0).run()


@pytest.mark.parametrize(
    ("credentials", "auth_config"),
    [
        ({"api_key": "env:AGENT_SECRET_KEY"}, {}),
        ({"api_key": "env:agent_secret_key"}, {}),
        ({"api_key": "env:AGENT_DATABASE_URL"}, {}),
        ({"api_key": "file:/proc/self/environ"}, {"location": "query"}),
        ({"api_key": "file:/etc/passwd"}, {}),
    ],
)
def test_an_installation_cannot_make_the_worker_send_its_own_secrets(
    tenant_server, recorder, worker_settings, credentials, auth_config
):
    result = check_installation(
        installation(tenant_server, credentials, auth_config), worker_settings
    )

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    kind = next(iter(credentials.values())).split(":")[0]
    assert result.message.startswith(f"{kind}: reference refused")
    assert recorder.requests == []
    shown = json.dumps(result.as_dict())
    assert WORKER_KEY not in shown
    assert next(iter(credentials.values())).split(":", 1)[1] not in shown


def test_an_http_instance_cannot_read_the_worker_environment_as_its_token(
    tenant_server, recorder, worker_settings
):
    config = {"bearer_token": "file:/proc/self/environ"}
    result = instance("http", "127.0.0.1", tenant_server, config, worker_settings)

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.CONFIG)
    assert "file: reference refused" in result.message
    assert "/proc" not in result.message
    assert WORKER_KEY not in json.dumps(result.as_dict())
    assert recorder.requests == []


@pytest.mark.parametrize(
    "canary", ["canary-7f3a\r\nX-Injected: yes 'q'=1", 'canary-7f3a\r\nX-Injected: yes\r\n"q"=é']
)
def test_a_canary_token_with_cr_lf_leaks_in_no_form(
    tenant_server, recorder, worker_settings, monkeypatch, canary
):
    monkeypatch.setenv("AGENT_SECRET_TENANT_TOKEN", canary)
    config = {"bearer_token": "env:AGENT_SECRET_TENANT_TOKEN"}
    result = instance("http", "127.0.0.1", tenant_server, config, worker_settings)

    assert result.status is Status.ERROR
    shown = json.dumps(result.as_dict())
    for form in (canary, repr(canary)[1:-1], repr(canary.encode())[2:-1], "canary-7f3a"):
        assert form not in shown
        assert form not in result.message
    assert "\n" not in result.message
    assert "\r" not in result.message
    assert all("X-Injected" not in headers for _, headers in recorder.requests)


def test_by_default_an_installation_on_loopback_is_refused_after_dns_resolution(
    tenant_server, recorder, default_policy, monkeypatch
):
    monkeypatch.setenv("AGENT_SECRET_TENANT_KEY", "tenant-key")
    credentials = {"api_key": "env:AGENT_SECRET_TENANT_KEY"}
    spec = installation(tenant_server, credentials, host="localhost")
    result = check_installation(spec, default_policy)

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.POLICY)
    assert "refused by the plugins policy (deny" in result.message
    assert recorder.requests == []


def test_by_default_an_mcp_server_on_loopback_is_refused(mcp_servers, default_policy):
    spec = McpSpec(
        id="m1", name="tenant mcp", endpoint_url=mcp_servers.http_url, transport_type="http"
    )
    probe = McpProbe(spec, timeout_s=5.0)
    result = probe.run()

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.POLICY)
    assert "deny 127.0.0.0/8" in result.message
    assert probe.tools is None


def test_the_operator_can_open_loopback_to_mcp_checks(mcp_servers, worker_settings):
    spec = McpSpec(
        id="m1", name="tenant mcp", endpoint_url=mcp_servers.http_url, transport_type="http"
    )
    result = McpProbe(spec, timeout_s=5.0).run()
    assert result.status is Status.OK


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_http_instance_outside_the_policy_is_refused_without_a_request(
    tenant_server, recorder, loopback_denied_to_instances, host
):
    result = instance("http", host, tenant_server, {}, loopback_denied_to_instances)

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.POLICY)
    assert "refused by the instances policy (deny 127.0.0.0/8)" in result.message
    assert recorder.requests == []


def test_a_tcp_instance_outside_the_policy_is_refused_without_a_connection(
    tenant_server, recorder, loopback_denied_to_instances
):
    result = instance("tcp", "127.0.0.1", tenant_server, {}, loopback_denied_to_instances)
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.POLICY)


def test_link_local_metadata_addresses_are_refused_by_default(default_policy):
    for kind, config in (("http", {}), ("tcp", {}), ("docker_api", {"tls": False})):
        result = instance(kind, "169.254.169.254", 80, config, default_policy)
        assert (kind, result.error_class) == (kind, ErrorClass.POLICY), result.message
        assert "deny 169.254.0.0/16" in result.message


def test_the_unspecified_address_is_refused_by_default(default_policy):
    result = instance("http", "0.0.0.0", free_port(), {}, default_policy)
    assert result.error_class is ErrorClass.POLICY


def test_a_docker_endpoint_that_redirects_is_not_followed(recorder, worker_settings):
    elsewhere = Recorder()
    with (
        serving_http(elsewhere.handler()) as other_port,
        serving_http(
            recorder.handler(status=302, location=f"http://127.0.0.1:{other_port}/version")
        ) as port,
    ):
        config = {"docker_host": f"tcp://127.0.0.1:{port}", "tls": False}
        result = instance("docker_api", "127.0.0.1", None, config, worker_settings)

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.POLICY)
    assert "redirect" in result.message
    assert len(recorder.requests) == 1
    assert elsewhere.requests == []


def test_a_docker_endpoint_outside_the_policy_is_refused_without_a_request(
    tenant_server, recorder, loopback_denied_to_instances
):
    config = {"docker_host": f"tcp://localhost:{tenant_server}", "tls": False}
    result = instance("docker_api", "127.0.0.1", None, config, loopback_denied_to_instances)

    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.POLICY)
    assert recorder.requests == []


def test_a_kubernetes_api_that_redirects_is_not_followed(recorder, worker_settings, tmp_path):
    elsewhere = Recorder()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = self_signed(tmp_path)
    context.load_cert_chain(cert, key)
    with (
        serving_http(elsewhere.handler(), context) as other_port,
        serving_http(
            recorder.handler(status=302, location=f"https://127.0.0.1:{other_port}/version"),
            context,
        ) as port,
    ):
        config = {
            "api_url": f"https://127.0.0.1:{port}",
            "ca_cert": cert.read_text(),
            "token": resolver_for(worker_settings).encrypt("tenant-token"),
        }
        result = instance("kubernetes", "127.0.0.1", None, config, worker_settings)

    assert result.status is not Status.OK
    assert "HTTP 302" in result.message
    assert len(recorder.requests) >= 1
    assert elsewhere.requests == []
