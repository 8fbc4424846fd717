"""Is the worker still consuming? A heartbeat file touched from the consumer's own loop.

The file is touched by a timer of the consumer's event loop, started once the consumer
consumes and cancelled whenever it stops (lost broker connection, shutdown). A worker whose
loop is stuck, frozen or reconnecting stops touching it even though its process lives on,
so the age of the file is what a liveness probe checks (`infra-agent worker-alive`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)


def touch(path: Path) -> None:
    """Mark the worker alive now; a failure is logged, and the probe will notice."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        log.warning("liveness: cannot touch %s: %s", path, exc)


def age_s(path: Path, now: float | None = None) -> float | None:
    """Seconds since the worker last marked itself alive, or None if it never did."""
    try:
        touched = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - touched


def verdict(path: Path, max_age_s: float) -> tuple[bool, str]:
    """Whether the worker behind `path` is consuming, and a line that says why."""
    age = age_s(path)
    if age is None:
        return False, f"no heartbeat at {path}: no worker has started consuming"
    if age > max_age_s:
        return False, f"heartbeat {age:.1f}s old (limit {max_age_s:g}s): the worker stopped"
    return True, f"heartbeat {age:.1f}s old (limit {max_age_s:g}s)"


class Heartbeat(bootsteps.StartStopStep):
    """A consumer bootstep touching the heartbeat file from the consumer's event loop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        from agent.core.settings import get_settings

        settings = get_settings()
        self.path = settings.liveness_path
        self.interval_s = settings.liveness_interval_s
        self.timer_entry: Any = None
        super().__init__(parent, **kwargs)

    def start(self, parent: Any) -> None:
        """Touch now, then every interval for as long as the consumer runs."""
        touch(self.path)
        self.timer_entry = parent.timer.call_repeatedly(self.interval_s, touch, (self.path,))

    def stop(self, parent: Any) -> None:
        """The consumer stopped (maybe to reconnect): stop vouching for it."""
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, parent: Any) -> None:
        """The worker is going away: nothing is alive behind the file any more."""
        self.stop(parent)
        self.path.unlink(missing_ok=True)
