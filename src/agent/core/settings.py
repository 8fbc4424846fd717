"""The agent's one typed configuration, read from the environment once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.core.addresses import DEFAULT_DENY, EVERYWHERE, Family, networks
from agent.core.prune_targets import PruneTarget
from agent.core.secret_scope import DEFAULT_ENV_PREFIX, DEFAULT_FILE_DIRS, DEFAULT_FILE_MAX_BYTES
from agent.core.validation import problems

JOB_QUEUES = ("health", "discovery", "plugins", "benchmarks", "housekeeping")
DEFAULT_QUEUE = "agent"
# Celery's own default queue: where a plain `send_task(name)` from an app that knows none of
# the agent's routes lands. Central workers consume it too, so such a task is run, not lost.
CELERY_QUEUE = "celery"
QUEUES = (*JOB_QUEUES, DEFAULT_QUEUE, CELERY_QUEUE)


class ConfigError(ValueError):
    """A configuration that the agent refuses to run with."""


class Settings(BaseSettings):
    """Every knob of the agent; each field is the variable `AGENT_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="AGENT_", extra="ignore", frozen=True)

    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    secret_key: SecretStr | None = None
    data_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("infra-agent"))
    log_level: str = "INFO"

    flower_user: str = "admin"
    flower_password: SecretStr | None = None
    flower_address: str = "127.0.0.1"
    flower_port: int = 5555

    worker_concurrency: int = Field(default=4, ge=1)
    visibility_timeout_s: int = Field(default=3600, ge=60)
    task_soft_time_limit_s: int = Field(default=300, ge=1)
    task_time_limit_s: int = Field(default=360, ge=1)
    result_expires_s: int = Field(default=86400, ge=60)
    broker_socket_timeout_s: float = Field(default=30.0, gt=0)

    timeseries_backend: Literal["auto", "timescaledb", "native"] = "auto"
    partitions_ahead: int = Field(default=7, ge=1)

    health_interval_s: int = Field(default=60, ge=5)
    health_batch_size: int = Field(default=50, ge=1, le=1000)
    health_concurrency: int = Field(default=32, ge=1, le=512)
    health_timeout_s: float = Field(default=10.0, gt=0)
    health_jitter_s: float = Field(default=1.0, ge=0)
    health_max_per_sweep: int = Field(default=20000, ge=1)
    health_failures_before_offline: int = Field(default=3, ge=1)
    health_successes_before_online: int = Field(default=2, ge=1)
    ssh_pool_size: int = Field(default=512, ge=1)
    ssh_idle_s: float = Field(default=300.0, gt=0)
    # A cached SSH login is trusted this long, then checks log in afresh (sshpool).
    ssh_max_reuse_s: float = Field(default=60.0, gt=0)
    discovery_interval_s: int = Field(default=300, ge=5)
    plugins_interval_s: int = Field(default=120, ge=5)
    housekeeping_interval_s: int = Field(default=900, ge=5)
    retention_interval_s: int = Field(default=3600, ge=5)

    # Discovery (issue 4): batches of instances, discovered concurrently within a batch.
    discovery_batch_size: int = Field(default=20, ge=1, le=1000)
    discovery_concurrency: int = Field(default=8, ge=1, le=256)
    discovery_timeout_s: float = Field(default=30.0, gt=0)
    discovery_max_per_sweep: int = Field(default=20000, ge=1)

    # Housekeeping (issue 7): session pruning, API-key expiry, retention windows.
    prune_extra_tables: tuple[PruneTarget, ...] = ()
    prune_batch_size: int = Field(default=50_000, ge=10, le=100_000)
    prune_statement_target_ms: float = Field(default=100.0, gt=0)
    health_history_retention_days: int = Field(default=30, ge=1)
    benchmarks_retention_days: int | None = Field(default=None, ge=1)
    access_logs_retention_days: int | None = Field(default=None, ge=1)
    audit_logs_retention_days: int | None = Field(default=None, ge=1)

    # Benchmarks (issue 6): ingestion limits and the regression threshold.
    benchmarks_max_payload_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    benchmarks_file_root: Path | None = None
    benchmarks_batch_rows: int = Field(default=20000, ge=100, le=1_000_000)
    benchmarks_future_skew_s: int = Field(default=86400, ge=0)
    benchmarks_test: Literal["t_test", "z_score"] = "t_test"
    benchmarks_boundary: float = Field(default=0.99, gt=0.5, lt=1)
    benchmarks_min_sample_size: int = Field(default=5, ge=2)
    benchmarks_max_sample_size: int = Field(default=64, ge=2, le=10_000)
    benchmarks_min_effect: float = Field(default=0.05, ge=0)

    # Plugin health (issue 5): installed services over HTTP, MCP servers over MCP.
    plugins_batch_size: int = Field(default=200, ge=1, le=5000)
    plugins_concurrency: int = Field(default=32, ge=1, le=512)
    plugins_timeout_s: float = Field(default=5.0, gt=0)
    plugins_max_connections: int = Field(default=100, ge=1)
    plugins_connections_per_host: int = Field(default=8, ge=1)
    plugins_max_per_refresh: int = Field(default=20000, ge=1)
    plugins_failures_before_error: int = Field(default=3, ge=1)
    plugins_successes_before_active: int = Field(default=2, ge=1)

    # Highly available beat (issue 9): the leader lease that lets only one beat dispatch.
    beat_lease_ttl_s: float = Field(default=30.0, ge=3, le=3600)

    # Observability (issue 9): metrics port, log format, the worker's liveness heartbeat.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_address: str = "0.0.0.0"  # noqa: S104  (Prometheus scrapes from another host)
    log_format: Literal["text", "json"] = "text"
    liveness_file: Path | None = None
    liveness_interval_s: float = Field(default=10.0, gt=0)
    liveness_max_age_s: float = Field(default=60.0, gt=0)

    # Trust boundary (issue 15): keys, the reach of secret references, the address policy.
    secret_previous_keys: tuple[SecretStr, ...] = ()
    secret_env_prefix: str = DEFAULT_ENV_PREFIX
    secret_env_names: tuple[str, ...] = ()
    secret_file_dirs: tuple[Path, ...] = tuple(Path(d) for d in DEFAULT_FILE_DIRS)
    secret_file_max_bytes: int = Field(default=DEFAULT_FILE_MAX_BYTES, ge=1, le=1024 * 1024)
    instances_allow_cidrs: tuple[str, ...] = EVERYWHERE
    instances_deny_cidrs: tuple[str, ...] = DEFAULT_DENY[Family.INSTANCES]
    plugins_allow_cidrs: tuple[str, ...] = EVERYWHERE
    plugins_deny_cidrs: tuple[str, ...] = DEFAULT_DENY[Family.PLUGINS]

    @field_validator(
        "instances_allow_cidrs", "instances_deny_cidrs", "plugins_allow_cidrs", "plugins_deny_cidrs"
    )
    @classmethod
    def _cidrs_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks(value)
        return value

    @model_validator(mode="after")
    def _limits_fit_visibility(self) -> Settings:
        check_time_limits(
            self.task_soft_time_limit_s, self.task_time_limit_s, self.visibility_timeout_s
        )
        return self

    @property
    def liveness_path(self) -> Path:
        """The worker's heartbeat file: AGENT_LIVENESS_FILE, else in the data directory."""
        return self.liveness_file or self.data_dir / "worker.alive"

    @property
    def kept_key_path(self) -> Path:
        """Where `infra-agent up` keeps the Fernet key it made when AGENT_SECRET_KEY is unset."""
        return self.data_dir / "secret.key"

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver named, as SQLAlchemy wants it."""
        return to_sqlalchemy_url(require(self.database_url, "AGENT_DATABASE_URL"))


def check_time_limits(soft_s: float | None, hard_s: float | None, visibility_s: float) -> None:
    """Refuse limits that would let Redis redeliver a task that is still running."""
    if soft_s is not None and hard_s is not None and soft_s >= hard_s:
        raise ConfigError(f"soft time limit {soft_s}s must be below the hard limit {hard_s}s")
    if hard_s is not None and hard_s >= visibility_s:
        raise ConfigError(
            f"time limit {hard_s}s must be below the broker visibility timeout {visibility_s}s, "
            "or a running task would be delivered a second time"
        )


def to_sqlalchemy_url(url: str) -> str:
    """Name the psycopg 3 driver in a plain `postgresql://` URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def require(value: str | None, name: str) -> str:
    """Return a setting that must be present, or say which variable is missing."""
    if not value:
        raise ConfigError(f"{name} is not set (run `infra-agent up` for the embedded default)")
    return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with errors that never echo an input (it may be a secret)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        described = problems(exc, name=lambda field: f"AGENT_{field.upper()}")
        raise ConfigError(f"invalid configuration: {described}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return load_settings()
