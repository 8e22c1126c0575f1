"""Checks of convextx's own inputs (X, y, beta) at the public entry points, on top of the
shared ``solvers.checks``: clear errors naming the argument, no silent coercion."""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers import checks


def check_X(X: Any, name: str = "X") -> np.ndarray:
    """X as a real float array (N, n, d) with N, n, d >= 1 and finite entries (integers are
    converted to float64; booleans, complex numbers and ragged lists are refused)."""
    arr = checks.as_array(name, X, " (N, n, d)")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array (N, n, d); got dtype {arr.dtype}")
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(
            f"{name} must have shape (N, n, d): N samples of n tokens with d features; got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def check_y(y: Any, name: str = "y") -> np.ndarray:
    """y as an array: labels (integers, booleans, strings) or finite real values; complex
    numbers, objects and ragged lists are refused, and so is NaN (as a value or as a label)."""
    try:
        arr = np.asarray(y)
    except ValueError:
        raise ValueError(f"{name} must be a rectangular array; got a ragged sequence") from None
    if arr.dtype == object or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real values or labels; got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a leading sample axis; got a scalar")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf (not a value, nor a class label)")
    return arr


def check_beta(beta: Any) -> float:
    """beta as a float: a real number > 0 (not a bool)."""
    return checks.positive("beta", beta)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    return checks.choice(name, value, choices)
