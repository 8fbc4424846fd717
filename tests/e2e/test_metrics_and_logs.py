import json
import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.core.credentials import SecretResolver, generate_key
from tests.support.network import free_port
from tests.support.processes import wait_until
from tests.support.rows import add_sessions
from tests.support.workers import listening_ports, private_redis, running_worker

pytestmark = pytest.mark.timeout(240)

WORKER_KEY = generate_key()
CANARY = "canary-pass-5521"
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def observed_worker(database_url, tmp_path_factory):
    """A prefork worker with metrics on a port, JSON logs, on a Redis of its own."""
    port = free_port()
    with (
        private_redis() as (broker_url, _),
        running_worker(
            tmp_path_factory.mktemp("observed"),
            broker_url,
            database_url=database_url,
            secret_key=WORKER_KEY,
            metrics_port=str(port),
            metrics_address="127.0.0.1",
            log_format="json",
        ) as worker,
    ):
        worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: httpx.get(worker.metrics_url).status_code == 200, 30, "metrics")
        yield worker


@pytest.fixture
def listening_port():
    """A TCP port something listens on, for a health check that succeeds."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def scrape(worker) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(worker.metrics_url).text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def run(worker, name, *args, **kwargs):
    return worker.client.send_task(name, args=args, kwargs=kwargs).get(timeout=TIMEOUT_S)


def test_metrics_count_checks_ingested_rows_pruned_rows_and_task_durations(
    observed_worker,
    add_instance,
    listening_port,
    package,
    user_id,
):
    worker = observed_worker
    up = add_instance("tcp", port=listening_port)
    down = add_instance("tcp", port=free_port())
    add_sessions(user_id, 3, -3600)
    before = scrape(worker)

    batch = run(worker, "agent.health.check_batch", [str(up), str(down)])
    run(worker, "agent.health.check_instance", str(up))
    csv = "benchmark,metric,value,unit,timestamp\nparse,latency,1.5,ms,2025-06-01T00:00:00Z\n"
    csv += "parse,latency,not-a-number,ms,2025-06-01T00:00:01Z\n"
    ingest = run(worker, "agent.benchmarks.ingest", csv, "csv", {"package": package})
    prune = run(worker, "agent.housekeeping.prune_sessions")
    after = scrape(worker)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert batch["checked"] == 2
    assert moved("agent_checks_total", kind="tcp", status="ok", error_class="none") == 2
    assert moved("agent_checks_total", kind="tcp", status="critical", error_class="refused") == 1
    assert moved("agent_check_latency_seconds_count", kind="tcp") == 3
    assert moved("agent_check_latency_seconds_bucket", kind="tcp", le="+Inf") == 3
    assert (ingest["accepted"], ingest["quarantined"]) == (1, 1)
    assert moved("agent_benchmark_rows_total", outcome="accepted") == 1
    assert moved("agent_benchmark_rows_total", outcome="quarantined") == 1
    assert moved("agent_benchmark_ingests_total", status="done") == 1
    assert moved("agent_pruned_rows_total", table="sessions") == prune["deleted"]["sessions"] >= 3
    duration = "agent_task_duration_seconds_count"
    assert moved(duration, task="agent.health.check_batch", state="SUCCESS") == 1
    assert value(after, "agent_sweep_interval_seconds", task="agent.health.sweep") == 60


def test_the_metrics_port_is_the_only_port_the_worker_listens_on(observed_worker):
    port = int(observed_worker.metrics_url.split(":")[2].split("/")[0])
    assert listening_ports(observed_worker.proc.pid) == {port}


def test_every_log_line_is_json_and_lines_of_a_task_carry_its_id(observed_worker, add_instance):
    worker = observed_worker
    config = {"username": "agent", "password": SecretResolver(WORKER_KEY).encrypt(CANARY)}
    target = add_instance("ssh", port=free_port(), config=config)
    sent = worker.client.send_task("agent.discovery.discover_instance", args=[str(target)])
    assert sent.get(timeout=TIMEOUT_S)["status"] == "failed"
    done = f"[{sent.id}] succeeded"
    wait_until(lambda: done in worker.log.read_text(), 30, "the task's last line")

    lines = [json.loads(line) for line in worker.lines()]
    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    warning = next(line for line in lines if f"discovery of {target} failed" in line["message"])
    assert (warning["task_id"], warning["task_name"]) == (
        sent.id,
        "agent.discovery.discover_instance",
    )
    assert next(line for line in lines if done in line["message"])["task_id"] == sent.id
    assert CANARY not in worker.log.read_text()
