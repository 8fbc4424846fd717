import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.timeseries import (
    SERIES,
    partition_bounds,
    partition_name,
    period_start,
    shift,
)

UTC = dt.UTC
moments = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)


def test_a_day_starts_at_utc_midnight_whatever_the_zone_of_the_moment():
    moment = dt.datetime(2025, 3, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert period_start(moment, "day") == dt.datetime(2025, 2, 28, tzinfo=UTC)


def test_a_month_starts_on_its_first_day():
    moment = dt.datetime(2024, 2, 29, 23, 59, tzinfo=UTC)
    assert period_start(moment, "month") == dt.datetime(2024, 2, 1, tzinfo=UTC)


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError, match="naive"):
        period_start(dt.datetime(2025, 1, 1), "day")


def test_months_shift_across_year_boundaries_both_ways():
    december = dt.datetime(2025, 12, 1, tzinfo=UTC)
    assert shift(december, "month", 1) == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert shift(december, "month", -12) == dt.datetime(2024, 12, 1, tzinfo=UTC)
    assert shift(december, "month", 14) == dt.datetime(2027, 2, 1, tzinfo=UTC)


def test_partitions_are_named_after_their_lower_bound():
    start = dt.datetime(2025, 1, 7, tzinfo=UTC)
    assert partition_name("instance_health_history", start) == "instance_health_history_p20250107"


def test_monthly_bounds_follow_the_calendar():
    bounds = partition_bounds("month", dt.datetime(2024, 12, 15, 8, tzinfo=UTC), 3)
    lowers = [lower.date().isoformat() for lower, _ in bounds]
    assert lowers == ["2024-12-01", "2025-01-01", "2025-02-01"]
    assert bounds[-1][1] == dt.datetime(2025, 3, 1, tzinfo=UTC)


def test_the_agent_keeps_health_history_daily_and_benchmarks_monthly():
    assert SERIES["instance_health_history"].interval == "day"
    assert SERIES["instance_health_history"].column == "time"
    assert SERIES["benchmarks"].interval == "month"
    assert SERIES["benchmarks"].column == "timestamp"


@given(moment=moments, interval=st.sampled_from(["day", "month"]), count=st.integers(1, 40))
def test_bounds_are_contiguous_and_the_first_holds_the_start(moment, interval, count):
    bounds = partition_bounds(interval, moment, count)
    assert len(bounds) == count
    assert bounds[0][0] <= moment < bounds[0][1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
