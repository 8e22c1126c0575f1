"""Learning curves: zoo models trained on growing subsets of a task, and the scaling laws
(``convextx.scaling``, arXiv 2209.06640) fitted to them, shared by ``convextx bench --sizes``
and ``experiments/scaling_laws.py``.

The paper's protocol: train at training-set sizes x_1 < ... < x_m (``subsample``: the first x
samples of one fixed permutation of the train split per seed, so a larger subset holds the
smaller ones; the test split is kept whole), measure the test error e_x, fit every estimator on
the smaller sizes and report the RMS log error of its predictions at the ``held_out`` largest
(``fit_curve``). The error is 1 - the test metric (``metric_error``): the error rate for
accuracy, the fraction of unexplained variance 1 - R^2 for regression; its random-guessing
level e_0 (``chance_error``, M4's e_0 and the upper end of every error fitted) is 1 - 1/K for K
classes and 1 for R^2 (the mean predictor's).

::

    sizes = check_sizes([64, 128, 256, 512, 1024], held_out=1)
    check_train_sizes(sizes, task)
    small = subsample(task, 64, seed=0)            # X_train (64, n, d); X_test as in task
    curve = fit_curve(sizes_run, errors, held_out=1, e0=chance_error(task))
    curve["M4"]["extrapolation_rms_log_error"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from convextx import scaling
from convextx.tasks import Task

#: the estimators fitted to every curve
ESTIMATORS = scaling.ESTIMATORS
#: the fewest fitted sizes that fit every estimator (one per parameter of the largest)
FIT_SIZES_NEEDED = max(len(scaling.PARAMETERS[name]) for name in ESTIMATORS)


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an int (a NumPy integer too; not a bool)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_sizes(sizes: Sequence[int], held_out: int) -> list[int]:
    """``sizes`` (m,) as a list of ints; ValueError (naming ``--sizes`` / ``--held-out``)
    unless they are ints > 0 in strictly increasing order, ``held_out`` is an int >= 1, and
    m >= ``FIT_SIZES_NEEDED`` + held_out (every estimator fitted on the smaller sizes, the
    ``held_out`` largest left for its extrapolation error)."""
    if not _is_int(held_out) or held_out < 1:
        raise ValueError(f"held_out (--held-out) must be an int >= 1; got {held_out!r}")
    sizes = list(sizes)
    increasing = all(a < b for a, b in zip(sizes, sizes[1:], strict=False))
    if not sizes or not all(_is_int(s) and s > 0 for s in sizes) or not increasing:
        raise ValueError(
            f"sizes (--sizes) must be ints > 0 in strictly increasing order, e.g. "
            f"--sizes 64,128,256,512,1024; got {sizes}"
        )
    needed = FIT_SIZES_NEEDED + held_out
    if len(sizes) < needed:
        raise ValueError(
            f"sizes (--sizes) must hold at least {needed} sizes: {FIT_SIZES_NEEDED} to fit every "
            f"estimator of {list(ESTIMATORS)} (M4 has {FIT_SIZES_NEEDED} parameters) plus "
            f"held_out={held_out} held out; got {len(sizes)}: {sizes}"
        )
    return [int(s) for s in sizes]


def check_train_sizes(sizes: Sequence[int], task: Task) -> None:
    """ValueError (naming ``--sizes``) if a size exceeds the train split of ``task``."""
    if max(sizes) > task.n_train:
        raise ValueError(
            f"sizes (--sizes) must be <= the train split of task {task.name!r} "
            f"({task.n_train} samples); got {list(sizes)}"
        )


def subsample(task: Task, size: int, seed: int) -> Task:
    """``task`` with its train split (features, targets and tokens, if any) cut to its first
    ``size`` samples in the permutation ``np.random.default_rng(seed).permutation(N_train)``
    (so the subsets of one seed are nested); the test split is kept. ValueError unless
    1 <= size <= N_train."""
    if not _is_int(size) or not 1 <= size <= task.n_train:
        raise ValueError(f"size must be an int in [1, {task.n_train}] (N_train); got {size!r}")
    keep = np.random.default_rng(seed).permutation(task.n_train)[:size]
    tokens = None if task.tokens_train is None else task.tokens_train[keep]
    return dataclasses.replace(
        task, X_train=task.X_train[keep], y_train=task.y_train[keep], tokens_train=tokens
    )


def chance_error(task: Task) -> float:
    """e_0, the test error of random guessing: 1 - 1/K for K classes, 1 for regression (R^2 of
    the mean predictor is 0)."""
    if task.num_classes is None:
        return 1.0
    return 1.0 - 1.0 / task.num_classes


def metric_error(test_metric: float) -> float:
    """The error a learning curve fits: 1 - the test metric (accuracy or R^2)."""
    return 1.0 - test_metric


def _estimate(
    estimator: str,
    fitted: tuple[np.ndarray, np.ndarray],
    held: tuple[np.ndarray, np.ndarray],
    e0: float,
) -> dict[str, Any]:
    """One estimator fitted on ``fitted`` (sizes (m,), errors (m,)) and scored on ``held``:
    params, fit_rms_log_residual, extrapolation_rms_log_error, predicted_held_out (one per
    held-out point); {"error": reason} when the fit cannot be made (e.g. an error of 0)."""
    try:
        fit = scaling.fit_scaling_law(*fitted, estimator, e0=e0)
        return {
            "params": fit.params,
            "fit_rms_log_residual": fit.rms_log_residual,
            "extrapolation_rms_log_error": scaling.extrapolation_error(fit, *held),
            "predicted_held_out": fit.predict(held[0]).tolist(),
        }
    except ValueError as error:
        return {"error": str(error)}


def fit_curve(
    sizes: Sequence[float], errors: Sequence[float], held_out: int, e0: float
) -> dict[str, Any]:
    """Every estimator fitted to one learning curve: sizes (m,) and errors (m,) (repeated sizes,
    e.g. seeds, allowed). Returns {"sizes", "errors", "e0" (the points and e_0),
    "fit_sizes", "held_out_sizes" (distinct sizes, sorted), and per estimator of
    ``ESTIMATORS`` its ``_estimate`` entry}; {"sizes", "errors", "e0", "error": reason} when the
    points cannot be split (fewer than held_out + 1 distinct sizes, or an error <= 0)."""
    curve: dict[str, Any] = {
        "sizes": [float(s) for s in sizes],
        "errors": [float(e) for e in errors],
        "e0": e0,
    }
    try:
        fitted, held = scaling.split_by_size(curve["sizes"], curve["errors"], held_out)
    except ValueError as error:
        return curve | {"error": str(error)}
    curve["fit_sizes"] = sorted(set(fitted[0].tolist()))
    curve["held_out_sizes"] = sorted(set(held[0].tolist()))
    return curve | {name: _estimate(name, fitted, held, e0) for name in ESTIMATORS}


def fit_rows(
    rows: Sequence[dict[str, Any]], held_out: int, e0: dict[str, float]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {model: ``fit_curve``}} of bench rows (each with "train_size"), in first-seen
    order: the points are the successful runs' (train_size, ``metric_error(test_metric)``) over
    every seed; e0: the chance error per task."""
    points: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in rows:
        if "error" not in row and row.get("test_metric") is not None:
            point = (row["train_size"], metric_error(row["test_metric"]))
            points.setdefault((row["task"], row["model"]), []).append(point)
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, model), measured in points.items():
        sizes, errors = zip(*measured, strict=True)
        curves.setdefault(task, {})[model] = fit_curve(sizes, errors, held_out, e0[task])
    return curves
