"""P2, kind "vector": c outputs, h heads of simplex attention (eq. 11-12 of the paper).

Nonconvex network (``baselines.heads`` kind "vector"), X_i (n, d):

    f(X_i) = sum_j (w1_j^T X_i w2_j) a_j in R^c,   a_j in R^c,
    objective  sum_i L(f(X_i), y_i) + beta/2 sum_j (|w2_j|^2 + |a_j|_1^2).

Convex program, Z (c, n, d):

    min_Z  sum_i L((<X_i, Z_l>)_{l=1..c}, y_i) + beta sum_{l,k} |z_{l,k}|_2,

one group per (output, token). Losses: squared ((N,) or (N, c) targets), logistic (one
output), softmax cross-entropy (integer labels). The atoms' gauge does not depend on the loss,
so recovery is exact for cross-entropy too (measured in ``tests/test_convex_core.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from convextx.families._token_groups import UngatedFamily
from convextx.families.base import Data


def predict_vector(X: jax.Array, Z: jax.Array) -> jax.Array:
    """P2: (N, n, d), (c, n, d) -> (N, c)."""
    return jnp.einsum("ikq,lkq->il", X, Z)


class Vector(UngatedFamily):
    name = "vector"
    program = "P2"
    twin_kind = "vector"
    token_map = staticmethod(predict_vector)
    description = "c outputs: sum of simplex-attention heads (eq. 11)"

    def shape(self, data: Data, outputs: int) -> tuple[int, ...]:
        return (outputs, *data.X.shape[1:])

    def assemble(self, program, heads, gate):
        return heads
