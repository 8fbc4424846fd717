"""How a batch runs its checks: bounded threads, jitter that spreads starts, results in order."""

import time

from agent.health import InstanceSpec, check_all
from agent.probes.base import Observation, Probe


class Recording(Probe):
    """A probe that only notes when it started."""

    kind = "tcp"

    def __init__(self, starts: list[float]) -> None:
        super().__init__()
        self.starts = starts

    def check(self) -> Observation:
        self.starts.append(time.monotonic())  # list.append is atomic under the GIL
        return Observation()


def specs(count: int) -> list[InstanceSpec]:
    return [
        InstanceSpec(id=str(n), name=f"i{n}", connection_type="tcp", host="h", port=1)
        for n in range(count)
    ]


def test_results_come_back_in_the_order_of_the_specs():
    batch = specs(40)
    checked = check_all(batch, lambda spec: Recording([]), concurrency=8, jitter_s=0.05)
    assert [c.spec.id for c in checked] == [s.id for s in batch]


def test_jitter_spreads_the_starts_without_adding_up_its_sleeps():
    starts: list[float] = []
    started = time.monotonic()
    check_all(specs(64), lambda spec: Recording(starts), concurrency=8, jitter_s=0.3)
    elapsed = time.monotonic() - started
    # Sleeping in the threads would take about 64 x 0.15 / 8 = 1.2 s.
    assert elapsed < 0.8
    assert max(starts) - min(starts) > 0.15
