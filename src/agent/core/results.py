"""What a check returns: the result value, the status vocabulary and the error classes.

Plain values, shared by probes, discoverers, the job families and the store; no I/O here.
`agent.probes.base.Probe.run()` makes them, and scrubs secrets out of every message.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.core.causes import causes
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


def undecryptable(exc: BaseException) -> bool:
    """Whether `exc`, or what it was raised from, is an `enc:` secret no key decrypts."""
    return any(isinstance(link, UndecryptableSecret) for link in causes(exc))
