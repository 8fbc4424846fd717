"""Running a batch's items on threads without losing which task and item a log line is about.

A new thread starts with an empty context, so the task's log fields would be lost in the
threads that do a batch's real work; `each` runs every item in a copy of the caller's
context, with the item's own fields (its instance id) bound for the call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from agent import logs

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def each(
    work: Callable[[_Item], _Result],
    items: Iterable[_Item],
    concurrency: int,
    fields: Callable[[_Item], Mapping[str, str]],
) -> list[_Result]:
    """`work(item)` for every item, at most `concurrency` at once; results in item order."""
    items = list(items)
    if not items:
        return []

    def run(item: _Item, context: contextvars.Context) -> _Result:
        return context.run(_bound, work, item, fields(item))

    # One copy per item: a context can be entered by one thread at a time.
    contexts = [contextvars.copy_context() for _ in items]
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        return list(pool.map(run, items, contexts))


def _bound(work: Callable[[_Item], _Result], item: _Item, extra: Mapping[str, str]) -> _Result:
    with logs.bound(**extra):
        return work(item)
