"""Hostile targets (issue 16): every check ends by its deadline and reads at most its cap.

A server that drips its status line and headers at a byte per interval never trips a
per-read timeout; only the check's one deadline ends it. An endless JSON body must be
abandoned at the cap with worker memory flat. Each test asserts its bound: the elapsed time
at most the timeout plus a small margin, RSS growth under a small cap.
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from agent.connections.dockerwire import MAX_RESPONSE_BYTES
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Status
from agent.core.settings import get_settings
from agent.discovery.docker import DockerDiscoverer
from agent.plugins.client import ClientLimits, build_pool
from agent.plugins.installation import InstallationProbe, InstallationSpec
from agent.plugins.mcp import McpProbe, McpSpec
from agent.probes import probe_for
from models import InfrastructureInstance, InstanceService
from models.session import session_scope
from tasks import discovery, health
from tasks.common import batch_deadline_s
from tests.support.network import serving_http
from tests.support.targets import (
    DripHandler,
    EndlessEngineHandler,
    EndlessTokenHandler,
    InvalidJsonEngineHandler,
    MemoryGrowth,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TIMEOUT_S = 2.0
MARGIN_S = 1.0
CLIENT_SECRET_REF = "env:AGENT_SECRET_TEST_CLIENT_SECRET"  # inside the secret scope
PEAK_CAP_BYTES = 3 * MAX_RESPONSE_BYTES  # the cap, plus what one copy costs
RSS_KEPT_BYTES = 16 * 1024 * 1024  # what the worker may keep once the check is over
NO_KEY = SecretResolver(None)


@pytest.fixture
def drip_port():
    with serving_http(DripHandler) as port:
        yield port


@pytest.fixture
def pool():
    made = build_pool(ClientLimits(timeout_s=TIMEOUT_S))
    yield made
    made.close()


def timed(run):
    started = time.monotonic()
    result = run()
    return result, time.monotonic() - started


def installation(base_url, **auth):
    return InstallationSpec(id="i-1", name="svc", space_id=None, api_base_url=base_url, **auth)


def test_an_http_check_of_a_dripping_server_ends_at_its_deadline(drip_port):
    probe = probe_for("http", "127.0.0.1", drip_port, {}, NO_KEY, TIMEOUT_S)
    result, elapsed_s = timed(probe.run)
    assert result.error_class is ErrorClass.TIMEOUT
    assert elapsed_s <= TIMEOUT_S + MARGIN_S


def test_a_plugin_check_of_a_dripping_server_ends_at_its_deadline(drip_port, pool):
    spec = installation(f"http://127.0.0.1:{drip_port}")
    result, elapsed_s = timed(InstallationProbe(spec, pool, NO_KEY).run)
    assert result.error_class is ErrorClass.TIMEOUT
    assert elapsed_s <= TIMEOUT_S + MARGIN_S


def test_an_oauth2_token_fetch_from_a_dripping_server_ends_at_the_check_deadline(
    drip_port, pool, monkeypatch
):
    monkeypatch.setenv(CLIENT_SECRET_REF.removeprefix("env:"), "s3cret-value")
    spec = installation(
        f"http://127.0.0.1:{drip_port}",
        auth_type="oauth2",
        auth_config={"token_url": f"http://127.0.0.1:{drip_port}/token"},
        credentials={"client_id": "agent", "client_secret": CLIENT_SECRET_REF},
    )
    result, elapsed_s = timed(InstallationProbe(spec, pool, NO_KEY).run)
    assert result.error_class is ErrorClass.TIMEOUT
    assert elapsed_s <= TIMEOUT_S + MARGIN_S


def test_an_endless_oauth2_token_is_abandoned_at_its_cap(pool, monkeypatch):
    monkeypatch.setenv(CLIENT_SECRET_REF.removeprefix("env:"), "s3cret-value")
    with serving_http(EndlessTokenHandler) as port:
        spec = installation(
            f"http://127.0.0.1:{port}",
            auth_type="oauth2",
            auth_config={"token_url": f"http://127.0.0.1:{port}/token"},
            credentials={"client_id": "agent", "client_secret": CLIENT_SECRET_REF},
        )
        with MemoryGrowth() as memory:
            result = InstallationProbe(spec, pool, NO_KEY).run()
    assert (result.error_class, result.message) == (
        ErrorClass.PROTOCOL,
        "response larger than 65536 bytes",
    )
    assert memory.peak_bytes < 16 * 1024 * 1024


def test_a_docker_check_of_a_dripping_engine_ends_at_its_deadline(drip_port):
    config = {"docker_host": f"tcp://127.0.0.1:{drip_port}", "tls": False}
    probe = probe_for("docker_api", "", None, config, NO_KEY, TIMEOUT_S)
    result, elapsed_s = timed(probe.run)
    assert result.error_class is ErrorClass.TIMEOUT
    assert elapsed_s <= TIMEOUT_S + MARGIN_S


def test_an_endless_container_list_is_abandoned_at_its_cap_with_memory_flat():
    with serving_http(EndlessEngineHandler) as port:
        config = {"docker_host": f"tcp://127.0.0.1:{port}", "tls": False}
        probe = probe_for("docker_api", "", None, config, NO_KEY, TIMEOUT_S * 5)
        with MemoryGrowth() as memory:
            result, elapsed_s = timed(probe.run)
    assert result.error_class is ErrorClass.PROTOCOL
    assert f"response larger than {MAX_RESPONSE_BYTES} bytes" in result.message
    assert memory.peak_bytes < PEAK_CAP_BYTES
    assert memory.kept_rss_bytes < RSS_KEPT_BYTES
    assert elapsed_s <= TIMEOUT_S * 5 + MARGIN_S


def test_discovery_of_an_endless_container_list_fails_as_protocol_with_memory_flat():
    with serving_http(EndlessEngineHandler) as port:
        config = {"docker_host": f"tcp://127.0.0.1:{port}", "tls": False}
        discoverer = DockerDiscoverer({"host": "127.0.0.1", **config}, NO_KEY, TIMEOUT_S * 5)
        with MemoryGrowth() as memory:
            found = discoverer.run()
    assert found.error_class is ErrorClass.PROTOCOL
    assert memory.peak_bytes < PEAK_CAP_BYTES


def test_an_engine_answering_invalid_json_is_a_protocol_error():
    with serving_http(InvalidJsonEngineHandler) as port:
        config = {"docker_host": f"tcp://127.0.0.1:{port}", "tls": False}
        result = probe_for("docker_api", "", None, config, NO_KEY, TIMEOUT_S).run()
    assert (result.status, result.error_class) == (Status.ERROR, ErrorClass.PROTOCOL)


def test_an_mcp_check_of_a_dripping_server_ends_at_its_deadline(drip_port):
    spec = McpSpec("m-1", "mcp", f"http://127.0.0.1:{drip_port}/mcp", "http")
    result, elapsed_s = timed(McpProbe(spec, TIMEOUT_S).run)
    assert result.error_class is ErrorClass.TIMEOUT
    assert elapsed_s <= TIMEOUT_S + MARGIN_S


def test_an_endless_mcp_answer_is_abandoned_at_its_cap_with_memory_flat():
    with serving_http(EndlessTokenHandler) as port:
        spec = McpSpec("m-1", "mcp", f"http://127.0.0.1:{port}/mcp", "http")
        with MemoryGrowth() as memory:
            result, elapsed_s = timed(McpProbe(spec, TIMEOUT_S * 5).run)
    assert result.error_class is ErrorClass.PROTOCOL
    assert memory.peak_bytes < PEAK_CAP_BYTES
    assert elapsed_s <= TIMEOUT_S * 5 + MARGIN_S


def test_a_check_still_running_at_the_batch_deadline_is_a_timeout_and_the_rest_are_written(
    add_instance, silent_listener, monkeypatch
):
    # An SSH banner wait of 60 s stands in for any check no deadline of its own can end.
    monkeypatch.setenv("AGENT_SECRET_TEST_SSH_PASSWORD", "not-used")
    port = silent_listener.ports[0]
    tarpit = add_instance(
        "ssh", port=port, config={"username": "u", "password": "env:AGENT_SECRET_TEST_SSH_PASSWORD"}
    )
    good = [add_instance("tcp", port=port) for _ in range(3)]
    settings = get_settings().model_copy(
        update={"health_timeout_s": 60.0, "task_soft_time_limit_s": 3, "task_time_limit_s": 4}
    )
    started = time.monotonic()
    tally = health.run_batch(settings, [tarpit, *good], holder=str(uuid.uuid4()))
    elapsed_s = time.monotonic() - started
    assert elapsed_s <= batch_deadline_s(3) + 2 * MARGIN_S  # the deadline, then one write
    assert tally["checked"] == 4
    with session_scope() as session:
        rows = {
            row.id: row
            for row in session.scalars(
                select(InfrastructureInstance).where(InfrastructureInstance.id.in_([tarpit, *good]))
            )
        }
    assert all(rows[i].health_status["check"]["status"] == "ok" for i in good)
    late = rows[tarpit].health_status["check"]
    assert late["error_class"] == "timeout"
    assert "batch deadline" in late["message"]


def test_a_discovery_still_running_at_the_batch_deadline_leaves_the_others_reconciled(
    add_instance, silent_listener, podman_socket, podman_containers, monkeypatch
):
    monkeypatch.setenv("AGENT_SECRET_TEST_SSH_PASSWORD", "not-used")
    ssh_config = {"username": "u", "password": "env:AGENT_SECRET_TEST_SSH_PASSWORD"}
    tarpit = add_instance("ssh", port=silent_listener.ports[0], config=ssh_config)
    podman = add_instance("docker_api", config={"docker_host": f"unix://{podman_socket}"})
    settings = get_settings().model_copy(
        update={"discovery_timeout_s": 60.0, "task_soft_time_limit_s": 3, "task_time_limit_s": 4}
    )
    started = time.monotonic()
    tally = discovery.run_batch(settings, [tarpit, podman], holder=str(uuid.uuid4()))
    elapsed_s = time.monotonic() - started
    assert elapsed_s <= batch_deadline_s(3) + 2 * MARGIN_S
    assert (tally["discovered"], tally["failed"]) == (1, 1)
    with session_scope() as session:
        seen = session.scalars(select(InstanceService.instance_id).distinct()).all()
    assert podman in seen
    assert tarpit not in seen
