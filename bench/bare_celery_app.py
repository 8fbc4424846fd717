"""The baseline of `bench/celery_roundtrip.py`: a bare Celery app with one no-op task.

Celery's defaults, except JSON only (as the agent) and the broker and result backend the
bench names in BARE_BROKER_URL: `celery -A bare_celery_app worker -c 2`.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "bare", broker=os.environ.get("BARE_BROKER_URL"), backend=os.environ.get("BARE_BROKER_URL")
)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@app.task(name="bare.noop")
def noop() -> dict[str, bool]:
    """Answer at once: the least a task can cost."""
    return {"pong": True}
