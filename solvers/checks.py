"""Argument checks shared by ``solvers``, ``convextx`` and ``baselines``.

Every check either returns the value in a canonical Python/numpy type or raises a
``TypeError`` (wrong kind of value; for arrays a ``DtypeError``, which is both) or a
``ValueError`` (right kind, wrong range or shape) whose message names the argument and says
what was expected. Nothing is coerced silently: a bool is not a number, a float is not an
int, a complex array is not a real one; numpy scalars of the right kind are accepted
(``np.int64(10)`` is an int, ``np.float32(1e-6)`` a real).

This module imports numpy only, so ``baselines`` may use it without depending on the solvers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

INT32_MAX = 2**31 - 1  # loop counters of compiled solvers are int32


class DtypeError(TypeError, ValueError):
    """An array of the wrong kind of numbers (bool, complex, strings, objects).

    Both a ``TypeError`` (the kind of value is wrong) and a ``ValueError`` (what numpy raises
    when it cannot convert an array, and what array validators in scikit-learn raise), so
    callers catching either see it; ``numpy.exceptions.AxisError`` is built the same way."""


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int: an integer (Python or numpy, not a bool) in [minimum, maximum]."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer in {_interval(minimum, maximum)}; got {value}")
    return value


def real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval from ``low`` to ``high`` (closed unless
    ``low_open`` / ``high_open``); real numbers only (Python or numpy, not bool, not complex)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__})")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        if high is None and low is not None:
            where = f"{'>' if low_open else '>='} {low:g}"
        else:
            where = "in " + _interval(
                low, high, "(" if low_open else "[", ")" if high_open else "]"
            )
        raise ValueError(f"{name} must be a finite number {where}; got {value!r}")
    return value


def positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0."""
    return real(name, value, 0.0, low_open=True)


def tolerance(name: str, value: Any) -> float:
    """A relative tolerance: a finite real in (0, 1)."""
    return real(name, value, 0.0, 1.0, low_open=True, high_open=True)


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is a bool (Python or numpy)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def seed(name: str, value: Any) -> int:
    """A random seed: an integer in [0, 2**32 - 1]."""
    return integer(name, value, 0, 2**32 - 1)


def hashable(name: str, value: Any) -> Any:
    """``value`` if ``hash(value)`` works (e.g. a static argument of a compiled function, whose
    compilations are keyed on it by equality); a TypeError naming ``name`` otherwise."""
    try:
        hash(value)
    except TypeError as err:
        raise TypeError(f"{name} must be hashable; got {type(value).__name__} ({err})") from None
    return value


def choice(name: str, value: Any, options: Collection[str]) -> str:
    """``value`` if it is one of ``options`` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(options)}")
    return value


def real_array(
    name: str, value: Any, ndim: int | Sequence[int] | None = None, shape_hint: str = ""
) -> np.ndarray:
    """``value`` as a finite real (integer or float, not bool or complex) numpy array with
    ``ndim`` axes (an int or a set of allowed values), none of them empty. Integer arrays are
    returned as float64; float arrays keep their dtype."""
    array = as_array(name, value, shape_hint)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DtypeError(
            f"{name} must be a real numeric array{shape_hint}; got dtype {array.dtype}"
        )
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and array.ndim not in tuple(allowed):
        raise ValueError(f"{name} must have {_axes(allowed)}{shape_hint}; got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty{shape_hint}; got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def as_array(name: str, value: Any, shape_hint: str = "") -> np.ndarray:
    """``value`` as a numpy array; a ragged nested list is a ValueError naming ``name``, and
    booleans, complex numbers, strings and objects are ``DtypeError``s."""
    try:
        array = np.asarray(value)
    except ValueError:  # numpy refuses ragged nested sequences
        raise ValueError(
            f"{name} must be a rectangular array{shape_hint}; got a ragged nested sequence"
        ) from None
    if array.dtype == object:
        raise ValueError(
            f"{name} must be a rectangular numeric array{shape_hint}; got objects (ragged?)"
        )
    if array.dtype == bool or np.issubdtype(array.dtype, np.complexfloating):
        raise DtypeError(f"{name} must be real numbers{shape_hint}; got dtype {array.dtype}")
    return array


def sample_weights(value: Any, num_samples: int, name: str = "sample_weight") -> np.ndarray | None:
    """None, or (N,) finite weights > 0 as float64."""
    if value is None:
        return None
    weights = real_array(name, value, 1)
    if weights.shape != (num_samples,):
        raise ValueError(
            f"{name} must have shape ({num_samples},) (one weight per sample); got {weights.shape}"
        )
    if np.any(weights <= 0):
        raise ValueError(f"{name} must be > 0; drop a sample instead of giving it weight 0")
    return weights.astype(np.float64)


def _interval(low: Any, high: Any, left: str = "[", right: str = "]") -> str:
    lo = "-inf" if low is None else f"{low:g}" if isinstance(low, float) else str(low)
    hi = "inf" if high is None else f"{high:g}" if isinstance(high, float) else str(high)
    return f"{'(' if low is None else left}{lo}, {hi}{')' if high is None else right}"


def _axes(allowed: Sequence[int]) -> str:
    options = " or ".join(str(a) for a in allowed)
    return f"{options} {'axis' if tuple(allowed) == (1,) else 'axes'}"
