"""Scaling-law extrapolation: the estimators of Alabdulmohsin, Neyshabur, Zhai, "Revisiting
Neural Scaling Laws in Language and Vision" (NeurIPS 2022, arXiv 2209.06640).

Each estimator models the error e_x (test error or loss, lower is better) of a model trained
on x examples (x > 0):

- ``"M1"``, power law:            e_x = beta x^c
- ``"M2"``, power law + constant: e_x = e_inf + beta x^c
- ``"M3"``:                       e_x = beta (1/x + gamma)^(-c)
- ``"M4"``:                       (e_x - e_inf) / (e_0 - e_x)^alpha = beta x^c

with beta > 0, c <= 0 (the error falls with data), 0 <= e_inf < min(errors) (the error at
infinite data), gamma >= 0 and alpha >= 0. e_0 (M4) is the error of random guessing (e.g.
1 - 1/K for K balanced classes); every error must lie in (0, e_0). M3's form is the one of the
authors' reference code (google-research, ``revisiting_neural_scaling_laws/methods/m3.py``:
``beta * (1/x + gamma) ** c`` with exponent c >= 0, written here with c <= 0 as the other
estimators); gamma = 0 gives M1, and e_x -> beta gamma^(-c) as x -> infinity. M4 with
alpha = 0 is M2; for alpha > 0, e_x stays in (e_inf, e_0) for every x and falls from e_0
(x -> 0) to e_inf (x -> infinity) as a sigmoid in log x.

Fitting (as in the paper and its code): each law is an equation g(e_x) = f(x) with
f(x) = beta x^c (M3: f(x) = beta (1/x + gamma)^(-c)) and g(e) = e (M1, M3), e - e_inf (M2),
(e - e_inf) / (e_0 - e)^alpha (M4). The fit minimizes the squared log residuals

    sum_i (log g(e_i) - log f(x_i))^2

with ``scipy.optimize.least_squares`` (trust-region reflective, box bounds) over
(log beta, c, [e_inf], [alpha], [gamma]). e_0 is fixed (the authors' code can also learn
it; fixed at random guessing it keeps M4 identifiable on short curves). For fixed e_inf
(and gamma) the residuals are linear in (log beta, c, alpha), so the starts come from a
profile: a grid of e_inf (gamma) values, each with its box-constrained linear least squares
(``scipy.optimize.lsq_linear``); the best few starts are polished and the lowest kept.

Predicting M4 (e_x is implicit): with w = e_x - e_inf and b = e_0 - e_inf, solve
log w - alpha log(b - w) = log(beta x^c) for w in (0, b). The left side is strictly
increasing in w (from -inf to +inf for alpha > 0), so the root is unique. It is found by
``scipy.optimize.brentq`` in s = logit(w / b) (log w = log b + log sigmoid(s),
log(b - w) = log b + log sigmoid(-s)), which keeps both logs finite, with a bracket widened
until the sign changes.

Extrapolation (the paper's protocol): fit on the smaller sizes and report the RMS log error
sqrt(mean_i (log e_hat(x_i) - log e_i)^2) at the held-out larger sizes
(``split_by_size``, ``extrapolation_error``).

API::

    fit = fit_scaling_law(sizes, errors, estimator="M4", e0=0.9)  # sizes, errors: (m,)
    fit.params, fit.predict(larger_sizes)                          # or predict("M4", params, x, e0)
    (x_fit, e_fit), (x_test, e_test) = split_by_size(sizes, errors, held_out=3)
    extrapolation_error(fit_scaling_law(x_fit, e_fit, "M4", e0=0.9), x_test, e_test)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from solvers import checks

ESTIMATORS = ("M1", "M2", "M3", "M4")
#: parameter names of each estimator, in the order of the fitted vector (log beta is fitted)
PARAMETERS = {
    "M1": ("beta", "c"),
    "M2": ("beta", "c", "e_inf"),
    "M3": ("beta", "c", "gamma"),
    "M4": ("beta", "c", "alpha", "e_inf"),
}
E_INF_GRID = (0.0, 0.25, 0.5, 0.75, 0.9, 0.97, 0.99)  # fractions of min(errors)
GAMMA_GRID = (0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0)  # multiples of 1 / max(sizes)
E_INF_MARGIN = 1e-6  # e_inf <= (1 - margin) min(errors), so log(e - e_inf) stays finite
ALPHA_TINY = 1e-12  # M4 with alpha below this is predicted as M2 (closed form)
STARTS = 3  # profile starts polished by least_squares


@dataclass(frozen=True)
class ScalingFit:
    """A fitted scaling law.

    estimator: "M1" | "M2" | "M3" | "M4".  params: {"beta", "c", and "e_inf" (M2, M4),
    "alpha" (M4), "gamma" (M3)} (module docstring).  e0: the random-guessing error (M4; None
    for the others when not given).  sizes (m,), errors (m,): the points fitted.
    rms_log_residual: sqrt(mean (log g(e_i) - log f(x_i))^2) at the optimum (the fit's
    objective, in the implicit form).
    """

    estimator: str
    params: dict[str, float]
    e0: float | None
    sizes: np.ndarray = field(repr=False)
    errors: np.ndarray = field(repr=False)
    rms_log_residual: float

    def predict(self, sizes: Any) -> np.ndarray:
        """Predicted errors e_x at ``sizes`` (any shape: the result has it)."""
        return predict(self.estimator, self.params, sizes, self.e0)


def predict(
    estimator: str, params: dict[str, float], sizes: Any, e0: float | None = None
) -> np.ndarray:
    """Errors e_x of law ``estimator`` with ``params`` (``PARAMETERS[estimator]``; e.g. a
    ``ScalingFit.params`` read back from JSON) at ``sizes`` x > 0 (any shape: the result has
    it); e0 is needed by M4."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}; got {estimator!r}")
    if set(params) != set(PARAMETERS[estimator]):
        raise ValueError(
            f"params of {estimator} must be {list(PARAMETERS[estimator])}; got {sorted(params)}"
        )
    x = _positive_array("sizes", sizes)
    beta, c = params["beta"], params["c"]
    if estimator == "M1":
        return beta * x**c
    if estimator == "M2":
        return params["e_inf"] + beta * x**c
    if estimator == "M3":
        return beta * (1.0 / x + params["gamma"]) ** (-c)
    if e0 is None:
        raise ValueError("e0 (the error of random guessing) is required by estimator 'M4'")
    return _predict_m4(x, beta, c, params["alpha"], params["e_inf"], float(e0))


# ---------------------------------------------------------------------------- validation


def _positive_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a non-empty float64 array of finite entries > 0 (naming ``name``)."""
    array = checks.real_array(name, value).astype(float)
    if (array <= 0).any():
        raise ValueError(f"{name} must be > 0; got {array.tolist()}")
    return array


def _check_curve(
    sizes: Any, errors: Any, e0: float | None
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(sizes (m,), errors (m,), e0) checked: 1-D, equal lengths, sizes > 0,
    0 < errors < e0 (when e0 is given)."""
    x = _positive_array("sizes", sizes)
    if x.ndim != 1:
        raise ValueError(f"sizes must be 1-D; got shape {x.shape}")
    e = checks.real_array("errors", errors).astype(float)
    if e.ndim != 1 or e.shape != x.shape:
        raise ValueError(f"errors must be 1-D with one entry per size ({x.size}); got {e.shape}")
    if e0 is not None:
        if isinstance(e0, bool) or not isinstance(e0, int | float | np.floating | np.integer):
            raise ValueError(f"e0 must be a real number; got {e0!r}")
        e0 = float(e0)
        if not math.isfinite(e0) or e0 <= 0:
            raise ValueError(f"e0 must be finite and > 0; got {e0}")
    if not np.isfinite(e).all() or (e <= 0).any() or (e0 is not None and (e >= e0).any()):
        interval = f"(0, e0={e0})" if e0 is not None else "(0, inf)"
        raise ValueError(f"errors must lie in {interval}; got {e.tolist()}")
    return x, e, e0


# ------------------------------------------------------------------------------- fitting


def _design(x: np.ndarray, e: np.ndarray, estimator: str, e0: float | None) -> np.ndarray:
    """Columns multiplying (log beta, c[, alpha]) in log f - [alpha log(e0 - e)]."""
    columns = [np.ones_like(x), np.log(x)]
    if estimator == "M4":
        columns.append(np.log(e0 - e))
    return np.stack(columns, axis=1)


def _residuals(p: np.ndarray, x: np.ndarray, e: np.ndarray, estimator: str, e0: float | None):
    """log g(e_i) - log f(x_i) for the parameter vector p (log beta first)."""
    log_beta, c = p[0], p[1]
    if estimator == "M1":
        return np.log(e) - log_beta - c * np.log(x)
    if estimator == "M2":
        return np.log(e - p[2]) - log_beta - c * np.log(x)
    if estimator == "M3":
        return np.log(e) - log_beta + c * np.log(1.0 / x + p[2])
    alpha, e_inf = p[2], p[3]
    return np.log(e - e_inf) - alpha * np.log(e0 - e) - log_beta - c * np.log(x)


def _bounds(estimator: str, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box bounds of the parameter vector: c <= 0, alpha >= 0, gamma >= 0,
    0 <= e_inf <= (1 - margin) min(errors)."""
    e_inf_max = (1.0 - E_INF_MARGIN) * float(e.min())
    low = {"M1": [-np.inf, -np.inf], "M2": [-np.inf, -np.inf, 0.0], "M3": [-np.inf, -np.inf, 0.0]}
    high = {"M1": [np.inf, 0.0], "M2": [np.inf, 0.0, e_inf_max], "M3": [np.inf, 0.0, np.inf]}
    low["M4"], high["M4"] = [-np.inf, -np.inf, 0.0, 0.0], [np.inf, 0.0, np.inf, e_inf_max]
    return np.asarray(low[estimator]), np.asarray(high[estimator])


def _starts(x: np.ndarray, e: np.ndarray, estimator: str, e0: float | None) -> list[np.ndarray]:
    """Starting vectors, best first: for each grid value of the nonlinear parameter (e_inf for
    M2/M4, gamma for M3), the box-constrained linear least squares in (log beta, c[, alpha])."""
    if estimator == "M3":
        grid = [g / x.max() for g in GAMMA_GRID]
    elif estimator in ("M2", "M4"):
        grid = [min(f, 1.0 - E_INF_MARGIN) * e.min() for f in E_INF_GRID]
    else:
        grid = [None]
    candidates = []
    for value in grid:
        if estimator == "M3":
            A = np.stack([np.ones_like(x), -np.log(1.0 / x + value)], axis=1)
            target = np.log(e)
        else:
            A = _design(x, e, estimator, e0)
            target = np.log(e - (value or 0.0))
        low = [-np.inf, -np.inf] + ([0.0] if estimator == "M4" else [])
        high = [np.inf, 0.0] + ([np.inf] if estimator == "M4" else [])
        solution = optimize.lsq_linear(A, target, bounds=(low, high)).x
        if estimator == "M4":
            p = np.array([solution[0], solution[1], solution[2], value])
        elif value is None:
            p = solution
        else:
            p = np.append(solution, value)
        cost = float(np.sum(_residuals(p, x, e, estimator, e0) ** 2))
        candidates.append((cost, p))
    candidates.sort(key=lambda item: item[0])
    return [p for _, p in candidates[:STARTS]]


def fit_scaling_law(
    sizes: Any, errors: Any, estimator: str = "M4", e0: float | None = None
) -> ScalingFit:
    """Fit scaling law ``estimator`` to the learning curve (sizes, errors).

    sizes: (m,) training-set sizes x > 0 (repeats allowed, e.g. seeds).  errors: (m,) the
    errors e_x in (0, e0).  estimator: one of ``ESTIMATORS``.  e0: the random-guessing error
    (required by M4; checked against the errors when given to the others).
    Needs at least as many distinct sizes as the estimator has parameters (M1 2, M2 and M3 3,
    M4 4), else ValueError. Returns a ``ScalingFit``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}; got {estimator!r}")
    if estimator == "M4" and e0 is None:
        raise ValueError("e0 (the error of random guessing) is required by estimator 'M4'")
    x, e, e0 = _check_curve(sizes, errors, e0)
    needed = len(PARAMETERS[estimator])
    if np.unique(x).size < needed:
        raise ValueError(
            f"sizes must hold at least {needed} distinct values for estimator {estimator!r} "
            f"(it has {needed} parameters); got {np.unique(x).size}"
        )
    low, high = _bounds(estimator, e)
    best = None
    for start in _starts(x, e, estimator, e0):
        result = optimize.least_squares(
            _residuals,
            np.clip(start, low, high),
            bounds=(low, high),
            args=(x, e, estimator, e0),
            method="trf",
            x_scale="jac",
            xtol=1e-12,
            ftol=1e-12,
            gtol=1e-12,
        )
        if best is None or result.cost < best.cost:
            best = result
    p = best.x
    params = {"beta": float(np.exp(p[0])), "c": float(p[1])}
    params |= {name: float(v) for name, v in zip(PARAMETERS[estimator][2:], p[2:], strict=True)}
    rms = float(np.sqrt(np.mean(_residuals(p, x, e, estimator, e0) ** 2)))
    return ScalingFit(estimator, params, e0, x, e, rms)


# ---------------------------------------------------------------------------- prediction


def _log_sigmoid(s: float) -> float:
    return -float(np.logaddexp(0.0, -s))


def _predict_m4(
    x: np.ndarray, beta: float, c: float, alpha: float, e_inf: float, e0: float
) -> np.ndarray:
    """e_x of M4 at every x (module docstring: one brentq root per x in s = logit(w / b))."""
    if alpha < ALPHA_TINY:
        return e_inf + beta * x**c
    b = e0 - e_inf
    log_b = math.log(b)
    out = np.empty_like(x)
    for index, xi in np.ndenumerate(x):
        log_f = math.log(beta) + c * math.log(xi)

        def h(s: float, log_f: float = log_f) -> float:
            return (1.0 - alpha) * log_b + _log_sigmoid(s) - alpha * _log_sigmoid(-s) - log_f

        low, high = -1.0, 1.0
        while h(low) > 0:
            low *= 2.0
        while h(high) < 0:
            high *= 2.0
        s = optimize.brentq(h, low, high, xtol=1e-14, rtol=1e-14, maxiter=500)
        out[index] = e_inf + b * math.exp(_log_sigmoid(s))
    return out


# ------------------------------------------------------------------------- extrapolation


def rms_log_error(predicted: Any, errors: Any) -> float:
    """sqrt(mean_i (log predicted_i - log errors_i)^2) of two (m,) arrays of values > 0."""
    p = _positive_array("predicted", predicted)
    e = _positive_array("errors", errors)
    if p.shape != e.shape:
        raise ValueError(f"errors must have the shape of predicted {p.shape}; got {e.shape}")
    return float(np.sqrt(np.mean((np.log(p) - np.log(e)) ** 2)))


def extrapolation_error(fit: ScalingFit, sizes: Any, errors: Any) -> float:
    """RMS log error of ``fit`` at held-out points (sizes (m,), errors (m,)), every size larger
    than the largest size it was fitted on (the paper's extrapolation protocol)."""
    if not isinstance(fit, ScalingFit):
        raise ValueError(f"fit must be a ScalingFit; got {type(fit).__name__}")
    x, e, _ = _check_curve(sizes, errors, fit.e0)
    if x.min() <= fit.sizes.max():
        raise ValueError(
            f"sizes must all exceed the largest fitted size {fit.sizes.max():g} "
            f"(extrapolation); got {x.tolist()}"
        )
    return rms_log_error(fit.predict(x), e)


def split_by_size(
    sizes: Any, errors: Any, held_out: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((fit sizes, fit errors), (held-out sizes, held-out errors)): the points at the
    ``held_out`` largest distinct sizes are held out, the rest (smaller sizes) are fitted."""
    x, e, _ = _check_curve(sizes, errors, None)
    distinct = np.unique(x)
    if isinstance(held_out, bool) or not isinstance(held_out, int | np.integer):
        raise ValueError(f"held_out must be an integer; got {held_out!r}")
    if not 1 <= held_out < distinct.size:
        raise ValueError(
            f"held_out must be in [1, {distinct.size - 1}] (distinct sizes - 1); got {held_out}"
        )
    test = x >= distinct[-held_out]
    return (x[~test], e[~test]), (x[test], e[test])
