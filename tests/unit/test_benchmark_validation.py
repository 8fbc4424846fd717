import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.benchmarks.validation import Invalid, Validator

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ROW = {
    "package": "@graph/layer4",
    "benchmark": "parse",
    "metric": "latency",
    "value": 1.5,
    "unit": "ms",
    "timestamp": "2025-06-01T12:00:00+02:00",
}


def point(**changes):
    return Validator({"run_id": "r"}, "json", NOW).point({**ROW, **changes})


def test_a_valid_row_becomes_a_point_in_utc():
    made = point()
    assert made[0] == dt.datetime(2025, 6, 1, 10, tzinfo=dt.UTC)
    assert made[1:8] == ("@graph/layer4", None, "parse", "latency", 1.5, "ms", "r")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"value": None}, "missing field: value"),
        ({"value": float("nan")}, "value is not a finite number"),
        ({"value": "inf"}, "value is not a finite number"),
        ({"value": True}, "value is not a number"),
        ({"value": -1}, "negative duration"),
        ({"unit": "MiB", "value": -1}, "negative value"),
        ({"unit": "sec"}, "unknown unit"),
        ({"timestamp": "2026-01-03T00:00:00Z"}, "timestamp too far in the future"),
        ({"timestamp": "1969-12-31T00:00:00Z"}, "timestamp before 1970"),
        ({"timestamp": "yesterday"}, "timestamp is not ISO 8601 or epoch seconds"),
        ({"benchmark": "x" * 256}, "benchmark longer than 255 characters"),
        ({"package": ""}, "missing field: package"),
        ({"parameters": {"n": float("nan")}}, "parameters contain a non-finite number"),
        ({"parameters": [1]}, "parameters must be a JSON object"),
        ({"metric": "bad\x00"}, "metric contains a NUL character"),
        ({"metric": "\ud800"}, "metric is not valid Unicode"),
    ],
)
def test_an_invalid_row_is_refused_with_its_reason(changes, reason):
    with pytest.raises(Invalid) as refused:
        point(**changes)
    assert str(refused.value) == reason


def test_a_negative_ratio_is_allowed():
    assert point(unit="%", value=-3.5)[5] == -3.5


def test_epoch_seconds_and_naive_times_are_utc():
    assert point(timestamp=1_750_000_000)[0] == dt.datetime.fromtimestamp(1_750_000_000, dt.UTC)
    assert point(timestamp="2025-06-01T00:00:00")[0].tzinfo == dt.UTC


def test_defaults_fill_in_but_never_override():
    validator = Validator({"run_id": "r", "branch": "main", "package": "other"}, "json", NOW)
    made = validator.point(ROW)
    assert (made[1], made[8]) == ("@graph/layer4", "main")


@given(st.dictionaries(st.sampled_from([*sorted(ROW), "parameters"]), st.from_type(object)))
def test_validation_either_makes_a_point_or_gives_a_reason(fields):
    validator = Validator({"run_id": "r"}, "json", NOW)
    reason = None
    try:
        made = validator.point(fields)
    except Invalid as refused:
        reason = str(refused)
    assert reason or len(made) == 13
