import threading
import time

import pytest

from agent.core.concurrency import each

pytestmark = pytest.mark.timeout(20)


def no_fields(item):
    return {}


def thread_of(item):
    time.sleep(0.01)
    return threading.get_ident()


def test_a_second_batch_runs_on_the_threads_of_the_first():
    first = set(each(thread_of, range(16), 4, no_fields))
    second = set(each(thread_of, range(16), 4, no_fields))
    assert len(first) <= 4
    assert second <= first


def test_a_batch_after_one_that_left_items_running_keeps_its_full_concurrency():
    release = threading.Event()
    stuck = each(lambda item: release.wait(10), range(2), 2, no_fields, 0.1, lambda item: "late")
    assert stuck == ["late", "late"]
    try:
        running, peak, lock = [0], [0], threading.Lock()

        def overlap(item):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.2)
            with lock:
                running[0] -= 1

        each(overlap, range(2), 2, no_fields, 5.0)
        assert peak[0] == 2
    finally:
        release.set()


def test_concurrent_callers_never_share_threads():
    seen: dict[str, set[int]] = {}

    def batch(name):
        seen[name] = set(each(thread_of, range(8), 2, no_fields))

    callers = [threading.Thread(target=batch, args=(name,)) for name in "ab"]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert not seen["a"] & seen["b"]
