"""The units a benchmark value may carry: family, scale, and which way is better.

A unit outside this table is refused at validation (a typo like `sec` would otherwise start
a series that no regression check could compare). Values are stored in the unit they came
in; regression checks convert history into the unit of the new point within one family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher"]


@dataclass(frozen=True)
class Unit:
    """A unit: its family, its size in the family's base unit, and its direction (if any)."""

    family: str
    scale: float
    direction: Direction | None
    nonnegative: bool = True


def _family(
    family: str, direction: Direction | None, scales: dict[str, float], nonnegative: bool = True
) -> dict[str, Unit]:
    return {name: Unit(family, scale, direction, nonnegative) for name, scale in scales.items()}


UNITS: dict[str, Unit] = {
    **_family(
        "time",
        "lower",
        {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0},
    ),
    **_family(
        "size",
        "lower",
        {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3},
    ),
    **_family(
        "byte_rate",
        "higher",
        {"B/s": 1, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "KiB/s": 1024, "MiB/s": 1024**2},
    ),
    **_family("rate", "higher", {"ops/s": 1, "items/s": 1, "it/s": 1, "req/s": 1, "1/s": 1}),
    **_family("count", None, {"count": 1, "iterations": 1, "rounds": 1}),
    **_family("ratio", None, {"ratio": 1, "%": 0.01}, nonnegative=False),
    **_family("number", None, {"1": 1}, nonnegative=False),
}

TIME_UNITS = frozenset(name for name, unit in UNITS.items() if unit.family == "time")


def direction_of(unit: str) -> Direction | None:
    """Which way is better for values in `unit`; None when neither (no regression check)."""
    known = UNITS.get(unit)
    return known.direction if known else None


def converter(source: str, target: str) -> float | None:
    """The factor that turns a value in `source` into `target`; None across families."""
    a, b = UNITS.get(source), UNITS.get(target)
    if a is None or b is None or a.family != b.family:
        return None
    return a.scale / b.scale
