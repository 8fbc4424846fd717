"""Student's t distribution: the upper tail and its inverse, in plain Python.

What the regression check needs of `scipy.stats.t` (`sf` and `ppf`), without the 2-3 s and
~40 MiB that importing scipy costs each worker process. The tail is the regularized
incomplete beta function, I_x(df/2, 1/2) with x = df / (df + t^2), evaluated by its continued
fraction (modified Lentz, as in Numerical Recipes' `betacf`); the quantile inverts the tail by
bisection. Both agree with scipy to about 1e-12 (tests/unit/test_student_t.py).
"""

from __future__ import annotations

import math

_TINY = 1e-300
_EPS = 1e-15


def sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    half = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t)) if math.isfinite(t) else 0.0
    return half if t >= 0 else 1.0 - half


def ppf(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1."""
    if not 0 < p < 1:
        raise ValueError("p must be between 0 and 1")
    if p < 0.5:
        return -ppf(1 - p, df)
    tail, low, high = 1 - p, 0.0, 1.0
    while sf(high, df) > tail:  # widen until the quantile is bracketed
        low, high = high, high * 2
    for _ in range(200):  # bisection: halves the bracket until floats stop moving
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if sf(middle, df) > tail else (low, middle)
    return (low + high) / 2


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )  # fmt: skip
    # The fraction converges fast only below (a + 1) / (a + b + 2); use the symmetry above it.
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    c, d = 1.0, _nonzero(1 - (a + b) * x / (a + 1))
    d = 1 / d
    fraction = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 / _nonzero(1 + numerator * d)
            c = _nonzero(1 + numerator / c)
            fraction *= d * c
        if abs(d * c - 1) < _EPS:
            break
    return fraction


def _nonzero(value: float) -> float:
    return value if abs(value) > _TINY else _TINY
