"""An MCP server's tools as values, and how a listing differs from what is recorded.

The plugin job diffs (`diff_tools`); the store reads the recorded tools and writes the changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolInfo:
    """One tool as the server lists it."""

    name: str
    description: str | None
    input_schema: Mapping[str, Any]


@dataclass(frozen=True)
class ToolChanges:
    """How a server's listed tools differ from the recorded ones."""

    added: tuple[ToolInfo, ...] = ()
    changed: tuple[ToolInfo, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many tools of each kind, for summaries."""
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "unchanged": len(self.unchanged),
        }


def diff_tools(recorded: Mapping[str, ToolInfo | None], listed: Sequence[ToolInfo]) -> ToolChanges:
    """Compare a listing with the recorded tools (None for a tool marked removed)."""
    listed_names = {tool.name for tool in listed}
    added, changed, unchanged = [], [], []
    for tool in listed:
        before = recorded.get(tool.name)
        if tool.name not in recorded or before is None:
            added.append(tool)
        elif before != tool:
            changed.append(tool)
        else:
            unchanged.append(tool.name)
    removed = sorted(
        name for name, tool in recorded.items() if tool is not None and name not in listed_names
    )
    return ToolChanges(tuple(added), tuple(changed), tuple(removed), tuple(unchanged))
