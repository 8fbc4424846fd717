import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.benchmarks.regression import Threshold, judge
from agent.benchmarks.units import converter, direction_of

NOISY = [100.0, 101.5, 99.2, 100.8, 98.9, 100.3, 101.1, 99.6, 100.2, 99.9]


@pytest.mark.parametrize("test", ["t_test", "z_score"])
def test_a_clear_slowdown_is_a_regression(test):
    verdict = judge(NOISY, 130.0, "lower", Threshold(test=test))
    assert verdict.regression
    assert verdict.p_value < 0.001
    assert verdict.change == pytest.approx(0.2986, abs=1e-3)
    assert verdict.limit < 130.0


@pytest.mark.parametrize("test", ["t_test", "z_score"])
def test_noise_is_not_a_regression(test):
    assert not judge(NOISY, 101.9, "lower", Threshold(test=test)).regression


def test_a_speed_up_is_not_a_regression_for_times_but_is_for_throughput():
    assert not judge(NOISY, 70.0, "lower", Threshold()).regression
    assert judge(NOISY, 70.0, "higher", Threshold()).regression


def test_a_significant_but_tiny_change_is_below_the_minimum_effect():
    steady = [100.0, 100.01, 99.99, 100.0, 100.01, 99.99]
    verdict = judge(steady, 101.0, "lower", Threshold(min_effect=0.05))
    assert verdict.statistic > 10
    assert not verdict.regression


def test_a_constant_history_alerts_on_a_big_enough_change_only():
    assert judge([50.0] * 6, 60.0, "lower", Threshold()).regression
    assert not judge([50.0] * 6, 50.5, "lower", Threshold()).regression


def test_a_short_history_gives_no_verdict():
    assert judge([100.0, 100.0, 100.0], 500.0, "lower", Threshold(min_sample_size=5)) is None


def test_a_threshold_refuses_nonsense():
    with pytest.raises(ValueError, match="boundary"):
        Threshold(boundary=1.5)
    with pytest.raises(ValueError, match="min_sample_size"):
        Threshold(min_sample_size=10, max_sample_size=5)


@given(
    st.lists(st.floats(1, 1e6), min_size=1, max_size=30),
    st.floats(1, 1e6),
    st.integers(2, 10),
)
def test_no_alert_ever_fires_below_the_minimum_sample_size(history, value, minimum):
    threshold = Threshold(min_sample_size=minimum, max_sample_size=max(minimum, 30))
    verdict = judge(history, value, "lower", threshold)
    if len(history) < minimum:
        assert verdict is None
    else:
        assert verdict is not None
        assert not verdict.regression or value > sum(history) / len(history)


def test_units_know_their_direction_and_convert_within_a_family():
    assert (direction_of("ns"), direction_of("ops/s"), direction_of("ratio")) == (
        "lower",
        "higher",
        None,
    )
    assert converter("ms", "us") == pytest.approx(1000)
    assert converter("ms", "MiB") is None
