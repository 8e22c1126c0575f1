"""``from_arrays``: a ``Task`` from the user's own arrays, validated like every task."""

from __future__ import annotations

from typing import Any

import numpy as np

from convextx._validation import check_X, check_y
from convextx.tasks.base import PROBLEMS, Task
from solvers import checks


def _infer_problem(y: np.ndarray) -> str:
    labels = not np.issubdtype(y.dtype, np.floating)
    if y.ndim == 1:
        return "classification" if labels else "regression"
    if y.ndim == 2:
        return "sequence" if labels else "regression"
    return "sequence"


def from_arrays(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    problem: str | None = None,
    name: str = "arrays",
) -> Task:
    """A task of the given splits.

    X_train, X_test: (N, n, d) real features (n tokens of d features; tabular data without
      tokens is (N, 1, d)).
    y_train, y_test: targets of the problem type:
      "classification" (N,) labels of any kind (ints, strings): encoded as 0..K-1 by their
      sorted unique values over both splits (``metadata["classes"]``: the originals);
      "regression" (N,) or (N, c) floats; "sequence" (N, n) labels or (N, n, c) floats.
    problem: one of ``PROBLEMS``, or None to infer it from y_train (non-float (N,): labels;
      float (N,) or (N, c): regression; (N, n) non-float or 3-d: sequence).
    """
    X_train, X_test = check_X(X_train), check_X(X_test)
    y_train, y_test = check_y(y_train), check_y(y_test)
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"X_test must have X_train's (n, d) = {X_train.shape[1:]}; got {X_test.shape[1:]}"
        )
    problem = _infer_problem(y_train) if problem is None else problem
    checks.choice("problem", problem, PROBLEMS)
    metadata: dict[str, Any] = {"embedding": "user arrays", "config": {"name": name}}
    num_classes = None
    labelled = problem == "classification" or (problem == "sequence" and y_train.ndim == 2)
    if labelled:
        classes, encoded = np.unique(
            np.concatenate([y_train.ravel(), y_test.ravel()]), return_inverse=True
        )
        y_train = encoded[: y_train.size].reshape(y_train.shape)
        y_test = encoded[y_train.size :].reshape(y_test.shape)
        num_classes = int(classes.size)
        metadata["classes"] = classes.tolist()
    else:
        if not np.issubdtype(y_train.dtype, np.number) or not np.issubdtype(
            y_test.dtype, np.number
        ):
            raise TypeError(
                f"{problem} targets y must be numeric; got {y_train.dtype}, {y_test.dtype}"
            )
        y_train, y_test = y_train.astype(np.float64), y_test.astype(np.float64)
    return Task(
        name=name,
        problem=problem,
        X_train=X_train.astype(np.float64),
        X_test=X_test.astype(np.float64),
        y_train=y_train,
        y_test=y_test,
        num_classes=num_classes,
        metadata=metadata,
    )
