"""``cx.path``: warm-started ConvexAttention fits over a decreasing sequence of beta."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

import solvers
from convextx.estimator import ConvexAttention, precision
from solvers.path import BETA_MAX_MARGIN


@dataclasses.dataclass(frozen=True)
class BetaPath:
    """One record per beta (largest first): beta, objective, gap, status, iterations, seconds,
    active_tokens (count), heads (recovered), train_score, test_score (None without test data).
    estimators: the fitted estimator at each beta."""

    records: list[dict[str, Any]]
    estimators: list[ConvexAttention]
    beta_max: float

    @property
    def betas(self) -> np.ndarray:
        return np.array([r["beta"] for r in self.records])

    def column(self, name: str) -> np.ndarray:
        return np.array([r[name] for r in self.records])


def path(
    X: Any,
    y: Any,
    betas: Any = None,
    X_test: Any = None,
    y_test: Any = None,
    num: int = 10,
    min_ratio: float = 1e-2,
    **params: Any,
) -> BetaPath:
    """Fit ``ConvexAttention(**params)`` for each beta, warm-starting from the previous solution.

    betas: explicit values, or None for ``num`` values log-spaced from beta_max (the smallest
    beta whose solution is 0, in closed form) down to ``min_ratio * beta_max``.
    """
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    params = {**params, "warm_start": True}
    estimator = ConvexAttention(**params)
    with precision(estimator.dtype):
        top = solvers.beta_max(estimator.build_program(X, y).problem)
    if betas is None:
        if not (isinstance(num, int) and num >= 1) or not 0 < min_ratio < 1:
            raise ValueError(f"need num >= 1 and 0 < min_ratio < 1; got {num!r}, {min_ratio!r}")
        betas = np.geomspace(top * BETA_MAX_MARGIN, top * min_ratio, num)
    betas = np.sort(np.asarray(betas, dtype=float).ravel())[::-1]
    if betas.size == 0 or np.any(~np.isfinite(betas)) or np.any(betas <= 0):
        raise ValueError(f"betas must be finite and > 0; got {betas}")
    records, estimators = [], []
    for beta in betas:
        estimator.set_params(beta=float(beta))
        estimator.fit(X, y)
        result = estimator.solve_result_
        records.append({
            "beta": float(beta),
            "objective": result.objective,
            "gap": result.gap,
            "status": result.status,
            "iterations": result.iterations,
            "seconds": result.seconds,
            "active_tokens": int(estimator.active_tokens_.size),
            "heads": int(estimator.heads_["a"].shape[0]),
            "train_score": estimator.score(X, y),
            "test_score": None if X_test is None else estimator.score(X_test, y_test),
        })  # fmt: skip
        estimators.append(copy.copy(estimator))
    return BetaPath(records, estimators, top)
