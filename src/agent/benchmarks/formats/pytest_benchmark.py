"""pytest-benchmark's `--benchmark-json` output: `stats` in seconds, one entry per test.

The file does not name the package: a top-level `package` (added by a
`pytest_benchmark_update_json` hook) is used, else the caller's `defaults.package`, else
`commit_info.project`. `datetime`, `commit_info.branch` and `commit_info.id` give the
timestamp, branch and commit of every row; a branch of `(unknown)` (no git) is none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import ijson

from agent.benchmarks.formats import Parsed, Raw, top_level

# stats key -> unit; `data` (raw samples, with --benchmark-save-data) is not a metric.
METRICS = {
    "min": "s",
    "max": "s",
    "mean": "s",
    "stddev": "s",
    "median": "s",
    "iqr": "s",
    "q1": "s",
    "q3": "s",
    "ops": "ops/s",
    "rounds": "rounds",
    "iterations": "iterations",
}
CONTEXT_KEYS = {"commit_info", "datetime", "package", "package_version", "testbed"}


def read(stream: IO[bytes], format: str) -> Parsed:
    """Rows of a pytest-benchmark JSON file."""
    top = top_level(stream, CONTEXT_KEYS)
    return Parsed(format, context(top), rows(stream), guesses(top))


# What pytest-benchmark writes when it found no git branch: not a branch name.
NO_BRANCH = "(unknown)"


def _commit(top: dict[str, Any]) -> dict[str, Any]:
    return top["commit_info"] if isinstance(top.get("commit_info"), dict) else {}


def context(top: dict[str, Any]) -> dict[str, Any]:
    """What the file says about every row."""
    commit = _commit(top)
    found = {
        "package": top.get("package"),
        "version": top.get("package_version"),
        "timestamp": top.get("datetime"),
        "branch": None if commit.get("branch") == NO_BRANCH else commit.get("branch"),
        "commit": commit.get("id"),
        "testbed": top.get("testbed"),
    }
    return {name: value for name, value in found.items() if value not in (None, "")}


def guesses(top: dict[str, Any]) -> dict[str, Any]:
    """The package the file implies (its git project), used only without `defaults.package`."""
    project = _commit(top).get("project")
    return {} if project in (None, "") else {"package": project}


def rows(stream: IO[bytes]) -> Iterator[Raw]:
    """One row per metric of each benchmark's stats."""
    number = 0
    for entry in ijson.items(stream, "benchmarks.item", use_float=True):
        if not isinstance(entry, dict):
            number += 1
            yield Raw(number, {}, entry, "benchmark entry is not a JSON object")
            continue
        for raw in entry_rows(entry, number):
            number = raw.number
            yield raw


def entry_rows(entry: dict[str, Any], number: int) -> Iterator[Raw]:
    """The rows of one benchmark entry, numbered after `number`."""
    stats = entry.get("stats")
    name = entry.get("fullname") or entry.get("name")
    if not isinstance(stats, dict):
        yield Raw(number + 1, {}, _summary(entry), "benchmark has no stats")
        return
    parameters = entry.get("params") if isinstance(entry.get("params"), dict) else None
    for metric, unit in METRICS.items():
        if metric not in stats:
            continue
        number += 1
        fields = {
            "benchmark": name,
            "metric": metric,
            "value": stats[metric],
            "unit": unit,
            "parameters": parameters,
        }
        yield Raw(number, fields, fields)


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "stats"}
