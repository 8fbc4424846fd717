"""The periodic schedule as beat runs it: `beat_schedule.py`'s entries with intervals from settings.

The Celery app configures beat with it, and the metrics read each periodic task's interval.
"""

from __future__ import annotations

from typing import Any

from agent.core.settings import Settings


def beat_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """`beat_schedule.SCHEDULE` with intervals from settings; a run expires after one interval."""
    import beat_schedule

    entries = {}
    for name, entry in beat_schedule.SCHEDULE.items():
        interval = float(getattr(settings, entry["every"]))
        entries[name] = {
            "task": entry["task"],
            "schedule": interval,
            "options": {"expires": interval},
        }
    return entries
