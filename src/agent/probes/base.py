"""What every probe shares: the result value, the status vocabulary and a `run()` that never raises.

A probe writes only `check()`. `run()` times it, turns every failure into a result with an
error class, and scrubs the probe's secrets out of the message. Probes never touch the
database and import nothing from `models` or `sqlalchemy`.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from agent.connections.deadline import deadline_scope
from agent.core.credentials import CredentialError, UndecryptableSecret
from agent.core.scrubbing import MAX_MESSAGE_CHARS, SCRUBBED, scrub_message
from agent.core.validation import problems

__all__ = ["MAX_MESSAGE_CHARS", "SCRUBBED"]


class Status(StrEnum):
    """The fixed vocabulary of a probe's verdict."""

    OK = "ok"  # reachable and healthy
    WARNING = "warning"  # reachable, something needs attention
    CRITICAL = "critical"  # not reachable, or reachable and failing
    ERROR = "error"  # the check itself could not be made (config, auth, host key, unsupported)


class ErrorClass(StrEnum):
    """Why a check failed, in words an operator can filter on."""

    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    AUTH = "auth"
    HOST_KEY = "host_key"
    TLS = "tls"
    PROTOCOL = "protocol"
    UNSUPPORTED = "unsupported"
    CONFIG = "config"
    POLICY = "policy"  # the operator's address policy refused the target
    INTERNAL = "internal"


UNREACHABLE_CLASSES = frozenset(
    {ErrorClass.DNS, ErrorClass.REFUSED, ErrorClass.TIMEOUT, ErrorClass.UNREACHABLE}
)


class ProbeError(Exception):
    """A failure a probe recognised, with its class; its message must hold no secret."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


@dataclass(frozen=True)
class Observation:
    """What a successful `check()` saw: facts about the target and named sub-checks."""

    facts: Mapping[str, Any] = field(default_factory=dict)
    checks: Mapping[str, Status] = field(default_factory=dict)
    status: Status = Status.OK
    message: str = ""


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe run: plain values, safe to log, return and store."""

    kind: str
    status: Status
    latency_ms: float
    error_class: ErrorClass | None = None
    message: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    checks: Mapping[str, Status] = field(default_factory=dict)
    # A failure that may clear with no change to the row: an `enc:` secret this worker could
    # not decrypt (a key being rolled out). Damped even though its class is CONFIG.
    transient: bool = False

    @property
    def reachable(self) -> bool:
        """Whether the target answered at all."""
        return self.error_class not in UNREACHABLE_CLASSES

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the result."""
        return {
            "kind": self.kind,
            "status": self.status.value,
            "latency_ms": round(self.latency_ms, 3),
            "error_class": self.error_class.value if self.error_class else None,
            "message": self.message,
            "facts": dict(self.facts),
            "checks": {name: status.value for name, status in self.checks.items()},
        }


def late_result(kind: str, deadline_s: float) -> ProbeResult:
    """The result of a check still running when its batch's deadline passed: a TIMEOUT."""
    return ProbeResult(
        kind=kind,
        status=Status.CRITICAL,
        latency_ms=deadline_s * 1000.0,
        error_class=ErrorClass.TIMEOUT,
        message=f"the check was still running at the batch deadline ({deadline_s:g}s)",
    )


def classify(exc: BaseException) -> ErrorClass:
    """The error class of a standard-library failure or an unusable secret."""
    if isinstance(exc, ProbeError):
        return exc.error_class
    if isinstance(exc, CredentialError):
        return ErrorClass.CONFIG
    if isinstance(exc, socket.gaierror):
        return ErrorClass.DNS
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.REFUSED
    if isinstance(exc, TimeoutError | socket.timeout):
        return ErrorClass.TIMEOUT
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ErrorClass.TLS
    if isinstance(exc, json.JSONDecodeError):  # the target answered, but not in JSON
        return ErrorClass.PROTOCOL
    if isinstance(exc, OSError):
        return ErrorClass.UNREACHABLE
    return ErrorClass.INTERNAL


_Model = TypeVar("_Model", bound=BaseModel)


def parse_config(model: type[_Model], raw: Mapping[str, Any]) -> _Model:
    """A probe's config model from raw values; a CONFIG error that never echoes a value."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ProbeError(
            ErrorClass.CONFIG, f"connection_config is invalid: {problems(exc)}"
        ) from None


def scrub(
    message: str, secrets: Iterable[str] = (), max_chars: int | None = MAX_MESSAGE_CHARS
) -> str:
    """A message without any form of `secrets`, its control characters escaped, capped."""
    return scrub_message(message, secrets, max_chars)


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


def undecryptable(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from, is an `enc:` secret no key decrypts."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        if isinstance(current, UndecryptableSecret):
            return True
        seen.append(current)
        current = current.__cause__ or current.__context__
    return False


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
