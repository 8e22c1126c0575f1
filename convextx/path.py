"""``cx.path``: ConvexAttention fits along a decreasing sequence of beta, on one program.

The program is built (and its inputs validated) once; ``solvers.regularization_path`` solves it
for every beta, warm-starting each solve from the previous solution and its step size; each
solution then becomes a fitted estimator (heads recovered as ``ConvexAttention.fit`` does).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import solvers
from convextx._validation import check_X, check_y
from convextx.estimator import ConvexAttention, default_tol, precision
from solvers import checks
from solvers.path import BETA_MAX_MARGIN


@dataclasses.dataclass(frozen=True)
class BetaPath:
    """One record per beta (largest first): beta, objective, gap, status, iterations, seconds,
    active_tokens (count), heads (recovered), train_score, test_score (None without test data).
    estimators: the fitted estimator at each beta.  beta_max: the smallest beta whose solution
    is 0."""

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
    estimator = ConvexAttention(**params)
    method = estimator._method()
    X, y = check_X(X), check_y(y)
    with precision(estimator.dtype):
        program, classes = estimator._program(X, y, None)
        top = solvers.beta_max(program.problem)
        if betas is None:
            num = checks.integer("num", num, 1)
            min_ratio = checks.tolerance("min_ratio", min_ratio)
            betas = np.geomspace(top * BETA_MAX_MARGIN, top * min_ratio, num)
        tol = estimator.tol if estimator.tol is not None else default_tol(program.problem.dtype)
        solved = program.path(betas, method=method, tol=tol, max_iter=int(estimator.max_iter))
    records, estimators = [], []
    for beta, result in zip(solved.betas, solved.results, strict=True):
        fitted = copy.copy(estimator).set_params(beta=float(beta))
        with precision(fitted.dtype):
            state = fitted._recovered(program.with_beta(float(beta)), classes, result)
        fitted._set_fitted(state, X)
        if result.status != "optimal":
            warnings.warn(
                f"path: beta={beta:.4g} did not reach tol={tol}: status {result.status!r}",
                ConvergenceWarning,
                stacklevel=2,
            )
        records.append({
            "beta": float(beta),
            "objective": result.objective,
            "gap": result.gap,
            "status": result.status,
            "iterations": result.iterations,
            "seconds": result.seconds,
            "active_tokens": int(fitted.active_tokens_.size),
            "heads": int(fitted.attention_.shape[0]),
            "train_score": fitted.score(X, y),
            "test_score": None if X_test is None else fitted.score(X_test, y_test),
        })  # fmt: skip
        estimators.append(fitted)
    return BetaPath(records, estimators, top)
