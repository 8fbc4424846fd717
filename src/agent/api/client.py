"""Trigger the agent's tasks from another Python app: one import, one call, typed results.

    from agent.api.client import AgentClient

    agent = AgentClient("redis://redis:6379/0")
    summary = agent.check_instance(instance_id).get(timeout=60)

It needs Celery and the broker's URL, nothing of the worker: no database driver, no SSH,
Docker or Kubernetes client. Tasks are sent by their stable names with keyword arguments
of plain JSON, to the queue their family routes to; `agent.api.contract` has the types and
docs/schemas/ the same as JSON Schemas.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from agent.api import contract

R = TypeVar("R")
POLL_S = 0.2


class TaskResult(Generic[R]):
    """A task sent to the agent: its id, its progress while it runs, its result when done."""

    def __init__(self, result: AsyncResult[R]) -> None:
        self._result = result

    @property
    def id(self) -> str:
        """The task id (also the key of its result in the result backend)."""
        return self._result.id

    @property
    def state(self) -> str:
        """PENDING, STARTED, PROGRESS, SUCCESS, FAILURE, RETRY or REVOKED."""
        return self._result.state

    def ready(self) -> bool:
        """Whether the task has finished, one way or the other."""
        return self._result.ready()

    def snapshot(self) -> tuple[str, Any]:
        """The state and its info (progress meta, result or error), read once from the backend."""
        meta = self._result.backend.get_task_meta(self.id)
        return meta.get("status", "PENDING"), meta.get("result")

    def progress(self) -> contract.Progress | None:
        """The latest PROGRESS meta (`done`, `total`, `unit`, ...), or None when there is none."""
        state, info = self.snapshot()
        return info if state == "PROGRESS" else None

    def get(self, timeout: float | None = None) -> R:
        """The result; raises the task's error, or TimeoutError after `timeout` seconds."""
        try:
            return self._result.get(timeout=timeout, propagate=True, interval=POLL_S)
        except CeleryTimeout:
            raise TimeoutError(f"task {self.id} did not finish in {timeout} s") from None

    def wait(
        self, timeout_s: float, on_progress: Callable[[contract.Progress], object] | None = None
    ) -> R:
        """The result, calling `on_progress(meta)` with the PROGRESS seen while it runs."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            meta = self.progress()
            if meta is not None and on_progress is not None:
                on_progress(meta)
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {self.id} did not finish in {timeout_s} s")
            time.sleep(POLL_S)
        return self.get(timeout=max(1.0, deadline - time.monotonic()))

    def forget(self) -> None:
        """Drop the stored result once it has been read."""
        self._result.forget()


class AgentClient:
    """Sends the agent's on-demand tasks; one typed method per task."""

    def __init__(
        self,
        broker_url: str,
        result_backend: str | None = None,
        *,
        transport_options: dict[str, Any] | None = None,
        result_transport_options: dict[str, Any] | None = None,
    ) -> None:
        """Transport options as the workers use them (e.g. `global_keyprefix`)."""
        options = dict(transport_options or {})
        result_options = dict(
            options if result_transport_options is None else result_transport_options
        )
        self.app = Celery("agent-client", set_as_current=False)
        self.app.conf.update(
            broker_url=broker_url,
            result_backend=result_backend or broker_url,
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            broker_transport_options=options,
            result_backend_transport_options=result_options,
            broker_connection_retry_on_startup=True,
        )

    def send(self, name: str, **arguments: Any) -> TaskResult[Any]:
        """Send the task `name` (see agent.api.contract.TASKS) with keyword arguments."""
        task = contract.TASKS.get(name)
        if task is None:
            raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(contract.TASKS))}")
        plain = {key: _plain(value) for key, value in arguments.items()}
        return TaskResult(self.app.send_task(name, kwargs=plain, queue=task.queue))

    def result(self, task_id: str) -> TaskResult[Any]:
        """A task sent earlier, by its id."""
        return TaskResult(self.app.AsyncResult(task_id))

    def close(self) -> None:
        """Close the broker and result-backend connections."""
        self.app.close()

    def ping(self) -> TaskResult[contract.Pong]:
        """A worker answers and reaches the database."""
        return self.send("agent.system.ping")

    def health_sweep(self) -> TaskResult[contract.Dispatched | contract.Skipped]:
        """Check every due instance now (the periodic sweep, sent early)."""
        return self.send("agent.health.sweep")

    def check_instance(
        self, instance_id: str | uuid.UUID
    ) -> TaskResult[contract.CheckSummary | contract.NotChecked]:
        """Check one instance now and write the result."""
        return self.send("agent.health.check_instance", instance_id=instance_id)

    def discovery_sweep(self) -> TaskResult[contract.Dispatched | contract.Skipped]:
        """Discover every discoverable instance now."""
        return self.send("agent.discovery.sweep")

    def discover_instance(
        self, instance_id: str | uuid.UUID
    ) -> TaskResult[contract.DiscoverySummary | contract.NotDiscovered]:
        """Discover what runs on one instance now and reconcile it."""
        return self.send("agent.discovery.discover_instance", instance_id=instance_id)

    def plugins_refresh(self) -> TaskResult[contract.RefreshDispatched | contract.Skipped]:
        """Check every due installation and MCP server now."""
        return self.send("agent.plugins.refresh")

    def check_installation(
        self, installation_id: str | uuid.UUID
    ) -> TaskResult[contract.InstallationSummary | contract.PluginNotChecked]:
        """Check one installed service now."""
        return self.send("agent.plugins.check_installation", installation_id=installation_id)

    def check_mcp_server(
        self, server_id: str | uuid.UUID
    ) -> TaskResult[contract.McpServerSummary | contract.PluginNotChecked]:
        """Check one MCP server now and refresh its tools."""
        return self.send("agent.plugins.check_mcp_server", server_id=server_id)

    def ingest(
        self,
        payload: str | dict[str, Any] | list[Any],
        format: contract.Format | None = None,
        defaults: contract.Defaults | None = None,
    ) -> TaskResult[contract.Ingested | contract.Rejected]:
        """Ingest one benchmark run sent inline."""
        return self.send(
            "agent.benchmarks.ingest", payload=payload, format=format, defaults=defaults
        )

    def ingest_file(
        self,
        path: str,
        format: contract.Format | None = None,
        defaults: contract.Defaults | None = None,
    ) -> TaskResult[contract.Ingested | contract.Rejected]:
        """Ingest one benchmark run from a file under the workers' AGENT_BENCHMARKS_FILE_ROOT."""
        return self.send(
            "agent.benchmarks.ingest_file", path=path, format=format, defaults=defaults
        )

    def alerts(
        self, package: str | None = None, limit: int = 100
    ) -> TaskResult[list[contract.Alert]]:
        """Open regression alerts, newest first."""
        return self.send("agent.benchmarks.alerts", package=package, limit=limit)

    def prune_sessions(self) -> TaskResult[contract.Pruned | contract.PruneSkipped]:
        """Delete expired sessions and verifications now."""
        return self.send("agent.housekeeping.prune_sessions")

    def expire_api_keys(self) -> TaskResult[contract.KeysExpired]:
        """Deactivate expired API keys now."""
        return self.send("agent.housekeeping.expire_api_keys")

    def apply_retention(self) -> TaskResult[contract.Retained | contract.RetentionSkipped]:
        """Create partitions ahead and drop what is past retention now."""
        return self.send("agent.housekeeping.apply_retention")


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value
