"""Starting and watching the agent's own processes from tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

BIN = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv")) / "bin"


def agent_env(**overrides: str) -> dict[str, str]:
    """The test's environment without any AGENT_ or FLOWER_ server settings, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "FLOWER_"))}
    return {**env, **overrides}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child process in its own session, its output in `log`."""
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """The first truthy value of `condition()`, polled until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def interrupt(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    """Ctrl-C a process and return its exit status."""
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=timeout_s)


def kill_group(proc: subprocess.Popen) -> None:
    """Make sure nothing of a process, its group or its children (in sessions of their own,
    as `up` starts worker, beat and Flower) outlives the test."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait()
