"""Google Benchmark's `--benchmark_format=json` output.

`context.date` is the timestamp of every row; the package, version, branch, commit and
testbed come from custom context (`benchmark::AddCustomContext("package", ...)`) when the
binary adds them. Each entry gives `real_time` and `cpu_time` in its `time_unit`, plus user
counters. With repetitions, the per-repetition entries are skipped: the aggregates summarize
them, the `mean` aggregate standing for the metric itself and the others (`median`,
`stddev`, `cv`, custom ones) as `<metric>_<aggregate>`. A `cv` is a fraction (unit
`ratio`), never a time. Google Benchmark writes non-finite numbers as bare `NaN` and
`Infinity`, which JSON does not allow: `NonFinite` reads them as strings, so that such a row
is refused with a reason rather than the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

import ijson

from agent.benchmarks.formats import Parsed, Raw, Rewindable, top_level

ENTRY_KEYS = frozenset(
    {
        "name",
        "family_index",
        "per_family_instance_index",
        "run_name",
        "run_type",
        "repetitions",
        "repetition_index",
        "threads",
        "iterations",
        "time_unit",
        "aggregate_name",
        "aggregate_unit",
        "error_occurred",
        "error_message",
        "label",
        "big_o",
        "rms",
        "cpu_coefficient",
        "real_coefficient",
        "complexity_n",
    }
)
RATES = {"bytes_per_second": "B/s", "items_per_second": "items/s"}
CONTEXT_KEYS = ("package", "version", "branch", "commit", "testbed")
COMPLEXITY = frozenset({"BigO", "RMS"})


def read(stream: IO[bytes], format: str) -> Parsed:
    """Rows of a Google Benchmark JSON file."""
    tolerant = NonFinite(stream)
    found = top_level(tolerant, {"context"}).get("context")
    context = found if isinstance(found, dict) else {}
    return Parsed(format, context_fields(context), rows(tolerant))


def context_fields(context: dict[str, Any]) -> dict[str, Any]:
    """What `context` says about every row."""
    found = {name: context.get(name) for name in CONTEXT_KEYS}
    found["timestamp"] = context.get("date")
    return {name: value for name, value in found.items() if value not in (None, "")}


def rows(stream: Rewindable) -> Iterator[Raw]:
    """One row per time and counter of each entry."""
    number = 0
    for entry in ijson.items(stream, "benchmarks.item", use_float=True):
        for raw in entry_rows(entry, number):
            number = raw.number
            yield raw


def entry_rows(entry: Any, number: int) -> Iterator[Raw]:
    """The rows of one entry, numbered after `number`."""
    if not isinstance(entry, dict):
        yield Raw(number + 1, {}, entry, "benchmark entry is not a JSON object")
        return
    reason, skipped = _refusal(entry)
    if reason or skipped:
        yield Raw(number + 1, {}, entry, reason, skipped)
        return
    name = entry.get("run_name") or entry.get("name")
    aggregate = entry.get("aggregate_name") if entry.get("run_type") == "aggregate" else None
    suffix = f"_{aggregate}" if aggregate and aggregate != "mean" else ""
    parameters = {key: entry[key] for key in ("threads", "label") if entry.get(key)}
    for metric, value, unit in _metrics(entry):
        number += 1
        fields = {
            "benchmark": name,
            "metric": metric + suffix,
            "value": value,
            "unit": "ratio" if entry.get("aggregate_unit") == "percentage" else unit,
            "parameters": parameters,
        }
        yield Raw(number, fields, {**fields, "entry": entry.get("name")})


def _refusal(entry: dict[str, Any]) -> tuple[str | None, str | None]:
    """(reason to quarantine, reason to skip) for an entry that gives no points."""
    if entry.get("error_occurred"):
        return "benchmark reported an error", None
    if entry.get("aggregate_name") in COMPLEXITY:
        return None, "complexity fit (BigO/RMS), not a measurement"
    if entry.get("run_type", "iteration") == "iteration" and _repeated(entry):
        return None, "one repetition; its aggregates are stored"
    return None, None


def _repeated(entry: dict[str, Any]) -> bool:
    repetitions = entry.get("repetitions")
    return isinstance(repetitions, int | float) and repetitions > 1


def _metrics(entry: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    unit = entry.get("time_unit", "ns")
    for metric in ("real_time", "cpu_time"):
        if metric in entry:
            yield metric, entry[metric], unit
    for key, value in entry.items():
        if key not in ENTRY_KEYS and key not in ("real_time", "cpu_time"):
            yield key, value, RATES.get(key, "1")


# A JSON string (escapes included), or a bare non-finite number outside any string.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|-?(?:NaN|Infinity)')
# A string, closed (group 1 matched) or left open by the end of the data.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(")?')
# Letters at the very end, which may be the start of NaN or Infinity.
_LETTERS_TAIL = re.compile(rb"-?[A-Za-z]*\Z")


class NonFinite:
    """A binary stream that turns bare `NaN`, `Infinity`, `-Infinity` into JSON strings.

    Only `read` and `seek(0)` are offered: what ijson and a rewind need. Strings (which may
    well contain "NaN") pass untouched, even when a read splits them.
    """

    def __init__(self, stream: IO[bytes], chunk: int = 65536) -> None:
        self.stream = stream
        self.chunk = chunk
        self.pending = b""

    def read(self, size: int = -1) -> bytes:
        """Up to about `size` bytes (any amount > 0 until the end), rewritten."""
        if size == 0:
            return b""
        data = self.pending + self.stream.read(max(size, self.chunk))
        at_end = len(data) == len(self.pending)
        cut = len(data) if at_end else self._safe_end(data)
        self.pending = data[cut:]
        out = _TOKEN.sub(_quote, data[:cut])
        return out if out or at_end else self.read(size)

    def _safe_end(self, data: bytes) -> int:
        """Where `data` can be cut so that no string or bare token is split."""
        last = 0
        for match in _STRING.finditer(data):
            if match.group(1) is None:
                return match.start()
            last = match.end()
        tail = _LETTERS_TAIL.search(data, last)
        return tail.start() if tail else len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Rewind (only to the start)."""
        self.pending = b""
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        """Position in the underlying stream."""
        return self.stream.tell()


def _quote(match: re.Match[bytes]) -> bytes:
    token = match.group()
    return token if token.startswith(b'"') else b'"' + token + b'"'
