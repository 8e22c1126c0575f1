"""P1, kind "scalar": one output, h heads of simplex attention (eq. 8-9 of the paper).

Nonconvex network (``baselines.heads`` kind "scalar"), X_i (n, d):

    f(X_i) = sum_j (w1_j^T X_i w2_j) a_j,   w1_j in the simplex, w2_j in R^d, a_j in R,
    objective  sum_i L(f(X_i), y_i) + beta/2 sum_j (|w2_j|^2 + a_j^2).

Convex program (Theorem 1; the printed 1/2 on the loss is dropped), Z (n, d):

    min_Z  sum_i L(<X_i, Z>, y_i) + beta sum_k |z_k|_2,

a group lasso with one group per TOKEN POSITION. Losses: squared, logistic (+-1 labels).
With enough heads (one per nonzero row z_k) the two problems have the same optimum; with one
head the equivalence can fail (``tests/test_convex_core.py`` shows an instance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from convextx.families._token_groups import UngatedFamily
from convextx.families.base import Data, Targets

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram


def predict_scalar(X: jax.Array, Z: jax.Array) -> jax.Array:
    """P1: (N, n, d), (n, d) -> (N, 1)."""
    return jnp.einsum("ikq,kq->i", X, Z)[:, None]


class Scalar(UngatedFamily):
    name = "scalar"
    program = "P1"
    losses = ("squared", "logistic")
    twin_kind = "scalar"
    token_map = staticmethod(predict_scalar)
    description = "one output: sum of simplex-attention heads (eq. 8)"

    def default_loss(self, y: np.ndarray) -> str:
        return "squared" if np.issubdtype(y.dtype, np.floating) else "logistic"

    def encode(self, y, loss, X_shape, num_classes_=None, weights=None) -> Targets:
        if loss == "cross_entropy":
            raise ValueError("kind 'scalar' has one output; use loss 'logistic' or kind 'vector'")
        targets = super().encode(y, loss, X_shape, num_classes_, weights)
        if not targets.scalar_output:
            raise ValueError(f"y must be (N,) for kind 'scalar'; got {y.shape}")
        return targets

    def shape(self, data: Data, outputs: int) -> tuple[int, ...]:
        return tuple(data.X.shape[1:])

    def twin_outputs(self, program: ConvexProgram) -> None:
        return None

    def assemble(self, program, heads, gate):
        return {**heads, "a": heads["a"][:, 0]}
