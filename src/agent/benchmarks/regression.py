"""Regression detection: whether a new point of a series is worse than its recent history.

In the spirit of Bencher's thresholds: the history (the last `max_sample_size` points before
the new one, in the new point's unit) gives a mean and a standard deviation; the new point
is a regression when all of these hold:

- the history has at least `min_sample_size` points (a short history never alerts);
- it moved in the bad direction for its unit (up for times and sizes, down for rates);
- the move is at least `min_effect` of the baseline mean (a tiny, if "significant", shift of
  a very stable benchmark is not worth an alert);
- it lies beyond the one-sided `boundary` (e.g. 0.99) of the test: for `t_test`, Student's
  t for a new observation against a sample (prediction interval, n - 1 degrees of freedom);
  for `z_score`, the normal distribution with the sample's mean and deviation.

Pure code: the caller fetches history and stores verdicts.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agent.benchmarks import student_t
from agent.benchmarks.units import Direction

Test = Literal["t_test", "z_score"]


@dataclass(frozen=True)
class Threshold:
    """How a new point is judged against its history."""

    test: Test = "t_test"
    boundary: float = 0.99
    min_sample_size: int = 5
    max_sample_size: int = 64
    min_effect: float = 0.05

    def __post_init__(self) -> None:
        if not 0.5 < self.boundary < 1:
            raise ValueError("boundary must be between 0.5 and 1")
        if not 2 <= self.min_sample_size <= self.max_sample_size:
            raise ValueError("need 2 <= min_sample_size <= max_sample_size")
        if self.min_effect < 0:
            raise ValueError("min_effect must not be negative")


@dataclass(frozen=True)
class Verdict:
    """The comparison of one new value with its baseline."""

    regression: bool
    value: float
    baseline: float
    stdev: float
    samples: int
    change: float
    statistic: float
    p_value: float
    limit: float
    test: Test
    direction: Direction


def judge(
    history: Sequence[float], value: float, direction: Direction, threshold: Threshold
) -> Verdict | None:
    """The verdict on `value`, or None when the history is too short to judge."""
    if len(history) < threshold.min_sample_size:
        return None
    sample = history[: threshold.max_sample_size]
    mean, stdev = statistics.fmean(sample), statistics.stdev(sample)
    sign = 1.0 if direction == "lower" else -1.0
    worse_by = sign * (value - mean)
    spread = stdev * _spread_factor(threshold.test, len(sample))
    statistic = _statistic(worse_by, spread)
    p_value = _tail(threshold.test, statistic, len(sample))
    critical = _critical(threshold.test, threshold.boundary, len(sample))
    change = (value - mean) / abs(mean) if mean else math.copysign(math.inf, value - mean)
    effect = abs(change) >= threshold.min_effect if mean else worse_by > 0
    return Verdict(
        regression=worse_by > 0 and effect and statistic > critical,
        value=value,
        baseline=mean,
        stdev=stdev,
        samples=len(sample),
        change=change,
        statistic=statistic,
        p_value=p_value,
        limit=mean + sign * critical * spread,
        test=threshold.test,
        direction=direction,
    )


def _spread_factor(test: Test, n: int) -> float:
    # A new observation against a sample mean varies by s * sqrt(1 + 1/n).
    return math.sqrt(1 + 1 / n) if test == "t_test" else 1.0


def _statistic(worse_by: float, spread: float) -> float:
    if spread > 0:
        return worse_by / spread
    return 0.0 if worse_by == 0 else math.copysign(math.inf, worse_by)


def _tail(test: Test, statistic: float, n: int) -> float:
    """One-sided p: the chance of a value at least this much worse, were nothing changed."""
    if test == "z_score":
        return 1.0 - statistics.NormalDist().cdf(statistic)
    return student_t.sf(statistic, n - 1)


# Inverting the t tail takes a few milliseconds, and an ingest judges every series it touched
# against the same few (boundary, sample size) pairs.
@functools.lru_cache(maxsize=1024)
def _critical(test: Test, boundary: float, n: int) -> float:
    if test == "z_score":
        return statistics.NormalDist().inv_cdf(boundary)
    return student_t.ppf(boundary, n - 1)
