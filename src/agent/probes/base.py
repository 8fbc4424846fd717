"""The probe template: a probe writes only `check()`; `run()` never raises.

`run()` times the check, turns every failure into a result with an error class, and scrubs
the probe's secrets out of the message. Probes never touch the database and import nothing
from `models` or `sqlalchemy`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from agent.connections.deadline import deadline_scope
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


class Probe(ABC):
    """One kind of check; subclasses write `check()` and may refine `classify()`."""

    kind: ClassVar[str]

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    @abstractmethod
    def check(self) -> Observation:
        """Look at the target; raise on failure (ideally a `ProbeError`)."""

    def config(self) -> Any:
        """The probe's validated settings; a CONFIG `ProbeError` when they are invalid."""
        return None

    def secrets(self) -> Iterable[str]:
        """The secret values this probe holds, to be scrubbed from every message."""
        return ()

    def classify(self, exc: BaseException) -> ErrorClass:
        """The error class of `exc`; extend for a client library's own exceptions."""
        return classify(exc)

    def run(self) -> ProbeResult:
        """Run `check()` and return a result; never raises (but lets KeyboardInterrupt through).

        The check runs against one deadline, `timeout_s` from now, that its HTTP clients obey.
        """
        started = time.perf_counter()
        try:
            with deadline_scope(self.timeout_s):
                seen = self.check()
        except Exception as exc:  # a probe's failure is a result, never an exception
            return self._failure(exc, started)
        return self._success(seen, started)

    def _success(self, seen: Observation, started: float) -> ProbeResult:
        return ProbeResult(
            kind=self.kind,
            status=seen.status,
            latency_ms=_elapsed_ms(started),
            message=scrub(seen.message, self.secrets()),
            facts=seen.facts,
            checks=seen.checks,
        )

    def _failure(self, exc: BaseException, started: float) -> ProbeResult:
        error_class = self.classify(exc)
        status = Status.CRITICAL if error_class in UNREACHABLE_CLASSES else Status.ERROR
        text = str(exc) or type(exc).__name__
        return ProbeResult(
            kind=self.kind,
            status=status,
            latency_ms=_elapsed_ms(started),
            error_class=error_class,
            message=scrub(text, self.secrets()),
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
