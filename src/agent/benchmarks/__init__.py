"""Benchmark results without a database: formats, validation, batches, regression detection.

`formats.read` streams a payload (pytest-benchmark, Google Benchmark, generic JSON or CSV)
into rows; `validation.Validator` makes each row a point or a reason; `batches.batches`
groups them with a tally; `regression.judge` compares a new point with its history. The
`tasks.benchmarks` job wires these to the database.
"""

from __future__ import annotations

import hashlib
from typing import IO


def content_sha256(stream: IO[bytes]) -> str:
    """The SHA-256 of a seekable stream's content; the stream is rewound."""
    digest = hashlib.file_digest(stream, "sha256").hexdigest()  # type: ignore[arg-type]
    stream.seek(0)
    return digest


def run_id_for(sha256: str) -> str:
    """The run id of a payload that names none: its content hash, so a re-send matches."""
    return f"sha256:{sha256}"
