"""The worker process's event loop, where HTTP-family checks run as coroutines.

Threads cost the HTTP checks most of their time (a pooled httpx client's lock and the GIL
hand-offs between 32 threads; see docs/performance.md), so plugin, MCP and HTTP/TCP instance
checks run as coroutines on one event loop per process instead, on clients built once for
it. The loop lives in a daemon thread of its own, so that code on any thread (a Celery task,
a test) can hand it a batch with `run_on_loop` and wait; the caller's context variables (the
task's log fields) travel with the coroutine. After a fork the child starts a loop of its own.

`run_async(probe)` is `Probe.run()` for a coroutine check: the same result, never raising,
with the check's whole deadline (connect, TLS, request, headers, body, token fetch) enforced
by cancelling it. `each_async` is `agent.core.concurrency.each` for coroutines: a semaphore bounds
the concurrency, and a check still running at the batch deadline is cancelled and concluded
late, so a slow target holds its slot no longer than its own deadline.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from agent.connections.deadline import deadline_scope
from agent.core import logs
from agent.core.results import ErrorClass, Observation, ProbeError, ProbeResult
from agent.probes.base import Probe

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
Closer = Callable[[], Awaitable[None]]


class ProcessLoop:
    """An event loop running in a daemon thread, and what must be closed with it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._closers: list[Closer] = []
        self._thread = threading.Thread(target=self._serve, name="agent-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _Result]) -> _Result:
        """Run `coro` on the loop, in a copy of the caller's context, and wait for its result."""
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, _Result]) -> Future[_Result]:
        """Start `coro` on the loop, in a copy of the caller's context; its future."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("submitted from the loop itself: await instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def on_close(self, closer: Closer) -> None:
        """Have `closer()` awaited when the loop closes (sessions, connectors)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Close what was registered, then stop the loop and its thread."""
        self.run(self._close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()

    async def _close_all(self) -> None:
        closers, self._closers = self._closers, []
        for closer in closers:
            await closer()
        await asyncio.sleep(0)  # let transports finish their close callbacks


_current: ProcessLoop | None = None
_current_lock = threading.Lock()


def process_loop() -> ProcessLoop:
    """The loop of this process, started on first use (and again in a forked child)."""
    global _current
    with _current_lock:
        if _current is None or _current.pid != os.getpid():
            _current = ProcessLoop()
        return _current


def run_on_loop(coro: Coroutine[Any, Any, _Result]) -> _Result:
    """Run `coro` on this process's loop and wait for it."""
    return process_loop().run(coro)


@atexit.register
def close_process_loop() -> None:
    """Close this process's loop and its clients (worker process shutdown, tests, exit)."""
    global _current
    with _current_lock:
        current, _current = _current, None
    if current is not None and current.pid == os.getpid():
        current.close()


class AsyncCheck(Protocol):
    """A probe whose check is a coroutine."""

    timeout_s: float

    async def acheck(self) -> Observation:
        """Look at the target; raise on failure."""


async def run_async(probe: Probe) -> ProbeResult:
    """`probe.run()` for a coroutine `acheck()`: one deadline, cancelled when it passes."""
    started = time.perf_counter()
    try:
        with deadline_scope(probe.timeout_s) as deadline:
            seen = await within(deadline, probe.acheck(), probe.timeout_s)  # type: ignore[attr-defined]
    except Exception as exc:  # a probe's failure is a result, never an exception
        return probe.failed(exc, _elapsed_ms(started))
    return probe.succeeded(seen, _elapsed_ms(started))


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def within(deadline: float, awaitable: Awaitable[_Result], timeout_s: float) -> _Result:
    """`awaitable`, cancelled at the monotonic `deadline` as a TIMEOUT ProbeError."""
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
            return await awaitable
    except TimeoutError:
        raise ProbeError(ErrorClass.TIMEOUT, f"no answer within {timeout_s:g}s") from None


def run_probe(probe: Probe) -> Coroutine[Any, Any, ProbeResult]:
    """A probe's result on the loop when its check is a coroutine, else on a worker thread."""
    if hasattr(probe, "acheck"):
        return run_async(probe)
    return asyncio.to_thread(probe.run)


def each_async(
    work: Callable[[_Item], Awaitable[_Result]],
    items: Iterable[_Item],
    concurrency: int,
    fields: Callable[[_Item], Mapping[str, str]],
    deadline_s: float | None = None,
    late: Callable[[_Item], _Result] | None = None,
) -> list[_Result]:
    """`await work(item)` for every item on the process loop, at most `concurrency` at once.

    Results come in item order; with `deadline_s`, an item not done that many seconds from
    now is cancelled and gets `late(item)`.
    """
    return start_each_async(work, items, concurrency, fields, deadline_s, late).result()


def start_each_async(
    work: Callable[[_Item], Awaitable[_Result]],
    items: Iterable[_Item],
    concurrency: int,
    fields: Callable[[_Item], Mapping[str, str]],
    deadline_s: float | None = None,
    late: Callable[[_Item], _Result] | None = None,
) -> Future[list[_Result]]:
    """`each_async` started, not awaited: the caller may do other work (threads) meanwhile."""
    items = list(items)
    if not items:
        done: Future[list[_Result]] = Future()
        done.set_result([])
        return done
    return process_loop().submit(_each(work, items, concurrency, fields, deadline_s, late))


async def _each(
    work: Callable[[_Item], Awaitable[_Result]],
    items: list[_Item],
    concurrency: int,
    fields: Callable[[_Item], Mapping[str, str]],
    deadline_s: float | None,
    late: Callable[[_Item], _Result] | None,
) -> list[_Result]:
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(item: _Item) -> _Result:
        async with slots:
            with logs.bound(**fields(item)):
                return await work(item)

    tasks = [asyncio.create_task(one(item)) for item in items]  # each in its own context copy
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [_outcome(task, item, late) for task, item in zip(tasks, items, strict=True)]


def _outcome(
    task: asyncio.Task[_Result], item: _Item, late: Callable[[_Item], _Result] | None
) -> _Result:
    if not task.cancelled():
        return task.result()
    if late is None:
        raise TimeoutError("a batch item was still running at the batch deadline")
    return late(item)
