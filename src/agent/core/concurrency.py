"""Running a batch's items on threads without losing which task and item a log line is about.

A new thread starts with an empty context, so the task's log fields would be lost in the
threads that do a batch's real work; `each` runs every item in a copy of the caller's
context, with the item's own fields (its instance id) bound for the call.

A batch may have a deadline: items still running (or not yet started) when it passes get
`late(item)` as their result, and the batch returns without waiting for them. Their threads
are left to end by their own check deadlines; nothing waits on them.

The threads outlive a batch: each calling thread keeps one pool per concurrency for its
next batches (a pool that had items still running at a deadline is dropped, not reused).
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from agent.core import logs

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def each(
    work: Callable[[_Item], _Result],
    items: Iterable[_Item],
    concurrency: int,
    fields: Callable[[_Item], Mapping[str, str]],
    deadline_s: float | None = None,
    late: Callable[[_Item], _Result] | None = None,
) -> list[_Result]:
    """`work(item)` for every item, at most `concurrency` at once; results in item order.

    With `deadline_s`, an item not done that many seconds from now gets `late(item)`.
    """
    items = list(items)
    if not items:
        return []

    def run(item: _Item, context: contextvars.Context) -> _Result:
        return context.run(_bound, work, item, fields(item))

    pool = _pool(max(1, concurrency))  # starts no more threads than there are items
    # One copy per item: a context can be entered by one thread at a time.
    futures = [pool.submit(run, item, contextvars.copy_context()) for item in items]
    _, pending = wait(futures, timeout=deadline_s)
    if pending:
        _give_up(pool, pending)
    return [_outcome(future, item, late) for future, item in zip(futures, items, strict=True)]


def _pool(workers: int) -> ThreadPoolExecutor:
    """The calling thread's pool of `workers` threads, kept for its next batch.

    Starting 32 threads per batch took about a seventh of a warm SSH sweep's CPU. A pool is
    the caller's own, so concurrent batches never share threads and an item that runs a
    batch of its own cannot wait on the threads it occupies.
    """
    pools: dict[int, ThreadPoolExecutor] = _local.__dict__.setdefault("pools", {})
    if workers not in pools:
        pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="each")
    return pools[workers]


def _give_up(pool: ThreadPoolExecutor, pending: Iterable[Future[Any]]) -> None:
    # Items still running hold their threads until their own deadlines end them: the next
    # batch gets a pool of its own, so it keeps its full concurrency.
    pools = _local.__dict__.get("pools", {})
    for workers in [workers for workers, kept in pools.items() if kept is pool]:
        del pools[workers]
    for future in pending:
        future.cancel()
    pool.shutdown(wait=False, cancel_futures=True)


def _forget_pools() -> None:
    # A forked child has none of the parent's threads: it starts pools of its own.
    global _local
    _local = threading.local()


_local = threading.local()
os.register_at_fork(after_in_child=_forget_pools)


def _outcome(
    future: Future[_Result], item: _Item, late: Callable[[_Item], _Result] | None
) -> _Result:
    if future.done() and not future.cancelled():
        return future.result()
    if late is None:
        raise TimeoutError("a batch item was still running at the batch deadline")
    return late(item)


def _bound(work: Callable[[_Item], _Result], item: _Item, extra: Mapping[str, str]) -> _Result:
    with logs.bound(**extra):
        return work(item)
