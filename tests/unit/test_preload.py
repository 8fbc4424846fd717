"""What a worker's parent imports before its pool forks, and what it leaves to the queues."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from agent.runtime import preload

SDK = ("mcp", "starlette", "uvicorn", "opentelemetry", "agent.plugins.mcp_session")


def modules_after(code: str) -> list[str]:
    """Which of SDK a fresh interpreter holds after running `code`."""
    probe = f"{code}; import sys, json; print(json.dumps([m for m in {SDK!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


def test_loading_the_app_and_every_task_module_leaves_the_mcp_sdk_unimported():
    loaded = "from agent.celery import app; app.loader.import_default_modules()"
    assert modules_after(loaded) == []


def test_a_worker_consuming_the_plugins_queue_preloads_the_mcp_sdk_and_others_do_not():
    assert modules_after("from agent.runtime import preload; preload.preload(['agent'])") == []
    assert modules_after("from agent.runtime import preload; preload.preload(['plugins'])") == [
        *SDK
    ]


def test_zone_queues_count_as_their_family():
    assert preload.modules_for(["agent"]) == []
    assert "agent.probes.http" in preload.modules_for(["health.eu-1"])
    assert preload.modules_for(["plugins.eu-1"]) == ["agent.plugins.mcp_session"]


def test_freezing_before_a_fork_takes_the_live_objects_out_of_the_collectors_reach():
    parents_object = [["made before the fork"]]
    try:
        preload.freeze_before_fork()
        # A frozen object is in no generation: no later collection reads or writes it.
        assert not any(tracked is parents_object for tracked in gc.get_objects())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert any(tracked is parents_object for tracked in gc.get_objects())
