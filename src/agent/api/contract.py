"""The tasks other apps call: stable names, queues, and the types of arguments and results.

This is the one place the task interface is written down. `agent.api.client` sends with it,
`agent.api.schemas` turns it into the JSON Schemas in docs/schemas/, and the tasks declare their
results with it. It imports nothing but `typing` (and `typing_extensions`), so an app can
use it without the worker's dependencies. Arguments travel as keyword arguments; every value
is plain JSON.
"""

from dataclasses import dataclass
from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic reads this one's fields on Python < 3.12

# Queues of the job families; every other task goes to DEFAULT_QUEUE (as agent.core.settings).
JOB_FAMILIES = ("health", "discovery", "plugins", "benchmarks", "housekeeping")
DEFAULT_QUEUE = "agent"
FORMATS = ("pytest-benchmark", "google-benchmark", "json", "csv")

Format = Literal["pytest-benchmark", "google-benchmark", "json", "csv"]
PluginType = Literal["installation", "mcp_server"]


class NoArguments(TypedDict):
    """The task takes no arguments."""


class InstanceId(TypedDict):
    """One instance of `infrastructure_instances`."""

    instance_id: str


class InstanceIds(TypedDict):
    """A batch of instances (at most 10000), as the sweep sends it."""

    instance_ids: list[str]


class InstallationId(TypedDict):
    """One row of `installed_services`."""

    installation_id: str


class ServerId(TypedDict):
    """One row of `mcp_server`."""

    server_id: str


class PluginBatchArguments(TypedDict):
    """A batch of plugins of one type, as the refresh sends it."""

    plugin_type: PluginType
    ids: list[str]


class Defaults(TypedDict, total=False):
    """Values for the fields a payload's rows leave out."""

    package: str
    version: str
    branch: str
    commit: str
    testbed: str
    run_id: str


class IngestArguments(TypedDict):
    """One run inline: JSON or CSV text, or a JSON document (AGENT_BENCHMARKS_MAX_PAYLOAD_BYTES)."""

    payload: str | dict[str, Any] | list[Any]
    format: NotRequired[Format | None]
    defaults: NotRequired[Defaults | None]


class IngestFileArguments(TypedDict):
    """One run from a file, its path relative to AGENT_BENCHMARKS_FILE_ROOT."""

    path: str
    format: NotRequired[Format | None]
    defaults: NotRequired[Defaults | None]


class AlertsArguments(TypedDict):
    """Open alerts of one package (or all); `limit` from 1 to 10000, 100 by default."""

    package: NotRequired[str | None]
    limit: NotRequired[int]


class Progress(TypedDict):
    """The meta of a task in state PROGRESS: `done` of `total` (null when unknown) `unit`s."""

    done: int
    total: int | None
    unit: str


class Pong(TypedDict):
    """A worker answered and reached the database."""

    pong: bool
    hostname: str
    database_ms: float


class Dispatched(TypedDict):
    """A sweep sent its batches: instances, batches per queue, and the batch task ids."""

    dispatched: int
    batches: int
    queues: dict[str, int]
    batch_ids: list[str]


class Skipped(TypedDict):
    """A sweep or refresh that another one within the interval made unnecessary."""

    dispatched: int
    skipped: str


class CheckOutcome(TypedDict):
    """One raw check of a batch."""

    kind: str
    status: str
    error_class: str | None
    latency_ms: float


class HealthBatch(TypedDict):
    """A health batch: instances checked, damped statuses, changes, and each raw check."""

    checked: int
    by_status: dict[str, int]
    changed: int
    checks: list[CheckOutcome]


class Check(TypedDict):
    """The raw result of one check, as stored in `health_status.check`."""

    kind: str
    status: str
    latency_ms: float
    error_class: str | None
    message: str
    facts: dict[str, Any]
    checks: dict[str, str]


class CheckSummary(TypedDict):
    """One instance after its check: the damped status it moved to and the raw check."""

    instance_id: str
    name: str
    previous_status: str
    status: str
    checked_at: str
    consecutive_failures: int
    consecutive_successes: int
    check: Check


class NotChecked(TypedDict):
    """No such instance, deleted, or a check of it is already running."""

    instance_id: str
    status: Literal["not_checked"]
    message: str


class DiscoveryBatch(TypedDict):
    """A discovery batch: instances discovered or failed, and service counts."""

    discovered: int
    failed: int
    seen: int
    new: int
    updated: int
    missing: int
    matched: int


class DiscoveryOutcome(TypedDict):
    """What one discovery read, without the services themselves."""

    kind: str
    ok: bool
    services: int
    error_class: str | None
    message: str
    duration_ms: float


class DiscoverySummary(TypedDict):
    """One instance after its discovery: what was reconciled into `instance_services`."""

    instance_id: str
    name: str
    status: Literal["discovered", "failed"]
    seen: int
    new: int
    updated: int
    missing: int
    matched: int
    assigned: int
    kept_by_people: int
    discovery: DiscoveryOutcome


class NotDiscovered(TypedDict):
    """No such instance, deleted, or a discovery of it is already running."""

    instance_id: str
    status: Literal["not_discovered"]
    message: str


class RefreshDispatched(TypedDict):
    """A plugin refresh sent its batches: plugins, batches and plugins by type, batch ids."""

    dispatched: int
    batches: dict[str, int]
    by_type: dict[str, int]
    batch_ids: list[str]


class ToolChanges(TypedDict):
    """How an MCP server's tools changed since its last check."""

    added: int
    changed: int
    removed: int
    unchanged: int


class PluginBatch(TypedDict):
    """A plugin batch: plugins checked, by health word, changes, tool changes by server."""

    checked: int
    by_health: dict[str, int]
    changed: int
    tools: NotRequired[dict[str, ToolChanges]]


class PluginSummary(TypedDict):
    """What every plugin check returns: its health word, damped status, since when and why."""

    id: str
    name: str
    health_status: str
    status: str
    previous_status: str
    since: str
    checked_at: str
    reason: str | None
    latency_ms: float
    error_class: str | None


class InstallationSummary(PluginSummary):
    """One installed service after its check."""

    plugin_type: Literal["installation"]
    space_id: str | None
    deprecated: bool


class McpServerSummary(PluginSummary):
    """One MCP server after its check, with its tool changes."""

    plugin_type: Literal["mcp_server"]
    tenant_id: str | None
    transport_type: str
    tools: NotRequired[ToolChanges]


class PluginNotChecked(TypedDict):
    """No such plugin, deleted, not checkable from a worker, or a check of it is running."""

    plugin_type: PluginType
    id: str
    status: Literal["not_checked"]
    message: str


class Reason(TypedDict):
    """Why rows were quarantined: how many, and the first row numbers."""

    reason: str
    rows: int
    examples: list[int]


class Regression(TypedDict):
    """A regression found by an ingest (null statistics come from a constant history)."""

    package_name: str
    benchmark: str
    metric: str
    branch: str
    testbed: str
    timestamp: str
    run_id: str
    unit: str
    value: float
    baseline: float
    stdev: float
    samples: int
    change: float
    direction: str
    test: str
    statistic: float | None
    p_value: float | None
    limit_value: float | None


class Alert(Regression):
    """An open row of `benchmark_alerts`."""

    id: str
    status: str
    created_at: str


class Ingested(TypedDict):
    """A stored run: rows accepted, already there, quarantined (with reasons) or skipped."""

    status: Literal["done"]
    ingest_id: str
    format: str
    accepted: int
    duplicate: int
    quarantined: int
    skipped: int
    reasons: list[Reason]
    alerts: int
    regressions: list[Regression]


class Rejected(TypedDict):
    """An unreadable payload: nothing stored, the ingest recorded as rejected."""

    status: Literal["rejected"]
    ingest_id: str
    error: str


class Pruned(TypedDict):
    """Rows deleted per table; `complete` is false when the time budget ran out first."""

    deleted: dict[str, int]
    total: int
    batches: int
    longest_statement_ms: float
    complete: bool


class PruneSkipped(TypedDict):
    """Another prune is running."""

    skipped: str
    total: int


class KeysExpired(TypedDict):
    """API keys deactivated."""

    deactivated: int
    complete: bool


class Retained(TypedDict):
    """Last partition ready ahead and what was dropped, per series; log rows pruned."""

    ready: dict[str, str | None]
    dropped: dict[str, list[str]]
    deferred: list[str]
    logs: Pruned


class RetentionSkipped(TypedDict):
    """Another retention run is going on."""

    skipped: str


@dataclass(frozen=True)
class TaskContract:
    """One task: its stable name, what it takes and returns, and whether it reports progress."""

    name: str
    arguments: type
    result: Any
    on_demand: bool = True  # False: sent by a sweep with leases taken, not by other apps
    progress: bool = False

    @property
    def queue(self) -> str:
        """The queue `agent.<family>.*` routes to."""
        family = self.name.split(".")[1]
        return family if family in JOB_FAMILIES else DEFAULT_QUEUE


TASKS = {
    task.name: task
    for task in (
        TaskContract("agent.system.ping", NoArguments, Pong),
        TaskContract("agent.health.sweep", NoArguments, Dispatched | Skipped, progress=True),
        TaskContract("agent.health.check_batch", InstanceIds, HealthBatch, False, True),
        TaskContract("agent.health.check_instance", InstanceId, CheckSummary | NotChecked),
        TaskContract("agent.discovery.sweep", NoArguments, Dispatched | Skipped, progress=True),
        TaskContract("agent.discovery.discover_batch", InstanceIds, DiscoveryBatch, False, True),
        TaskContract(
            "agent.discovery.discover_instance", InstanceId, DiscoverySummary | NotDiscovered
        ),
        TaskContract(
            "agent.plugins.refresh", NoArguments, RefreshDispatched | Skipped, progress=True
        ),
        TaskContract("agent.plugins.check_batch", PluginBatchArguments, PluginBatch, False),
        TaskContract(
            "agent.plugins.check_installation",
            InstallationId,
            InstallationSummary | PluginNotChecked,
        ),
        TaskContract(
            "agent.plugins.check_mcp_server", ServerId, McpServerSummary | PluginNotChecked
        ),
        TaskContract(
            "agent.benchmarks.ingest", IngestArguments, Ingested | Rejected, progress=True
        ),
        TaskContract(
            "agent.benchmarks.ingest_file", IngestFileArguments, Ingested | Rejected, progress=True
        ),
        TaskContract("agent.benchmarks.alerts", AlertsArguments, list[Alert]),
        TaskContract(
            "agent.housekeeping.prune_sessions", NoArguments, Pruned | PruneSkipped, progress=True
        ),
        TaskContract("agent.housekeeping.expire_api_keys", NoArguments, KeysExpired),
        TaskContract(
            "agent.housekeeping.apply_retention",
            NoArguments,
            Retained | RetentionSkipped,
            progress=True,
        ),
    )
}
