import math

import pytest
from scipy import stats

from agent.benchmarks import student_t

DEGREES = [1, 2, 3, 4, 5, 7, 10, 20, 30, 63, 100, 1000]
POINTS = [-50.0, -5.0, -2.0, -0.5, 0.0, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 50.0, 1e3]
LEVELS = [0.01, 0.3, 0.5, 0.6, 0.9, 0.95, 0.99, 0.999, 0.9999]


@pytest.mark.parametrize("df", DEGREES)
def test_the_tail_matches_scipy_to_a_relative_1e_10_even_far_out(df):
    for t in POINTS:
        assert student_t.sf(t, df) == pytest.approx(float(stats.t.sf(t, df)), rel=1e-10)


@pytest.mark.parametrize("df", DEGREES)
def test_the_quantile_matches_scipy_to_a_relative_1e_10(df):
    for p in LEVELS:
        assert student_t.ppf(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-10)


def test_infinite_statistics_have_certain_tails():
    assert student_t.sf(math.inf, 5) == 0.0
    assert student_t.sf(-math.inf, 5) == 1.0
    assert math.isnan(student_t.sf(math.nan, 5))


def test_a_quantile_outside_zero_and_one_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        student_t.ppf(1.0, 5)
