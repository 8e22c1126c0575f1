"""Gauge penalties ``beta * Omega(x)`` with exact proximal operators and dual norms.

Each penalty is ``beta`` times a gauge ``Omega`` (a norm, possibly restricted to a convex cone)
and provides:

- ``value(x)``: ``beta * Omega(x)`` (``inf`` outside the cone is never needed: iterates stay in it);
- ``prox(v, step)``: ``argmin_x 1/2 |x - v|^2 + step * beta * Omega(x)`` (includes the cone);
- ``dual_norm(w)``: ``Omega°(w) = sup {<w, x> : Omega(x) <= 1}``, the support function used by
  the duality-gap certificate (``Omega°(-A^T u) <= beta`` is dual feasibility);
- ``cvxpy(x)``: the same penalty as a cvxpy expression plus constraints.

Penalties are pytrees with ``beta`` as a leaf, so solving along a path of betas reuses one
compiled solver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from solvers import checks
from solvers._pytree import pytree_dataclass

if TYPE_CHECKING:  # cvxpy is imported by the cvxpy route only (it costs ~1 s at import)
    import cvxpy as cp

Array = jax.Array


def _check_beta(beta: Any) -> np.ndarray:
    """beta as a 0-d float array (an array leaf: solves along a path of betas share one
    compilation); a real number > 0 (Python, numpy, or a 0-d real array)."""
    if getattr(beta, "shape", None) == () and np.issubdtype(np.asarray(beta).dtype, np.number):
        beta = np.asarray(beta).item()
    return np.asarray(checks.positive("beta", beta), dtype=float)


class Penalty:
    """Base class of ``beta * Omega``; see the module docstring for the contract."""

    beta: Any

    def value(self, x: Array) -> Array:
        raise NotImplementedError

    def prox(self, v: Array, step: Array) -> Array:
        raise NotImplementedError

    def dual_norm(self, w: Array) -> Array:
        raise NotImplementedError

    def group_norms(self, x: Array) -> Array:
        """Per-group size of x (the groups a solution is sparse over), flattened."""
        raise NotImplementedError

    def group_indices(self, shape: tuple[int, ...]) -> np.ndarray:
        """(G, S) integer array: the flat indices of x in each of the G groups."""
        raise NotImplementedError

    def check_shape(self, shape: tuple[int, ...]) -> None:
        raise NotImplementedError

    def cvxpy(self, x: cp.Variable, shape: tuple[int, ...]) -> tuple[cp.Expression, list]:
        raise NotImplementedError

    def with_beta(self, beta: Any) -> Penalty:
        raise NotImplementedError

    def project(self, v: Array) -> Array:
        """The Euclidean projection of v onto the penalty's domain (``prox`` with step 0):
        e.g. v >= 0 for a nonnegative norm, the equal-row-sum cone of ``StochasticGauge``."""
        return self.prox(v, jnp.zeros((), v.dtype))

    def scaled(self, factor: Any) -> Penalty:
        """The same penalty with strength ``beta * factor``, for a traced ``factor`` too (no
        validation: every penalty's only array leaf is beta)."""
        treedef = jax.tree_util.tree_structure(self)
        return jax.tree_util.tree_unflatten(treedef, [self.beta * factor])

    def nonnegative(self) -> Penalty:
        raise TypeError(f"{type(self).__name__} cannot be combined with a NonNegative constraint")


def _normalize_axes(axis: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    if not axes or not all(isinstance(a, int | np.integer) for a in axes):
        raise TypeError(f"axis must be an int, a non-empty tuple of ints, or None; got {axis!r}")
    return tuple(int(a) for a in axes)


@pytree_dataclass(["beta"])
class GroupL2(Penalty):
    """``beta * sum_g |x_g|_2``: the l2 norm over ``axis``, summed over all other indices.

    For Z of shape (n, d) and ``axis=-1`` the groups are the n rows z_k (one per token).
    ``axis=None`` makes every entry its own group (the l1 norm). ``nonneg=True`` adds the
    constraint x >= 0; the prox of the sum is still exact: shrink(max(v, 0)).
    """

    beta: Any
    axis: tuple[int, ...] | None = (-1,)
    nonneg: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_beta(self.beta))
        object.__setattr__(self, "axis", _normalize_axes(self.axis))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        if self.axis is None:
            return
        for a in self.axis:
            if not -len(shape) <= a < len(shape):
                raise ValueError(f"penalty axis {a} is out of range for x of shape {shape}")
        if len({a % len(shape) for a in self.axis}) != len(self.axis):
            raise ValueError(f"penalty axis {self.axis} repeats an axis")

    def _norms(self, x: Array, keepdims: bool) -> Array:
        if self.axis is None:
            return jnp.abs(x)
        return jnp.sqrt(jnp.sum(x * x, axis=self.axis, keepdims=keepdims))

    def value(self, x: Array) -> Array:
        return self.beta * jnp.sum(self._norms(x, keepdims=False))

    def prox(self, v: Array, step: Array) -> Array:
        if self.nonneg:
            v = jnp.maximum(v, 0.0)
        norms = self._norms(v, keepdims=True)
        threshold = step * self.beta
        scale = jnp.maximum(0.0, 1.0 - threshold / jnp.where(norms > 0, norms, 1.0))
        return v * jnp.where(norms > threshold, scale, 0.0)

    def dual_norm(self, w: Array) -> Array:
        if self.nonneg:
            w = jnp.maximum(w, 0.0)
        return jnp.max(self._norms(w, keepdims=False))

    def group_norms(self, x: Array) -> Array:
        return self._norms(x, keepdims=False).ravel()

    def group_indices(self, shape: tuple[int, ...]) -> np.ndarray:
        flat = np.arange(math.prod(shape)).reshape(shape)
        if self.axis is None:
            return flat.reshape(-1, 1)
        axes = [a % len(shape) for a in self.axis]
        moved = np.moveaxis(flat, axes, list(range(len(shape) - len(axes), len(shape))))
        return moved.reshape(-1, math.prod(shape[a] for a in axes))

    def cvxpy(self, x: cp.Variable, shape: tuple[int, ...]) -> tuple[cp.Expression, list]:
        import cvxpy as cp

        idx = self.group_indices(shape)
        groups = cp.reshape(x[idx.ravel()], idx.shape, order="C")
        norms = cp.abs(groups[:, 0]) if idx.shape[1] == 1 else cp.norm(groups, 2, axis=1)
        constraints = [x >= 0] if self.nonneg else []
        return float(self.beta) * cp.sum(norms), constraints

    def with_beta(self, beta: Any) -> GroupL2:
        return GroupL2(beta, self.axis, self.nonneg)

    def nonnegative(self) -> GroupL2:
        return GroupL2(self.beta, self.axis, nonneg=True)


def L1(beta: Any, nonneg: bool = False) -> GroupL2:
    """``beta * |x|_1``: the group norm with every entry its own group."""
    return GroupL2(beta, axis=None, nonneg=nonneg)


@pytree_dataclass(["beta"])
class StochasticGauge(Penalty):
    """``beta * sum_b s_b``: the gauge of the row-stochastic matrices, per block.

    x has shape (..., R, K): each trailing (R, K) matrix C_b is a block. The gauge of the set
    of row-stochastic matrices (C >= 0, every row summing to 1) is

        Omega(C) = s   if C >= 0 and every row of C sums to the same s >= 0,  +inf otherwise,

    i.e. the |.|_{1,inf} norm (max row l1 norm) restricted to nonnegative matrices with equal
    row sums. Its dual norm is ``sup_C <W, C> = max(0, sum_r max_k W[r, k])`` per block.

    The prox solves ``min_{s>=0} sum_r 1/2 dist(v_r, s * simplex)^2 + step * beta * s`` for each
    block: ``d/ds`` of the distance term is ``-tau_r(s)`` (the simplex-projection threshold of
    row r), so s solves ``f(s) = sum_r tau_r(s) = step * beta``. f is convex, decreasing and
    piecewise linear, so Newton's method from s = 0 increases monotonically to the root and stops
    after finitely many steps (once the row supports no longer change); then every row is
    projected onto ``s * simplex`` (Duchi et al., 2008).
    """

    beta: Any
    max_newton_steps: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_beta(self.beta))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 2:
            raise ValueError(f"StochasticGauge needs x with >= 2 axes (..., R, K); got {shape}")

    def _row_sums(self, x: Array) -> Array:
        return jnp.sum(x, axis=-1)

    def value(self, x: Array) -> Array:
        # On the domain every row sums to s; the mean is s exactly and smooth for iterates.
        return self.beta * jnp.sum(jnp.mean(self._row_sums(x), axis=-1))

    def prox(self, v: Array, step: Array) -> Array:
        threshold = step * self.beta
        sorted_desc = -jnp.sort(-v, axis=-1)
        cumsum = jnp.cumsum(sorted_desc, axis=-1)
        ks = jnp.arange(1, v.shape[-1] + 1, dtype=v.dtype)

        def support(s: Array) -> tuple[Array, Array]:
            """Per row: support size rho (>= 1) and the sum of its rho largest entries."""
            inside = sorted_desc > (cumsum - s[..., None, None]) / ks
            rho = jnp.maximum(jnp.sum(inside, axis=-1), 1)  # s = 0: rho = 1, tau = max(v_r)
            top = jnp.take_along_axis(cumsum, (rho - 1)[..., None], axis=-1)[..., 0]
            return rho.astype(v.dtype), top

        def newton(carry):
            s, _, count = carry
            rho, top = support(s)
            s_new = (jnp.sum(top / rho, axis=-1) - threshold) / jnp.sum(1.0 / rho, axis=-1)
            s_new = jnp.maximum(s_new, s)  # monotone from the left; guards rounding
            return s_new, jnp.any(s_new != s), count + 1

        s0 = jnp.zeros(v.shape[:-2], v.dtype)
        s, _, _ = jax.lax.while_loop(
            lambda c: c[1] & (c[2] < self.max_newton_steps), newton, (s0, jnp.bool_(True), 0)
        )
        rho, top = support(s)
        tau = (top - s[..., None]) / rho
        projected = jnp.maximum(v - tau[..., None], 0.0)
        return jnp.where(s[..., None, None] > 0, projected, 0.0)

    def dual_norm(self, w: Array) -> Array:
        return jnp.max(jnp.maximum(0.0, jnp.sum(jnp.max(w, axis=-1), axis=-1)))

    def group_norms(self, x: Array) -> Array:
        return jnp.mean(self._row_sums(x), axis=-1).ravel()

    def group_indices(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.arange(math.prod(shape)).reshape(-1, shape[-2] * shape[-1])

    def cvxpy(self, x: cp.Variable, shape: tuple[int, ...]) -> tuple[cp.Expression, list]:
        import cvxpy as cp
        import scipy.sparse as sp

        blocks = math.prod(shape[:-2])
        rows, cols = shape[-2], shape[-1]
        s = cp.Variable(blocks, nonneg=True)
        matrix = cp.reshape(x, (blocks * rows, cols), order="C")
        expand = sp.kron(sp.eye(blocks), np.ones((rows, 1)), format="csr")
        constraints = [x >= 0, cp.sum(matrix, axis=1) == expand @ s]
        return float(self.beta) * cp.sum(s), constraints

    def with_beta(self, beta: Any) -> StochasticGauge:
        return StochasticGauge(beta, self.max_newton_steps)


# NuclearNorm.prox in float64 uses the Gram eigendecomposition of each block's narrow side while
# the largest singular value is at most GRAM_RATIO times the threshold. With the eigenvectors W
# of V^T V, the singular values are the column norms of V W (exact to about eps |V|_2, as an
# SVD's: no squaring), and the prox is V W diag(max(1 - t / s, 0)) W^T; its error relative to
# |V|_2 is about eps s_max / t <= eps GRAM_RATIO (2e-10 here). Beyond it, a full SVD. On 2 CPU
# cores the eigendecomposition is 4-13x faster than an SVD for blocks of (495, 264) to (1771, 616).
GRAM_RATIO = 1e6


def _svd_shrink(v: Array, threshold: Array) -> Array:
    """Singular-value soft-thresholding of v (..., R, K) by a thin SVD."""
    u, s, wt = jnp.linalg.svd(v, full_matrices=False)
    return jnp.matmul(u * jnp.maximum(s - threshold, 0.0)[..., None, :], wt)


def _gram_shrink(v: Array, threshold: Array) -> Array:
    """Singular-value soft-thresholding of v (..., R, K) through the eigenvectors of the Gram
    matrix of its narrow side (see GRAM_RATIO), or by SVD where that is not accurate."""
    tall = v.shape[-2] >= v.shape[-1]
    w = v if tall else jnp.swapaxes(v, -1, -2)
    _, vectors = jnp.linalg.eigh(jnp.swapaxes(w, -1, -2) @ w)
    projected = w @ vectors  # (..., R, K): columns u_k s_k
    s = jnp.linalg.norm(projected, axis=-2)

    def by_gram(_):
        keep = s > threshold
        factor = jnp.where(keep, 1.0 - threshold / jnp.where(keep, s, 1.0), 0.0)
        x = (projected * factor[..., None, :]) @ jnp.swapaxes(vectors, -1, -2)
        return x if tall else jnp.swapaxes(x, -1, -2)

    accurate = jnp.max(s) <= GRAM_RATIO * threshold
    return jax.lax.cond(accurate, by_gram, lambda _: _svd_shrink(v, threshold), None)


@pytree_dataclass(["beta"])
class NuclearNorm(Penalty):
    """``beta * sum_b |M_b|_*``: the nuclear norm (sum of singular values) of each matrix block.

    x has shape (..., R, K): each trailing (R, K) matrix M_b is a block (one block for a
    2-d x), and the blocks are the groups of ``group_norms`` / ``group_indices`` (a solution is
    low-rank within a block, not sparse over entries). The dual norm of the sum is the largest
    spectral norm ``max_b |W_b|_2`` (the largest singular value). The prox is singular-value
    soft-thresholding: with ``V_b = U diag(s) W^T`` (thin SVD, batched over the blocks),
    ``prox(V, step) = U diag(max(s - step * beta, 0)) W^T``. The domain is every matrix, so
    ``project`` is the identity. In float64, prox and dual norm go through the eigenvectors of
    the Gram matrix of each block's narrow side (``GRAM_RATIO``), several times cheaper than an
    SVD on CPUs; ``value`` always takes exact singular values.
    """

    beta: Any

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_beta(self.beta))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 2:
            raise ValueError(f"NuclearNorm needs x with >= 2 axes (..., R, K); got {shape}")

    def _singular_values(self, x: Array) -> Array:
        return jnp.linalg.svd(x, compute_uv=False)

    def value(self, x: Array) -> Array:
        return self.beta * jnp.sum(self._singular_values(x))

    def prox(self, v: Array, step: Array) -> Array:
        shrink = _gram_shrink if v.dtype == jnp.float64 else _svd_shrink
        return shrink(v, step * self.beta)

    def dual_norm(self, w: Array) -> Array:
        if w.dtype != jnp.float64:
            return jnp.max(self._singular_values(w))
        narrow = w if w.shape[-2] >= w.shape[-1] else jnp.swapaxes(w, -1, -2)
        gram = jnp.swapaxes(narrow, -1, -2) @ narrow
        # The largest eigenvalue of a Gram matrix is accurate to rounding (relative).
        return jnp.sqrt(jnp.maximum(jnp.max(jnp.linalg.eigvalsh(gram)), 0.0))

    def project(self, v: Array) -> Array:
        return v

    def group_norms(self, x: Array) -> Array:
        return jnp.sum(self._singular_values(x), axis=-1).ravel()

    def group_indices(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.arange(math.prod(shape)).reshape(-1, shape[-2] * shape[-1])

    def cvxpy(self, x: cp.Variable, shape: tuple[int, ...]) -> tuple[cp.Expression, list]:
        import cvxpy as cp

        rows, cols = shape[-2], shape[-1]
        idx = self.group_indices(shape)
        norms = [cp.normNuc(cp.reshape(x[block], (rows, cols), order="C")) for block in idx]
        return float(self.beta) * cp.sum(cp.hstack(norms)), []

    def with_beta(self, beta: Any) -> NuclearNorm:
        return NuclearNorm(beta)


class NonNegative:
    """The constraint x >= 0, combined with a norm penalty (GroupL2/L1) whose prox stays exact."""

    def apply(self, penalty: Penalty) -> Penalty:
        return penalty.nonnegative()

    def __repr__(self) -> str:
        return "NonNegative()"
