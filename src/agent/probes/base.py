"""The probe template: a probe writes only `check()`; `run()` never raises.

`run()` times the check, turns every failure into a result with an error class, and scrubs
the probe's secrets out of the message. Probes never touch the database and import nothing
from `models` or `sqlalchemy`.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

from agent.connections.deadline import deadline_scope
from agent.connections.known_hosts import KnownHosts
from agent.connections.sshpool import TransportPool
from agent.core.credentials import RecordingResolver, Resolves, SecretResolver
from agent.core.results import (
    UNREACHABLE_CLASSES,
    ErrorClass,
    Observation,
    ProbeResult,
    Status,
    classify,
    scrub,
    undecryptable,
)


@dataclass(frozen=True)
class InstanceFacts:
    """What the instance row keeps of a check: `os_type`, `os_version`, `resources`."""

    os_type: str | None = None
    os_version: str | None = None
    resources: dict[str, Any] | None = None


Out = TypeVar("Out")


@dataclass(frozen=True)
class Target:
    """One instance row as a probe or discoverer is made from it, with what the worker lends."""

    host: str
    port: int | None
    connection_config: Mapping[str, Any] = field(repr=False)
    resolver: SecretResolver = field(repr=False)
    timeout_s: float
    known_hosts: KnownHosts | None = None  # the host keys SSH trusts
    pool: TransportPool | None = None  # SSH's transport cache

    def raw(self) -> dict[str, Any]:
        """The config's values with the row's host, and its port unless the config names one."""
        raw = {"host": self.host, **self.connection_config}
        if self.port is not None:
            raw.setdefault("port", self.port)
        return raw


class Template(ABC, Generic[Out]):
    """What probes and discoverers share: `run()` never raises, secrets never leave.

    `run()` makes one attempt against one deadline, `timeout_s` from now, that HTTP clients
    obey; a failure becomes an outcome with an error class, and every message is scrubbed of
    the values resolved through `tracking()` (or added to `revealed`).
    """

    kind: ClassVar[str]
    timeout_s: float = math.inf

    @classmethod
    def from_instance(
        cls,
        host: str,
        port: int | None,
        connection_config: Mapping[str, Any],
        resolver: SecretResolver,
        timeout_s: float,
        *,
        known_hosts: KnownHosts | None = None,
        pool: TransportPool | None = None,
    ) -> Self:
        """The one factory signature of every probe and discoverer: made from an instance row."""
        target = Target(host, port, connection_config, resolver, timeout_s, known_hosts, pool)
        return cls.of(target)

    @classmethod
    def of(cls, target: Target) -> Self:
        """Made from `target`; a bad config becomes a CONFIG outcome when run."""
        raise NotImplementedError(f"{cls.__name__} is not made from an instance row")

    @abstractmethod
    def attempt(self) -> Any:
        """Look at the target; raise on failure (ideally a `ProbeError`)."""

    @abstractmethod
    def succeeded(self, seen: Any, elapsed_ms: float) -> Out:
        """The outcome of an attempt that returned `seen`."""

    @abstractmethod
    def failed(self, exc: BaseException, elapsed_ms: float) -> Out:
        """The outcome of an attempt that raised `exc`."""

    @property
    def revealed(self) -> list[str]:
        """The secret values resolved so far: scrubbed from every message."""
        return vars(self).setdefault("_revealed", [])

    def tracking(self, resolver: Resolves) -> RecordingResolver:
        """`resolver`, adding every value it reveals to `revealed`."""
        return RecordingResolver(resolver, self.revealed)

    def secrets(self) -> Iterable[str]:
        """The secret values to scrub from every message."""
        return tuple(self.revealed)

    def scrubbed(self, message: str) -> str:
        """`message` without any form of this attempt's secrets."""
        return scrub(message, self.secrets())

    def classify(self, exc: BaseException) -> ErrorClass:
        """The error class of `exc`; extend for a client library's own exceptions."""
        return classify(exc)

    def run(self) -> Out:
        """Attempt and return the outcome; never raises (but lets KeyboardInterrupt through)."""
        started = time.perf_counter()
        try:
            with deadline_scope(self.timeout_s):
                seen = self.attempt()
        except Exception as exc:  # a failure is an outcome, never an exception
            return self.failed(exc, _elapsed_ms(started))
        return self.succeeded(seen, _elapsed_ms(started))


class Probe(Template[ProbeResult]):
    """One kind of check; subclasses write `check()` and may refine `classify()`."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    @abstractmethod
    def check(self) -> Observation:
        """Look at the target; raise on failure (ideally a `ProbeError`)."""

    def config(self) -> Any:
        """The probe's validated settings; a CONFIG `ProbeError` when they are invalid."""
        return None

    def attempt(self) -> Observation:
        """The check."""
        return self.check()

    def succeeded(self, seen: Observation, elapsed_ms: float) -> ProbeResult:
        """The result of a check that saw `seen`."""
        return ProbeResult(
            kind=self.kind,
            status=seen.status,
            latency_ms=elapsed_ms,
            message=self.scrubbed(seen.message),
            facts=seen.facts,
            checks=seen.checks,
        )

    def failed(self, exc: BaseException, elapsed_ms: float) -> ProbeResult:
        """The result of a check that raised `exc`: CRITICAL when unreachable, else ERROR."""
        error_class = self.classify(exc)
        status = Status.CRITICAL if error_class in UNREACHABLE_CLASSES else Status.ERROR
        return ProbeResult(
            kind=self.kind,
            status=status,
            latency_ms=elapsed_ms,
            error_class=error_class,
            message=self.scrubbed(str(exc) or type(exc).__name__),
            transient=undecryptable(exc),
        )


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def resources(cpu: object, memory: object, disk: object) -> dict[str, Any] | None:
    """The `resources` document of an instance row; None when nothing was measured."""
    if cpu is None and memory is None:
        return None
    return {"cpu": cpu, "memory": memory, "disk": disk}


def clip(value: object, limit: int = 50) -> str | None:
    """A value for a VARCHAR(50) column."""
    return str(value)[:limit] if value else None
