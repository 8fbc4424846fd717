"""Waiting for a task sent through the broker: its PROGRESS as a bar, then a sweep's batches.

A sweep only sends batches, so it is done in moments; the work it started is its batches,
listed in its result as `batch_ids`. Following a sweep therefore means following them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.api.client import POLL_S, AgentClient, TaskResult
from agent.api.contract import Progress
from agent.core.settings import ConfigError, require

BAR_WIDTH = 30

Show = Callable[[Progress], None]


def broker_client(results: bool = False) -> AgentClient:
    """A client on the broker, result backend and transport options the workers use.

    Refuses, in one line, when no broker is configured, or when `results` are wanted and
    there is no result backend to read them from.
    """
    from agent.celery import UNCONFIGURED_BROKER, app

    conf = app.conf
    if conf.broker_url == UNCONFIGURED_BROKER:
        require(None, "AGENT_BROKER_URL")
    if results and not conf.result_backend:
        raise ConfigError(
            "no result backend to wait on: set AGENT_RESULT_BACKEND (a redis:// URL), "
            "or send without --wait"
        )
    return AgentClient(
        conf.broker_url,
        conf.result_backend,
        transport_options=conf.broker_transport_options,
        result_transport_options=conf.result_backend_transport_options,
    )


def follow(client: AgentClient, result: TaskResult[Any], timeout_s: float, show: Show) -> Any:
    """The task's result, showing its progress, and then its batches' until they are done."""
    deadline = time.monotonic() + timeout_s
    value = result.wait(timeout_s, show)
    batch_ids = value.get("batch_ids") if isinstance(value, dict) else None
    if batch_ids:
        batches = [client.result(task_id) for task_id in batch_ids]
        follow_batches(batches, value["dispatched"], deadline, show)
    return value


def follow_batches(
    batches: Sequence[TaskResult[Any]], total: int, deadline: float, show: Show
) -> None:
    """Show the instances the batches have done, until all are finished or `deadline`."""
    while True:
        finished = [batch.ready() for batch in batches]
        show({"done": sum(map(items_done, batches)), "total": total, "unit": "instances"})
        if all(finished):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{finished.count(False)} batches still running")
        time.sleep(POLL_S)


def items_done(batch: TaskResult[Any]) -> int:
    """Instances a batch has done: from its progress while it runs, its result once done."""
    state, info = batch.snapshot()
    if state == "PROGRESS":
        return int(info.get("done", 0))
    if state != "SUCCESS" or not isinstance(info, dict):
        return 0
    return int(info.get("checked", info.get("discovered", 0) + info.get("failed", 0)))


def bar(meta: Mapping[str, Any]) -> str:
    """One line for a progress meta: a bar when the total is known, else a count."""
    done, total, unit = meta.get("done", 0), meta.get("total"), meta.get("unit", "")
    if not total:
        return f"{done} {unit}".rstrip()
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total} {unit}".rstrip()


def printer(echo: Callable[[str, bool], None], on_terminal: bool) -> Show:
    """A `show` that redraws one line on a terminal, and prints each change elsewhere."""
    last = [""]

    def show(meta: Progress) -> None:
        line = bar(meta)
        if line == last[0]:
            return
        last[0] = line
        echo(f"\r{line}" if on_terminal else line, not on_terminal)

    return show


def arguments(pairs: Sequence[str]) -> dict[str, Any]:
    """NAME=VALUE pairs as keyword arguments; a VALUE that parses as JSON is taken as JSON."""
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"argument {pair!r} is not NAME=VALUE")
        try:
            parsed[name] = json.loads(value)
        except ValueError:
            parsed[name] = value
    return parsed
