"""What a worker's parent loads and freezes before its pool forks, so its children share it.

A prefork child starts as a copy-on-write image of the parent: a module the parent imported
costs the pool once, a module each child imports costs it once per child. The parent
already imports the task modules; what their tasks import lazily it imports only for the
queues it consumes: the probes of the health queue, the MCP SDK (16-18 MiB) of the plugins
queue, so a worker that never checks an MCP server does not carry it. Then, right before
each fork, the parent's objects are moved to the collector's permanent generation: a
child's collections no longer write to them, so their pages stay shared
(docs/performance.md, "Worker memory").
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from importlib import import_module

# Modules the task modules import lazily, by the queue whose tasks need them.
BY_QUEUE = {
    "plugins": ("agent.plugins.mcp_session",),
    "health": ("agent.probes.tcp", "agent.probes.http", "agent.probes.ssh"),
}


def modules_for(queues: Iterable[str]) -> list[str]:
    """The lazily imported modules the tasks of `queues` need (zone queues: `plugins.eu-1`)."""
    families = {queue.partition(".")[0] for queue in queues}
    return [module for family in sorted(families) for module in BY_QUEUE.get(family, ())]


def preload(queues: Iterable[str]) -> list[str]:
    """Import, in this process, what the tasks of `queues` would import at their first run."""
    modules = modules_for(queues)
    for module in modules:
        import_module(module)
    return modules


def freeze_before_fork() -> None:
    """Collect once, then exempt every object alive now from later collections."""
    gc.collect()
    gc.freeze()
