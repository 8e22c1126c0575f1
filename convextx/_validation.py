"""Checks at the public entry points: clear errors naming the argument, no silent coercion."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_X(X: Any, name: str = "X") -> np.ndarray:
    """X as a float array (N, n, d) with N, n, d >= 1 and finite entries."""
    arr = np.asarray(X)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
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


def check_beta(beta: Any) -> float:
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number > 0; got {beta!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")
    return value


def check_samples(X: np.ndarray, y: np.ndarray, name: str = "y") -> None:
    if y.ndim == 0 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"{name} must have one entry per sample ({X.shape[0]}); got shape {y.shape}"
        )
