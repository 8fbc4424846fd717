"""What every discoverer shares: the service value, the outcome, and a `run()` that never raises.

A discoverer writes only `discover()`, which turns what an engine, host or cluster reports
into `DiscoveredService` values. `run()` times it and turns any failure into an outcome with
an error class and a scrubbed message, exactly like a probe's `run()`: a host that is down
is a result, and a failed discovery carries no services, so reconciliation changes nothing.
Nothing here touches the database.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.core.results import SCRUBBED, ErrorClass
from agent.probes.base import Template

RUNNING, DEGRADED, STOPPED, ERROR, UNKNOWN, MISSING = (
    "running",
    "degraded",
    "stopped",
    "error",
    "unknown",
    "missing",
)
NAME_LIMIT = 255
# Addresses a server listens on for every interface: an endpoint then names the instance.
ANY_ADDRESS = frozenset({"", "*", "0.0.0.0", "::"})  # noqa: S104  (reported, never bound)

# Label keys whose values may be secret (a token passed as a label is sadly common).
_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd)?|secret|token|api[_.-]?key|credential|private[_.-]?key|auth|cookie|dsn)"
)


def scrub_labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """Labels as strings, with the value of every secret-looking key replaced."""
    return {
        str(key): SCRUBBED if _SECRET_KEY.search(str(key)) else str(value)
        for key, value in sorted((labels or {}).items())
    }


@dataclass(frozen=True)
class DiscoveredService:
    """One service as an instance reports it: a row of `instance_services`, minus bookkeeping."""

    name: str
    type: str
    status: str
    service_config: Mapping[str, Any] = field(default_factory=dict)
    endpoints: Sequence[Mapping[str, Any]] = ()
    health_check_url: str | None = None

    def row(self) -> dict[str, Any]:
        """The JSON-ready columns the store writes."""
        return {
            "name": self.name[:NAME_LIMIT],
            "type": self.type,
            "status": self.status,
            "service_config": dict(self.service_config),
            "endpoints": [dict(e) for e in self.endpoints],
            "health_check_url": self.health_check_url,
        }


@dataclass(frozen=True)
class Discovery:
    """The outcome of one discovery: the services seen, or why none could be seen.

    `types` are the service types this kind of discovery owns: only services of those types
    can be marked missing when they are not seen (a person's `application` row never is).
    `unread` are (type, name prefix) pairs the discovery could not read (a Kubernetes
    namespace it may not list): their services are never marked missing.
    """

    kind: str
    types: frozenset[str]
    services: tuple[DiscoveredService, ...] = ()
    error_class: ErrorClass | None = None
    message: str = ""
    duration_ms: float = 0.0
    unread: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the instance answered, so that reconciliation may go ahead."""
        return self.error_class is None

    def summary(self) -> dict[str, Any]:
        """A JSON summary without secrets, for task results and logs."""
        return {
            "kind": self.kind,
            "ok": self.ok,
            "services": len(self.services),
            "error_class": self.error_class.value if self.error_class else None,
            "message": self.message,
            "duration_ms": round(self.duration_ms, 1),
        }


class Discoverer(Template[Discovery]):
    """One kind of discovery; subclasses write `discover()` and may refine `classify()`."""

    types: ClassVar[frozenset[str]]

    @abstractmethod
    def discover(self) -> tuple[list[DiscoveredService], str]:
        """The services found and a note for the operator; raise on failure."""

    def unread(self) -> tuple[tuple[str, str], ...]:
        """(type, name prefix) of services `discover()` could not read: none by default."""
        return ()

    def attempt(self) -> tuple[list[DiscoveredService], str]:
        """The discovery."""
        return self.discover()

    def succeeded(self, seen: tuple[list[DiscoveredService], str], elapsed_ms: float) -> Discovery:
        """The services found, one per name and type (the table's unique key)."""
        services, note = seen
        unique = {(s.name[:NAME_LIMIT], s.type): s for s in services}
        return Discovery(
            self.kind,
            self.types,
            tuple(unique.values()),
            message=self.scrubbed(note),
            duration_ms=elapsed_ms,
            unread=self.unread(),
        )

    def failed(self, exc: BaseException, elapsed_ms: float) -> Discovery:
        """A discovery that found nothing, and why: reconciliation then changes nothing."""
        return Discovery(
            self.kind,
            self.types,
            error_class=self.classify(exc),
            message=self.scrubbed(str(exc) or type(exc).__name__),
            duration_ms=elapsed_ms,
        )
