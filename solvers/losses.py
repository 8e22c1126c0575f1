"""Convex losses of a linear prediction, with the pieces a certified solver needs.

Every loss is a SUM over samples i of ``w_i * l(pred_i, y_i)`` (per-sample weights ``w``,
default 1). Each loss knows its value, gradient, smoothness constant and convex conjugate::

    L(p)      = sum_i w_i l(p_i, y_i)
    L*(u)     = sum_i w_i l*(u_i / w_i)        (conjugate in the prediction space)

The conjugate gives the dual objective ``-L*(u)`` of ``solvers.certificate`` (Fenchel dual
``max_u -L*(-u)`` subject to the dual-norm constraint of the penalty). The dual point is
``u = grad L(p)`` scaled by ``theta`` in (0, 1]; each conjugate's domain is star-shaped about
the scaled gradients, so ``L*(theta * grad)`` stays finite.

Losses are registered pytrees: ``y`` and ``weights`` are leaves, so one compiled solver serves
many data sets of the same shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from solvers import checks
from solvers._pytree import pytree_dataclass

if TYPE_CHECKING:  # cvxpy is imported by the cvxpy route only (it costs ~1 s at import)
    import cvxpy as cp

Array = jax.Array


def _check_finite(name: str, value: np.ndarray) -> None:
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contains NaN or inf; expected finite values")


def _as_weights(weights: Any, n: int) -> np.ndarray | None:
    return checks.sample_weights(weights, n, "weights")


def _per_sample(values: Array, weights: Array | None) -> Array:
    """Sum per-sample values (N, ...) over every axis, weighting axis 0 by ``weights``."""
    per = values.reshape(values.shape[0], -1).sum(axis=1)
    return per.sum() if weights is None else (weights * per).sum()


def _expand(weights: Array | None, like: Array) -> Array | float:
    if weights is None:
        return 1.0
    return weights.reshape(weights.shape + (1,) * (like.ndim - 1))


class Loss:
    """Base class: subclasses define ``pred_shape_ok``, ``value``, ``conjugate``, ``cvxpy``."""

    y: Any
    weights: Any
    smoothness: float  # Lipschitz constant of grad l for one unit-weight sample

    def value(self, pred: Array) -> Array:
        raise NotImplementedError

    def grad(self, pred: Array) -> Array:
        """Gradient of ``value`` with respect to the predictions, same shape as ``pred``."""
        return jax.grad(self.value)(pred)

    def conjugate(self, u: Array) -> Array:
        raise NotImplementedError

    def lipschitz(self) -> Array:
        """Lipschitz constant of grad L in the prediction space."""
        w_max = 1.0 if self.weights is None else jnp.max(self.weights)
        return self.smoothness * w_max

    def check_prediction_shape(self, shape: tuple[int, ...]) -> None:
        raise NotImplementedError

    def cvxpy(self, pred: cp.Expression, shape: tuple[int, ...]) -> cp.Expression:
        """The loss of the flat prediction expression ``pred`` (reshaped to ``shape``)."""
        raise NotImplementedError

    @property
    def num_samples(self) -> int:
        return int(np.shape(self.y)[0])

    @classmethod
    def trusted(cls, y: Any, weights: Any = None) -> Loss:
        """The loss of targets the caller has validated, without re-checking them."""
        loss = object.__new__(cls)
        object.__setattr__(loss, "y", y)
        object.__setattr__(loss, "weights", None if weights is None else np.asarray(weights))
        return loss


_pytree = pytree_dataclass(["y", "weights"])


@_pytree
class SquaredLoss(Loss):
    """``l(p, y) = 1/2 |p - y|^2``; y of shape (N,) or (N, c) or (N, n, c), floats."""

    y: Any
    weights: Any = None
    smoothness = 1.0

    def __post_init__(self) -> None:
        y = checks.as_array("y", self.y)
        if y.ndim == 0 or y.shape[0] == 0:
            raise ValueError(f"y must have a leading sample axis with N >= 1; got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"y must be numeric; got dtype {y.dtype}")
        _check_finite("y", y)
        object.__setattr__(self, "weights", _as_weights(self.weights, y.shape[0]))

    def check_prediction_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != tuple(np.shape(self.y)):
            raise ValueError(
                f"predict(x) has shape {tuple(shape)} but y has shape {np.shape(self.y)}; "
                "the squared loss needs them equal"
            )

    def value(self, pred: Array) -> Array:
        return 0.5 * _per_sample((pred - self.y) ** 2, self.weights)

    def grad(self, pred: Array) -> Array:
        return _expand(self.weights, pred) * (pred - self.y)

    def conjugate(self, u: Array) -> Array:
        w = _expand(self.weights, u)
        return _per_sample(0.5 * u**2 / w + u * self.y, None)

    def cvxpy(self, pred: cp.Expression, shape: tuple[int, ...]) -> cp.Expression:
        import cvxpy as cp

        residual = cp.square(pred - np.asarray(self.y, dtype=float).ravel())
        if self.weights is None:
            return 0.5 * cp.sum(residual)
        per_entry = np.repeat(np.asarray(self.weights), int(np.prod(shape[1:])))
        return 0.5 * cp.sum(cp.multiply(per_entry, residual))


@_pytree
class LogisticLoss(Loss):
    """``l(p, y) = log(1 + exp(-y p))`` for labels y in {-1, +1}, shape (N,)."""

    y: Any
    weights: Any = None
    smoothness = 0.25

    def __post_init__(self) -> None:
        y = checks.as_array("y", self.y)
        if y.ndim != 1 or y.shape[0] == 0:
            raise ValueError(
                f"y must have shape (N,) with N >= 1 for the logistic loss; got {y.shape}"
            )
        _check_finite("y", y.astype(float))
        if not np.all(np.isin(y, (-1, 1))):
            bad = np.unique(y[~np.isin(y, (-1, 1))])[:5]
            raise ValueError(
                f"logistic labels y must be -1 or +1; found {bad.tolist()} (for 0/1 labels pass 2*y-1)"
            )
        object.__setattr__(self, "y", y.astype(float))
        object.__setattr__(self, "weights", _as_weights(self.weights, y.shape[0]))

    def check_prediction_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != (self.num_samples,):
            raise ValueError(
                f"predict(x) has shape {tuple(shape)}; the logistic loss needs ({self.num_samples},)"
            )

    def value(self, pred: Array) -> Array:
        return _per_sample(jnp.logaddexp(0.0, -self.y * pred), self.weights)

    def grad(self, pred: Array) -> Array:
        return -_expand(self.weights, pred) * self.y * jax.nn.sigmoid(-self.y * pred)

    def conjugate(self, u: Array) -> Array:
        w = _expand(self.weights, u)
        s = jnp.clip(-self.y * u / w, 0.0, 1.0)  # in [0, 1] on the domain
        return _per_sample(w * (xlogy(s, s) + xlogy(1.0 - s, 1.0 - s)), None)

    def cvxpy(self, pred: cp.Expression, shape: tuple[int, ...]) -> cp.Expression:
        import cvxpy as cp

        terms = cp.logistic(cp.multiply(-np.asarray(self.y), pred))
        w = np.ones(self.num_samples) if self.weights is None else np.asarray(self.weights)
        return cp.sum(cp.multiply(w, terms))


@_pytree
class SoftmaxCrossEntropy(Loss):
    """``l(p, y) = logsumexp(p) - p[y]`` for integer labels y in [0, c), shape (N,); p is (N, c)."""

    y: Any
    weights: Any = None
    smoothness = 0.5  # the softmax Hessian diag(s) - s s^T has eigenvalues <= 1/2

    def __post_init__(self) -> None:
        y = checks.as_array("y", self.y)
        if y.ndim != 1 or y.shape[0] == 0:
            raise ValueError(f"labels y must have shape (N,) with N >= 1; got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"labels y must be integers in [0, num_classes); got dtype {y.dtype}")
        if np.any(y < 0):
            raise ValueError(f"labels y must be >= 0; found {int(y.min())}")
        object.__setattr__(self, "weights", _as_weights(self.weights, y.shape[0]))

    def check_prediction_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or shape[0] != self.num_samples:
            raise ValueError(
                f"predict(x) has shape {tuple(shape)}; cross-entropy needs ({self.num_samples}, c)"
            )
        top = int(np.max(self.y))
        if top >= shape[1]:
            raise ValueError(
                f"label {top} is out of range for {shape[1]} classes (need < {shape[1]})"
            )

    def _onehot(self, pred: Array) -> Array:
        return jax.nn.one_hot(self.y, pred.shape[1], dtype=pred.dtype)

    def value(self, pred: Array) -> Array:
        picked = jnp.take_along_axis(pred, jnp.asarray(self.y)[:, None], axis=1)[:, 0]
        return _per_sample(jax.nn.logsumexp(pred, axis=1) - picked, self.weights)

    def grad(self, pred: Array) -> Array:
        return _expand(self.weights, pred) * (jax.nn.softmax(pred, axis=1) - self._onehot(pred))

    def conjugate(self, u: Array) -> Array:
        w = _expand(self.weights, u)
        q = jnp.clip(u / w + self._onehot(u), 0.0, 1.0)  # a probability vector on the domain
        return _per_sample(w * xlogy(q, q), None)

    def cvxpy(self, pred: cp.Expression, shape: tuple[int, ...]) -> cp.Expression:
        import cvxpy as cp

        pred = cp.reshape(pred, shape, order="C")
        onehot = np.eye(shape[1])[np.asarray(self.y)]
        per = cp.log_sum_exp(pred, axis=1) - cp.sum(cp.multiply(onehot, pred), axis=1)
        w = np.ones(self.num_samples) if self.weights is None else np.asarray(self.weights)
        return cp.sum(cp.multiply(w, per))


LOSSES: dict[str, type[Loss]] = {
    "squared": SquaredLoss,
    "logistic": LogisticLoss,
    "cross_entropy": SoftmaxCrossEntropy,
}


def make_loss(name: str, y: Any, weights: Any = None, check: bool = True) -> Loss:
    """The loss called ``name`` ("squared" | "logistic" | "cross_entropy") for targets ``y``.

    check: validate y and weights (the constructor's checks). False is for callers that built
    them valid (scikit-learn's ``check_input=False``): y must then already have the loss's
    dtype (floats; integer labels for cross-entropy) and weights be (N,) floats > 0 or None.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    if check:
        return LOSSES[name](y, weights)
    return LOSSES[name].trusted(y, weights)
