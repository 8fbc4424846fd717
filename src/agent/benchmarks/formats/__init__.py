"""Readers of benchmark result formats: each streams a payload into plain rows.

A reader takes a seekable binary stream and returns a `Parsed`: the run-level context (what
the payload says about every row: package, timestamp, branch, ...) and an iterator of `Raw`
rows. Readers never hold more than one record of the payload in memory; run-level keys may
cost a second pass over the stream. A payload that cannot be read at all raises FormatError.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from typing import IO, Any, NamedTuple, Protocol

import ijson

HEAD_BYTES = 65536
MAX_DEPTH = 64
DEPTH_CHUNK_BYTES = 1 << 20

READERS = {
    "pytest-benchmark": "agent.benchmarks.formats.pytest_benchmark",
    "google-benchmark": "agent.benchmarks.formats.google_benchmark",
    "json": "agent.benchmarks.formats.generic",
    "csv": "agent.benchmarks.formats.generic",
}
FORMATS = tuple(READERS)

_GOOGLE = re.compile(rb'^\{\s*"context"\s*:')
_PYTEST = re.compile(rb'^\{\s*"(machine_info|commit_info)"\s*:')
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class Rewindable(Protocol):
    """What the JSON readers need of a stream: bytes, and a rewind to the start."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes; all that is left when -1."""

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Move to `offset` (the readers only ever rewind to 0)."""


class FormatError(ValueError):
    """A payload that cannot be read as the format it claims or was detected as."""


class Raw(NamedTuple):
    """One record of a payload, before validation.

    `fields` uses the generic row's names; `original` is what the payload said, kept in
    quarantine if the row is refused; `problem` is a reason already known while reading, and
    `skipped` says why a record is deliberately not stored (neither point nor quarantine).
    """

    number: int
    fields: dict[str, Any]
    original: Any
    problem: str | None = None
    skipped: str | None = None


@dataclass
class Parsed:
    """What a reader found: the run-level context and the rows (an iterator, read once).

    `guesses` are context values the file implies without saying them for this purpose
    (pytest-benchmark's `commit_info.project` as the package): the caller's defaults win.
    """

    format: str
    context: dict[str, Any] = field(default_factory=dict)
    rows: Iterator[Raw] = field(default_factory=lambda: iter(()))
    guesses: dict[str, Any] = field(default_factory=dict)

    def run_context(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The run's context: what the file says, else the caller's defaults, else guesses."""
        return {**self.guesses, **defaults, **self.context}


def detect(head: bytes) -> str:
    """The format of a payload from its first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        raise FormatError("empty payload")
    if _GOOGLE.match(text):
        return "google-benchmark"
    if _PYTEST.match(text):
        return "pytest-benchmark"
    return "json" if text[:1] in (b"{", b"[") else "csv"


def read(stream: IO[bytes], format: str | None = None) -> Parsed:
    """Read `stream` as `format` (detected when None); errors while reading are FormatError."""
    if format is None:
        head = stream.read(HEAD_BYTES)
        stream.seek(0)
        format = detect(head)
    if format not in READERS:
        raise FormatError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
    if format != "csv":
        check_depth(stream, format)
    try:
        parsed: Parsed = import_module(READERS[format]).read(stream, format)
    except READ_ERRORS as exc:
        raise FormatError(f"not valid {format}: {describe(exc)}") from None
    parsed.rows = _guarded(parsed.rows, format)
    return parsed


READ_ERRORS = (ijson.JSONError, UnicodeDecodeError, csv.Error, ValueError, TypeError)


def _guarded(rows: Iterator[Raw], format: str) -> Iterator[Raw]:
    try:
        yield from rows
    except FormatError:
        raise
    except READ_ERRORS as exc:
        raise FormatError(f"not valid {format}: {describe(exc)}") from None


def check_depth(stream: IO[bytes], format: str) -> None:
    """FormatError when the JSON in `stream` nests deeper than MAX_DEPTH; rewinds the stream.

    No benchmark format nests deeply, while a hostile payload might: ijson keeps a prefix per
    open level (200 KB of brackets take gigabytes) and Python's json recurses. One pass with
    strings cut out (an unclosed one is carried into the next chunk) counts the brackets.
    """
    depth, pending = 0, b""
    while chunk := stream.read(DEPTH_CHUNK_BYTES):
        structure = _STRINGS.sub(b"", pending + chunk)
        cut = structure.find(b'"')
        pending = structure[cut:] if cut >= 0 else b""
        for byte in structure[: len(structure) - len(pending)].translate(None, _NOT_BRACKETS):
            depth += 1 if byte in b"[{" else -1
            if depth > MAX_DEPTH:
                stream.seek(0)
                raise FormatError(f"not valid {format}: nested deeper than {MAX_DEPTH} levels")
    stream.seek(0)


def describe(exc: BaseException) -> str:
    """A one-line description of a read error (yajl's are multi-line drawings)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def top_level(stream: Rewindable, keys: set[str]) -> dict[str, Any]:
    """The values of top-level `keys` of the JSON object in `stream`; rewinds the stream.

    One pass that builds only the wanted values and stops once all are found, so a large
    array beside them is skipped without being held.
    """
    found: dict[str, Any] = {}
    building: tuple[str, Any] | None = None
    for prefix, event, value in ijson.parse(stream, use_float=True):
        if building is None:
            if prefix not in keys or event == "map_key":
                continue
            building = (prefix, ijson.ObjectBuilder())
        name, builder = building
        builder.event(event, value)
        if prefix == name and event not in ("start_map", "start_array", "map_key"):
            found[name], building = builder.value, None
            if len(found) == len(keys):
                break
    stream.seek(0)
    return found
