"""JSON Schemas of every task's arguments, result and progress, generated from `agent.api.contract`.

`python -m agent.api.schemas DIR` (or `infra-agent schemas DIR`) writes one file per task, named
by its task name; a test regenerates them and fails when the checked-in files differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from agent.api.contract import TASKS, Progress, TaskContract

DIALECT = "https://json-schema.org/draft/2020-12/schema"
PARTS = ("arguments", "result", "progress")


def task_schema(task: TaskContract) -> dict[str, Any]:
    """One task's document: its name and queue, and a schema for each part it has."""
    types = {"arguments": task.arguments, "result": task.result}
    if task.progress:
        types["progress"] = Progress
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (part, "validation", TypeAdapter(kind)) for part, kind in types.items()
    ]
    parts, definitions = TypeAdapter.json_schemas(inputs)
    doc: dict[str, Any] = {
        "$schema": DIALECT,
        "title": task.name,
        "queue": task.queue,
        "on_demand": task.on_demand,
    }
    doc |= {part: closed(parts[(part, "validation")]) for part in types}
    if definitions:
        doc["$defs"] = {name: closed(d) for name, d in definitions["$defs"].items()}
    return doc


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with objects that list their properties refusing any other (drift shows up)."""
    if schema.get("title") == Progress.__name__:
        return schema  # progress meta carries task-specific fields beside done/total/unit
    if "properties" in schema and "additionalProperties" not in schema:
        schema = {**schema, "additionalProperties": False}
    return schema


def part_schema(doc: dict[str, Any], part: str) -> dict[str, Any]:
    """A self-contained schema of one part of a task's document, for a validator."""
    return {"$schema": DIALECT, **doc[part], "$defs": doc.get("$defs", {})}


def rendered() -> dict[str, str]:
    """Every task's file name and text."""
    return {
        f"{name}.json": json.dumps(task_schema(task), indent=2, sort_keys=True) + "\n"
        for name, task in sorted(TASKS.items())
    }


def write(directory: Path) -> list[Path]:
    """Write every task's schema into `directory`, removing files of tasks that are gone."""
    directory.mkdir(parents=True, exist_ok=True)
    files = rendered()
    for stale in directory.glob("agent.*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (directory / name).write_text(text)
    return [directory / name for name in files]


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(path)
