"""The documented generic formats: JSON (a document, an array, or JSON Lines) and CSV.

Rows carry `package`, `benchmark`, `metric`, `value`, `unit`, `timestamp` and optionally
`version`, `run_id`, `branch`, `commit`, `testbed`, `parameters` (docs/benchmarks.md).
A JSON document is `{"run": {...}, "rows": [...]}`: what `run` says applies to every row
that does not say otherwise.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

import ijson

from agent.benchmarks.formats import FormatError, Parsed, Raw, top_level

NOT_AN_OBJECT = "row is not a JSON object"


def read(stream: IO[bytes], format: str) -> Parsed:
    """Rows of a generic JSON or CSV payload."""
    if format == "csv":
        return Parsed("csv", {}, csv_rows(stream))
    shape = json_shape(stream)
    if shape == "lines":
        return Parsed("json", {}, json_lines(stream))
    if shape == "array":
        return Parsed("json", {}, json_items(stream, "item"))
    run = top_level(stream, {"run"}).get("run") or {}
    if not isinstance(run, dict):
        raise FormatError("not valid json: `run` must be an object")
    return Parsed("json", run, json_items(stream, "rows.item"))


def json_shape(stream: IO[bytes]) -> str:
    """`array`, `document` or `lines` (JSON Lines: one row object per line)."""
    first = stream.readline(1 << 20).lstrip(b"\xef\xbb\xbf \t\r\n")
    stream.seek(0)
    if first[:1] == b"[":
        return "array"
    try:
        row = json.loads(first)
    except ValueError:
        return "document"
    return "lines" if isinstance(row, dict) and "rows" not in row else "document"


def json_items(stream: IO[bytes], prefix: str) -> Iterator[Raw]:
    """Row objects at `prefix` of a JSON document, one at a time."""
    for number, item in enumerate(ijson.items(stream, prefix, use_float=True), 1):
        if isinstance(item, dict):
            yield Raw(number, item, item)
        else:
            yield Raw(number, {}, item, NOT_AN_OBJECT)


def json_lines(stream: IO[bytes]) -> Iterator[Raw]:
    """Rows of JSON Lines; a line that is not a JSON object is a bad row, not a bad payload."""
    number = 0
    for line in stream:
        if not line.strip():
            continue
        number += 1
        try:
            item = json.loads(line)
        except ValueError:
            yield Raw(number, {}, line.decode(errors="replace"), "row is not JSON")
            continue
        if isinstance(item, dict):
            yield Raw(number, item, item)
        else:
            yield Raw(number, {}, item, NOT_AN_OBJECT)


def csv_rows(stream: IO[bytes]) -> Iterator[Raw]:
    """Rows of a CSV file whose first line names the columns."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_records(csv.reader(text))
    finally:
        text.detach()


def _csv_records(reader: Any) -> Iterator[Raw]:
    header = next(reader, None)
    if not header or "value" not in header:
        raise FormatError("not valid csv: the first line must name the columns, `value` among them")
    width = len(header)
    for number, cells in enumerate(reader, 1):
        if not cells:
            continue
        row = dict(zip(header, cells, strict=False))
        if len(cells) != width:
            yield Raw(number, {}, row or cells, "row has the wrong number of cells")
        else:
            yield Raw(number, row, row)
