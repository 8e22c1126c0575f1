"""The composite convex problem ``min_x loss(predict(x)) + penalty(x)`` (+ a simple constraint).

``predict`` is a LINEAR map (a JAX function) from the variable of fixed ``shape`` to
predictions. Pass it as ``jax.tree_util.Partial(f, data...)`` to make the data an argument of
the compiled solver rather than a constant baked into it: required for large data and for data
sharded over several devices (``jax.sharding``), recommended always.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from solvers import checks
from solvers._pytree import pytree_dataclass
from solvers.losses import Loss
from solvers.penalties import NonNegative, Penalty

Array = jax.Array


DTYPES = ("float32", "float64")


def default_dtype() -> Any:
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def solve_dtype(dtype: Any) -> np.dtype:
    """``dtype`` (None: ``default_dtype()``) as a numpy dtype, if it is float32 or float64."""
    try:
        resolved = jnp.dtype(default_dtype() if dtype is None else dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of {DTYPES}; got {dtype!r}") from None
    if resolved.name not in DTYPES:
        raise TypeError(
            f"dtype must be one of {DTYPES}; got {resolved.name} (half precision rounds at "
            "about 1e-3, too coarse to certify a duality gap)"
        )
    if resolved == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype float64 needs JAX's 64-bit mode: call jax.config.update('jax_enable_x64', "
            "True) first, or solve inside `with jax.enable_x64(True):`"
        )
    return resolved


def device_array(x: Any, dtype: Any) -> Array:
    """x as a JAX array of ``dtype`` by the fewest device ops: a JAX array is kept (or cast), a
    host array is converted by numpy and transferred. (``jnp.asarray`` of a numpy array is a
    compiled copy: a compilation per shape in each new process, 5-20 ms on 2 CPU cores.)"""
    if isinstance(x, jax.Array):
        return x if x.dtype == dtype else x.astype(dtype)
    return jax.device_put(np.asarray(x, dtype))


def _cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast the floating array leaves of ``tree`` to ``dtype`` (integer labels are kept)."""

    def cast(leaf: Any) -> Any:
        if (
            hasattr(leaf, "dtype")
            and jnp.issubdtype(leaf.dtype, jnp.floating)
            and leaf.dtype != dtype
        ):
            return jnp.asarray(leaf, dtype)
        return leaf

    return jax.tree_util.tree_map(cast, tree)


@pytree_dataclass(["predict", "loss", "penalty"])
class Problem:
    """``min_x  loss(predict(x)) + penalty(x)``, x of shape ``shape``, optionally x >= 0.

    predict: linear map x -> predictions whose shape the loss accepts (e.g. (N,) or (N, c)).
    shape: shape of the variable x.   loss: a ``solvers.Loss``.   penalty: a ``solvers.Penalty``.
    constraint: ``solvers.NonNegative()`` or None; folded into the penalty (its prox stays exact).
    dtype: float32 or float64, the dtype of the iterations (default float64 if jax x64 is
      enabled, else float32); the floating data in predict (a Partial's arrays), the loss and
      the penalty are cast to it. Half precision is refused: its rounding (about 1e-3) is far
      above any tolerance worth certifying. Whatever the dtype, the certificate a solve
      reports is computed in float64 (``solvers.certificate.certify``).
    check_linear: verify on random points that predict is linear and finite (cheap: 3 calls).
    """

    predict: Callable[[Array], Array]
    shape: tuple[int, ...]
    loss: Loss
    penalty: Penalty
    constraint: NonNegative | None = None
    dtype: Any = None
    check_linear: bool = True

    def __post_init__(self) -> None:
        if not callable(self.predict):
            raise TypeError(
                f"predict must be a callable x -> predictions; got {type(self.predict)}"
            )
        shape = (self.shape,) if isinstance(self.shape, int | np.integer) else self.shape
        if not isinstance(shape, tuple | list) or not shape:
            raise TypeError(f"shape must be a non-empty tuple of ints; got {self.shape!r}")
        object.__setattr__(
            self, "shape", tuple(checks.integer("shape entry", s, minimum=1) for s in shape)
        )
        if not isinstance(self.loss, Loss):
            raise TypeError(f"loss must be a solvers loss (e.g. SquaredLoss(y)); got {self.loss!r}")
        if not isinstance(self.penalty, Penalty):
            raise TypeError(
                f"penalty must be a solvers penalty (e.g. GroupL2(beta)); got {self.penalty!r}"
            )
        if self.constraint is not None:
            if not isinstance(self.constraint, NonNegative):
                raise TypeError(
                    f"constraint must be None or NonNegative(); got {self.constraint!r}"
                )
            object.__setattr__(self, "penalty", self.constraint.apply(self.penalty))
            object.__setattr__(self, "constraint", None)
        object.__setattr__(self, "dtype", solve_dtype(self.dtype))
        for name in ("predict", "loss", "penalty"):
            object.__setattr__(self, name, _cast_floating(getattr(self, name), self.dtype))
        self.penalty.check_shape(self.shape)
        try:
            out = jax.eval_shape(self.predict, jax.ShapeDtypeStruct(self.shape, self.dtype))
        except Exception as err:  # noqa: BLE001 - re-raised with the argument named
            raise ValueError(f"predict failed on an x of shape {self.shape}: {err}") from err
        self.loss.check_prediction_shape(tuple(out.shape))
        if self.check_linear:
            self._check_linear_and_finite()

    def _check_linear_and_finite(self) -> None:
        rng = np.random.default_rng(0)
        a = jnp.asarray(rng.standard_normal(self.shape), self.dtype)
        b = jnp.asarray(rng.standard_normal(self.shape), self.dtype)
        pa, pb, pab = (np.asarray(self.predict(v)) for v in (a, b, a - 2.5 * b))
        if not (np.all(np.isfinite(pa)) and np.all(np.isfinite(pb))):
            raise ValueError("predict(x) is not finite for finite x: the data contain NaN or inf")
        scale = max(np.max(np.abs(pa)), np.max(np.abs(pb)), 1e-30)
        eps = 1e3 * float(jnp.finfo(self.dtype).eps)
        zero = np.asarray(self.predict(jnp.zeros(self.shape, self.dtype)))
        if np.max(np.abs(zero)) > eps * scale:
            raise ValueError("predict must be linear in x (no offset): predict(0) != 0")
        if np.max(np.abs(pab - (pa - 2.5 * pb))) > eps * 4 * scale:
            raise ValueError(
                "predict must be linear in x: predict(a - 2.5 b) != predict(a) - 2.5 predict(b)"
            )

    @property
    def size(self) -> int:
        """Number of scalar variables."""
        return math.prod(self.shape)

    @property
    def prediction_shape(self) -> tuple[int, ...]:
        out = jax.eval_shape(self.predict, jax.ShapeDtypeStruct(self.shape, self.dtype))
        return tuple(out.shape)

    def zeros(self) -> Array:
        """Zeros of the variable's shape and dtype (``device_array``: no device op)."""
        return device_array(np.zeros(self.shape, self.dtype), self.dtype)

    def objective(self, x: Array) -> Array:
        """``loss(predict(x)) + penalty(x)``."""
        return self.loss.value(self.predict(x)) + self.penalty.value(x)

    def adjoint(self, u: Array) -> Array:
        """``A^T u`` for the linear map A = predict; u has the prediction shape, result ``shape``."""
        transpose = jax.linear_transpose(self.predict, jax.ShapeDtypeStruct(self.shape, self.dtype))
        return transpose(u)[0]

    def with_beta(self, beta: Any) -> Problem:
        """The same problem with penalty strength ``beta`` (same compiled solver), stored in
        the problem's dtype."""
        return self._replace(penalty=_cast_floating(self.penalty.with_beta(beta), self.dtype))

    def astype(self, dtype: Any) -> Problem:
        """The same problem with its floating data cast to ``dtype`` (float32 or float64)."""
        dtype = solve_dtype(dtype)
        cast = {name: _cast_floating(getattr(self, name), dtype) for name in _DATA_FIELDS}
        return self._replace(dtype=dtype, **cast)

    def _replace(self, **changes: Any) -> Problem:
        """A copy with ``changes``, without re-validation (for changes that keep it valid)."""
        new = object.__new__(Problem)
        for field in dataclasses.fields(self):
            object.__setattr__(new, field.name, changes.get(field.name, getattr(self, field.name)))
        return new


_DATA_FIELDS = ("predict", "loss", "penalty")
