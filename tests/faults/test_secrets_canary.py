"""The secrets canary: every credential the agent handles, traced through everything it leaves.

Unique canary values are put in every credential field (SSH password, key and passphrase,
Docker TLS key, Kubernetes token, HTTP bearer token, installation API keys and OAuth client
secrets, the broker password, AGENT_SECRET_KEY, the Flower password), as `enc:`, `env:` and
`file:` references, right and wrong, so that checks succeed and fail (the error messages are
where a secret is most tempting to print). A real worker process (INFO logs to a file) runs
the checks and discoveries while a real Flower watches. Then no canary may appear in the
worker's or Flower's logs, in Redis (task messages, arguments, results, tracebacks), in
Flower's API or pages, or in any column of any table. A secret stored in clear (refused by
the agent) may stay only in the cell where it was put.
"""

import json
import secrets
import subprocess
import sys

import httpx
import pytest
import redis
from sqlalchemy import delete, text

from agent.celery import create_app
from agent.core.credentials import SecretResolver, generate_key
from agent.core.settings import Settings
from models import McpServer
from models.session import session_scope
from tests.support.broker import redis_client
from tests.support.network import LOOPBACK_ALLOWED, free_port
from tests.support.processes import agent_env, kill_group, start, wait_until
from tests.support.rows import committed, installed, remove_space, service_row, space_row

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(420)]

CANARY = f"canary{secrets.token_hex(8)}"
CLEAR = f"clearcanary{secrets.token_hex(8)}"
FAKE_KEY = f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"
FAKE_CERT = "-----BEGIN CERTIFICATE-----\nMIIBnotacertificate\n-----END CERTIFICATE-----\n"
RESULT_TIMEOUT_S = 120


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, whose password is the canary."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", CANARY,
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://:{CANARY}@127.0.0.1:{port}/0"
    wait_until(lambda: _pings(url), 30, "redis-server to answer")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return redis_client(url).ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def agent_key():
    """AGENT_SECRET_KEY for the worker: itself a secret that must never be shown."""
    key = generate_key()
    return key, SecretResolver(key)


@pytest.fixture
def canary_file(tmp_path):
    path = tmp_path / "canary-secret"
    path.write_text(CANARY + "\n")
    return path


def instance_configs(sshd, kube, plugin_services, closed_port, resolver, canary_file):
    """(connection_type, port, connection_config, jobs) for each credential field."""
    enc = resolver.encrypt
    ssh = {"username": sshd.username, "trust_on_first_use": True}
    key = {**ssh, "private_key": enc(sshd.rsa_private_key)}
    kube_access = {"api_url": kube.url, "ca_cert": kube.ca_pem}
    http = {"url": plugin_services.url("bearer") + "/health"}
    both, health = ("check_instance", "discover_instance"), ("check_instance",)
    return [
        ("ssh", sshd.port, {**ssh, "password": enc(sshd.password)}, both),
        ("ssh", sshd.port, {**ssh, "password": "env:AGENT_SECRET_CANARY"}, both),
        ("ssh", sshd.port, {**key, "private_key_passphrase": enc(sshd.rsa_passphrase)}, both),
        ("ssh", sshd.port, {**key, "private_key_passphrase": f"file:{canary_file}"}, both),
        ("ssh", sshd.port, {**ssh, "password": CLEAR}, both),
        ("docker_api", None, {"docker_host": f"tcp://127.0.0.1:{closed_port}", "tls": True,
                              "client_cert": FAKE_CERT, "client_key": enc(FAKE_KEY)}, both),
        ("kubernetes", None, {**kube_access, "token": enc(kube.token)}, both),
        ("kubernetes", None, {**kube_access, "token": enc(CANARY)}, both),
        ("kubernetes", None, {**kube_access, "token": CLEAR}, health),
        ("http", None, {**http, "bearer_token": enc(CANARY)}, health),
        ("http", None, {**http, "bearer_token": enc(plugin_services.state.bearer)}, health),
    ]  # fmt: skip


def installation_rows(plugin_services, resolver):
    """(service path, auth type, auth config, credentials) right and wrong, for each auth type."""
    state, enc = plugin_services.state, resolver.encrypt
    oauth = {"token_url": f"{plugin_services.base_url}/oauth/token", "client_auth": "body"}
    return [
        ("apikey", "api_key", {}, {"api_key": enc(state.api_key)}),
        ("apikey", "api_key", {}, {"api_key": enc(CANARY)}),
        ("apikey-query", "api_key", {"location": "query"}, {"api_key": enc(CANARY)}),
        ("bearer", "bearer", {}, {"token": "env:AGENT_SECRET_CANARY"}),
        ("oauth", "oauth2", oauth, {"client_id": state.client_id, "client_secret": enc(CANARY)}),
        ("oauth", "oauth2", oauth, {"client_id": "c", "client_secret": enc(state.client_secret)}),
        ("apikey", "api_key", {}, {"api_key": CLEAR}),
    ]


@pytest.fixture
def installations(database_url, plugin_services, agent_key):
    """Installed services, one per row of `installation_rows`; removed afterwards."""
    space_id = committed(space_row())
    yield [
        installed(space_id, service_row(plugin_services.url(path), auth_type, config), credentials)
        for path, auth_type, config, credentials in installation_rows(plugin_services, agent_key[1])
    ]
    remove_space(space_id)


@pytest.fixture
def mcp_server_ids(database_url, closed_port):
    """MCP servers whose URL carries a secret in clear (the gateway's column, not the agent's)."""
    urls = [
        f"http://agent:{CLEAR}@127.0.0.1:{closed_port}/mcp",
        f"http://127.0.0.1:{closed_port}/mcp?token={CLEAR}",
    ]
    with session_scope() as session:
        rows = [McpServer(name=f"canary-{i}", endpoint_url=url) for i, url in enumerate(urls)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    yield ids
    with session_scope() as session:
        session.execute(delete(McpServer).where(McpServer.id.in_(ids)))


def worker_and_flower(tmp_path, database_url, broker_url, key):
    """A worker process and a Flower process on the private Redis, logs in `tmp_path`."""
    env = agent_env(
        AGENT_DATABASE_URL=database_url, AGENT_BROKER_URL=broker_url, AGENT_SECRET_KEY=key,
        AGENT_SECRET_CANARY=CANARY, AGENT_FLOWER_PASSWORD=CANARY, AGENT_HEALTH_TIMEOUT_S="3",
        AGENT_DISCOVERY_TIMEOUT_S="5", AGENT_PLUGINS_TIMEOUT_S="3", AGENT_HEALTH_JITTER_S="0",
        AGENT_SECRET_FILE_DIRS=json.dumps([str(tmp_path)]), **LOOPBACK_ALLOWED,
    )  # fmt: skip
    celery = [sys.executable, "-m", "celery", "-A", "agent"]
    port = free_port()
    flower = start(
        [*celery, "flower", f"--port={port}", "--address=127.0.0.1"], env, tmp_path / "flower.log"
    )
    worker = start(
        [*celery, "worker", "--loglevel=INFO", "-c", "2", "-n", "canary@%h"],
        env,
        tmp_path / "worker.log",
    )
    return worker, flower, f"http://127.0.0.1:{port}"


def run_jobs(app, instances, installations, mcp_servers) -> list:
    """Send every job by name and wait for all of them (failures included)."""
    calls = [(f"agent.health.{j}" if j == "check_instance" else f"agent.discovery.{j}", i)
             for i, jobs in instances for j in jobs]  # fmt: skip
    calls += [("agent.plugins.check_installation", i) for i in installations]
    calls += [("agent.plugins.check_mcp_server", i) for i in mcp_servers]
    sent = [app.send_task(name, args=[str(target)]) for name, target in calls]
    for result in sent:
        result.get(timeout=RESULT_TIMEOUT_S, propagate=False)
    return sent


def redis_dump(url: str) -> bytes:
    """Every key and value in the Redis, of whatever type, as one byte string."""
    client = redis_client(url)
    readers = {
        b"string": client.get,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1),
    }
    parts = []
    for key in client.scan_iter():
        parts += [key, repr(readers.get(client.type(key), lambda _: b"")(key)).encode()]
    return b"\n".join(parts)


def flower_pages(url: str, auth: tuple[str, str], task_ids: list[str]) -> str:
    """Flower's task list (API and page), each task's page, its workers and broker pages."""
    with httpx.Client(base_url=url, auth=auth, timeout=30) as client:
        wait_until(
            lambda: len(client.get("/api/tasks").json()) >= len(task_ids), 60, "Flower's events"
        )
        paths = ["/api/tasks", "/tasks", "/api/workers?refresh=1", "/workers", "/broker"]
        paths += [f"/task/{task_id}" for task_id in task_ids]
        paths += [f"/api/task/info/{task_id}" for task_id in task_ids]
        return "\n".join(client.get(path).text for path in paths)


def canary_columns(needles: list[str]) -> set[tuple[str, str, str]]:
    """(needle, table, column) for every column of every table holding a needle, as text."""
    with session_scope() as session:
        columns = session.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            )
        ).all()
        found = set()
        for table, column in columns:
            query = text(
                "SELECT n FROM unnest(CAST(:needles AS text[])) n WHERE EXISTS"
                f' (SELECT 1 FROM "{table}" WHERE strpos("{column}"::text, n) > 0)'
            )
            found |= {(n, table, column) for n in session.scalars(query, {"needles": needles})}
        return found


def test_no_secret_leaks_into_logs_redis_flower_results_or_the_database(
    tmp_path, database_url, private_redis, agent_key, canary_file, add_instance, sshd, kube,
    plugin_services, closed_port, installations, mcp_server_ids,
):  # fmt: skip
    """Every credential, right or wrong, stays in worker memory: no log, key, page or row has it."""
    key, resolver = agent_key
    configs = instance_configs(sshd, kube, plugin_services, closed_port, resolver, canary_file)
    instances = [(add_instance(kind, port=port, config=config), jobs)
                 for kind, port, config, jobs in configs]  # fmt: skip
    worker, flower, flower_url = worker_and_flower(tmp_path, database_url, private_redis, key)
    app = create_app(Settings(database_url=database_url, broker_url=private_redis))
    try:
        wait_until(lambda: httpx.get(flower_url).status_code == 401, 60, "Flower to listen")
        assert app.send_task("agent.system.ping").get(timeout=60)["pong"] is True
        sent = run_jobs(app, instances, installations, mcp_server_ids)
        pages = flower_pages(flower_url, ("admin", CANARY), [r.id for r in sent])
        assert httpx.get(f"{flower_url}/api/tasks").status_code == 401
    finally:
        kill_group(worker)
        kill_group(flower)
    secrets_ = [CANARY, key, sshd.password, sshd.rsa_passphrase, kube.token,
                plugin_services.state.api_key, plugin_services.state.bearer,
                plugin_services.state.client_secret]  # fmt: skip
    outcomes = json.dumps([(r.state, repr(r.result), r.traceback) for r in sent])
    # The right secrets got in and the wrong ones were refused: the canaries were really used.
    assert "healthy" in outcomes
    assert "auth" in outcomes
    places = {
        "task results and tracebacks": outcomes,
        "worker log": (tmp_path / "worker.log").read_text(errors="replace"),
        "flower log": (tmp_path / "flower.log").read_text(errors="replace"),
        "redis": redis_dump(private_redis).decode(errors="replace"),
        "flower pages": pages,
    }
    leaks = {
        (place, s[:12]) for place, body in places.items() for s in [*secrets_, CLEAR] if s in body
    }
    assert leaks == set()
    assert canary_columns([*secrets_, CLEAR]) == {
        (CLEAR, "infrastructure_instances", "connection_config"),
        (CLEAR, "service_installations", "credentials"),
        (CLEAR, "mcp_server", "endpoint_url"),
    }
