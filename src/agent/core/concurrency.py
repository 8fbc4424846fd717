"""Running a batch's items on threads without losing which task and item a log line is about.

A new thread starts with an empty context, so the task's log fields would be lost in the
threads that do a batch's real work; `each` runs every item in a copy of the caller's
context, with the item's own fields (its instance id) bound for the call.

A batch may have a deadline: items still running (or not yet started) when it passes get
`late(item)` as their result, and the batch returns without waiting for them. Their threads
are left to end by their own check deadlines; nothing waits on them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

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

    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items))))
    # One copy per item: a context can be entered by one thread at a time.
    futures = [pool.submit(run, item, contextvars.copy_context()) for item in items]
    _, pending = wait(futures, timeout=deadline_s)
    pool.shutdown(wait=not pending, cancel_futures=True)
    return [_outcome(future, item, late) for future, item in zip(futures, items, strict=True)]


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
