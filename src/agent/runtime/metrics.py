"""Prometheus metrics of a worker, read from what its tasks return: recorded in one place.

Tasks run in prefork children, so the metrics use prometheus_client's multiprocess mode:
every process writes its samples to files in a directory the worker creates at start-up
(and removes on shutdown), and the main process serves the sum of them all over HTTP. The
task results already carry everything worth counting, so Celery's task signals are the only
hook: no job's code knows metrics exist.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
    values,
)

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
DIRECTORY_PREFIX = "infra-agent-metrics-"


@dataclass(frozen=True)
class Metrics:
    """Every metric the agent exports."""

    checks: Counter
    check_latency: Histogram
    discoveries: Counter
    discovery_changes: Counter
    benchmark_ingests: Counter
    benchmark_rows: Counter
    pruned_rows: Counter
    expired_api_keys: Counter
    dropped_partitions: Counter
    plugin_checks: Counter
    task_duration: Histogram
    sweep_interval: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        """The metrics, registered with `registry` (samples go to the multiprocess files)."""
        # One flat declaration per metric: long, but there is nothing to factor out.
        r: dict[str, Any] = {"registry": registry}
        return cls(
            checks=Counter(
                "agent_checks", "Health checks by probe kind, verdict and error class.",
                ["kind", "status", "error_class"], **r,
            ),
            check_latency=Histogram(
                "agent_check_latency_seconds", "Health check latency by probe kind.",
                ["kind"], buckets=LATENCY_BUCKETS_S, **r,
            ),
            discoveries=Counter(
                "agent_discoveries", "Instance discoveries by outcome.", ["status"], **r
            ),
            discovery_changes=Counter(
                "agent_discovery_changes", "Services added, changed or removed (missing).",
                ["change"], **r,
            ),
            benchmark_ingests=Counter(
                "agent_benchmark_ingests", "Benchmark payloads by outcome.", ["status"], **r
            ),
            benchmark_rows=Counter(
                "agent_benchmark_rows", "Benchmark rows by outcome.", ["outcome"], **r
            ),
            pruned_rows=Counter(
                "agent_pruned_rows", "Rows deleted by housekeeping, by table.", ["table"], **r
            ),
            expired_api_keys=Counter(
                "agent_expired_api_keys", "API keys deactivated past their expiry.", **r
            ),
            dropped_partitions=Counter(
                "agent_dropped_partitions", "Time-series partitions or chunks dropped.",
                ["series"], **r,
            ),
            plugin_checks=Counter(
                "agent_plugin_checks", "Plugin and MCP server checks by verdict.",
                ["plugin_type", "health"], **r,
            ),
            task_duration=Histogram(
                "agent_task_duration_seconds", "Run time of each task, by name and final state.",
                ["task", "state"], buckets=DURATION_BUCKETS_S, **r,
            ),
            sweep_interval=Gauge(
                "agent_sweep_interval_seconds", "Configured interval of each periodic task.",
                ["task"], multiprocess_mode="max", **r,
            ),
        )  # fmt: skip


_metrics: Metrics | None = None
_started: dict[str, float] = {}


def active() -> Metrics | None:
    """The metrics of this process, or None when they are disabled."""
    return _metrics


def enable(directory: Path) -> Metrics:
    """Turn on multiprocess metrics in `directory`, for this process and those it forks."""
    global _metrics
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # Chosen when prometheus_client is imported, which happened before the worker knew it
    # wanted metrics: switch the value class before the first metric exists.
    values.ValueClass = values.MultiProcessValue()
    _metrics = Metrics.create(CollectorRegistry())
    return _metrics


def disable() -> None:
    """Stop recording in this process (the files stay until the directory is removed)."""
    global _metrics
    _metrics = None
    _started.clear()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    values.ValueClass = values.MutexValue


def collecting_registry(directory: Path) -> CollectorRegistry:
    """A registry that sums the samples of every process that wrote to `directory`."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry


def new_directory() -> Path:
    """A fresh, private directory for the multiprocess files: stale ones would add up."""
    return Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX))


def remove_directory(directory: Path) -> None:
    """Remove the multiprocess files of a worker that is going away."""
    shutil.rmtree(directory, ignore_errors=True)


def serve(directory: Path, address: str, port: int) -> Callable[[], None] | None:
    """Serve the metrics of every process writing to `directory`; a function that stops it."""
    try:
        server, thread = start_http_server(port, address, collecting_registry(directory))
    except OSError as exc:
        # The worker's jobs matter more than its metrics: say so loudly, and carry on.
        log.error("metrics: cannot listen on %s:%s (%s); serving none", address, port, exc)
        return None
    log.info("metrics: serving on http://%s:%s/metrics", address or "0.0.0.0", port)  # noqa: S104

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def task_started(task_id: str) -> None:
    """Note when a task began (Celery's task_prerun)."""
    if _metrics is not None:
        _started[task_id] = time.perf_counter()


def task_finished(task_id: str, task_name: str, state: str | None) -> None:
    """Observe a task's run time (Celery's task_postrun)."""
    began = _started.pop(task_id, None)
    if _metrics is not None and began is not None:
        elapsed = time.perf_counter() - began
        _metrics.task_duration.labels(task_name, state or "UNKNOWN").observe(elapsed)


def task_succeeded(task_name: str, result: object, arguments: Mapping[str, Any]) -> None:
    """Count what a finished task did, read from its result (Celery's task_success)."""
    recorder = RECORDERS.get(task_name)
    if _metrics is not None and recorder is not None and isinstance(result, dict):
        recorder(_metrics, result, arguments)


def record_intervals(metrics: Metrics, intervals: Mapping[str, float]) -> None:
    """Publish each periodic task's configured interval, to compare its duration with."""
    for task_name, interval_s in intervals.items():
        metrics.sweep_interval.labels(task_name).set(interval_s)


Recorder = Callable[[Metrics, dict[str, Any], Mapping[str, Any]], None]


def _check(m: Metrics, check: Mapping[str, Any]) -> None:
    kind = str(check.get("kind"))
    m.checks.labels(kind, str(check.get("status")), str(check.get("error_class") or "none")).inc()
    m.check_latency.labels(kind).observe(float(check.get("latency_ms") or 0.0) / 1000)


def _health_batch(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    for check in result.get("checks", ()):
        _check(m, check)


def _health_instance(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    if "check" in result:
        _check(m, result["check"])


CHANGES = {"new": "added", "updated": "changed", "missing": "removed"}


def _discovery_changes(m: Metrics, result: Mapping[str, Any]) -> None:
    for field, change in CHANGES.items():
        m.discovery_changes.labels(change).inc(int(result.get(field) or 0))


def _discovery_batch(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    for status in ("discovered", "failed"):
        m.discoveries.labels(status).inc(int(result.get(status) or 0))
    _discovery_changes(m, result)


def _discovery_instance(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    if result.get("status") in ("discovered", "failed"):
        m.discoveries.labels(result["status"]).inc()
        _discovery_changes(m, result)


def _benchmarks(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    m.benchmark_ingests.labels(str(result.get("status"))).inc()
    for outcome in ("accepted", "duplicate", "quarantined", "skipped"):
        m.benchmark_rows.labels(outcome).inc(int(result.get(outcome) or 0))


def _deleted(m: Metrics, result: Mapping[str, Any]) -> None:
    for table, deleted in (result.get("deleted") or {}).items():
        m.pruned_rows.labels(table).inc(int(deleted))


def _prune(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    _deleted(m, result)


def _retention(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    _deleted(m, result.get("logs") or {})
    for series, dropped in (result.get("dropped") or {}).items():
        m.dropped_partitions.labels(series).inc(len(dropped))


def _expire_keys(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    m.expired_api_keys.inc(int(result.get("deactivated") or 0))


def _plugin_batch(m: Metrics, result: dict[str, Any], arguments: Mapping[str, Any]) -> None:
    for health, count in (result.get("by_health") or {}).items():
        m.plugin_checks.labels(str(arguments.get("plugin_type")), health).inc(int(count))


def _plugin_one(m: Metrics, result: dict[str, Any], _: Mapping[str, Any]) -> None:
    if "health_status" in result:
        m.plugin_checks.labels(str(result["plugin_type"]), result["health_status"]).inc()


RECORDERS: dict[str, Recorder] = {
    "agent.health.check_batch": _health_batch,
    "agent.health.check_instance": _health_instance,
    "agent.discovery.discover_batch": _discovery_batch,
    "agent.discovery.discover_instance": _discovery_instance,
    "agent.benchmarks.ingest": _benchmarks,
    "agent.benchmarks.ingest_file": _benchmarks,
    "agent.housekeeping.prune_sessions": _prune,
    "agent.housekeeping.apply_retention": _retention,
    "agent.housekeeping.expire_api_keys": _expire_keys,
    "agent.plugins.check_batch": _plugin_batch,
    "agent.plugins.check_installation": _plugin_one,
    "agent.plugins.check_mcp_server": _plugin_one,
}
