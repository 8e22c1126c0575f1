"""Argument checks shared by the task generators: each raises ValueError naming the argument."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any

import numpy as np


def integer(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, if it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def choice(name: str, value: Any, options: Collection[str]) -> str:
    """``value`` if it is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value


def fraction(name: str, value: Any) -> float:
    """``value`` as a float, if it lies strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def nonnegative(name: str, value: Any) -> float:
    """``value`` as a float, if it is finite and >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def generators(seed: Any, count: int) -> list[np.random.Generator]:
    """``count`` independent numpy Generators from one int ``seed`` >= 0 (SeedSequence.spawn)."""
    seed = integer("seed", seed, minimum=0)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]
