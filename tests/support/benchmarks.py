"""Benchmark runs for the ingestion tests: the checked-in files made unique, generated CSV."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmarks"


def payload(file: str, package: str) -> str:
    """A test file with its package names made unique (so its content is new, too)."""
    content = (DATA / file).read_text()
    content = content.replace("@graph/layer4", package).replace("yapkg-team/frames", f"{package}f")
    return content.replace('"project": "layer4"', f'"project": "{package}"')


def benchmark_csv(package: str, rows: int) -> str:
    """One run of `rows` distinct series, as generic CSV."""
    lines = ["package,benchmark,metric,value,unit,timestamp"]
    lines += [
        f"{package},bench/{n},latency,{1 + n % 97 / 100},ms,2025-06-01T00:00:00Z"
        for n in range(rows)
    ]
    return "\n".join(lines) + "\n"
