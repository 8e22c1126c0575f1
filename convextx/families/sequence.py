"""P4, kind "sequence": per-token outputs, h heads of full row-stochastic mixing (appendix A.7).

Nonconvex network (``baselines.heads`` kind "sequence"), X_i (n, d):

    f(X_i) = sum_j a_j W1_j X_i W2_j in R^{n x c},   W1_j (n, n) row-stochastic, W2_j (d, c),
    objective  sum_i L(f(X_i), Y_i) + beta/2 sum_j (|W2_j|_1^2 + a_j^2)   (|.|_1 entrywise).

Convex program, C (2, d, c, n, n) >= 0 (the signs +-, feature q, output l, an (n, n) block):

    Yhat_i[r, l] = sum_{q,k} (C+_{ql} - C-_{ql})[r, k] X_i[k, q],
    min_C  sum_i L(Yhat_i, Y_i) + beta sum_{+-,q,l} |C_{ql}|_{1,inf}.

The paper never defines |.|_{1,inf}. Derived from the atom set ``+-W1 (x) e_q e_l^T`` (W1
row-stochastic) with the entrywise l1 weight decay on W2, the gauge of the atoms' convex hull is

    |C|_{1,inf} := s  if C >= 0 and every row of C sums to s,   +inf otherwise

(``solvers.StochasticGauge``): the max-row-l1 norm of the paper restricted to nonnegative
matrices with EQUAL row sums. Without that restriction (the printed program) the value is only
a lower bound: a single row-stochastic W1 cannot produce unequal row sums. Recovery: each block
with row sum s > 0 gives one head W1 = C / s (row-stochastic), W2 = sqrt(s) e_q e_l^T,
a = +-sqrt(s), whose weight decay beta s equals the block's penalty.

Targets: (N, n, c) or (N, n) floats (squared loss), or (N, n) integer labels (cross-entropy,
whose rows are the N n tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import solvers
from baselines import heads as heads_module
from convextx.families.base import Data, Family, Targets, num_classes

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram


def predict_sequence(X: jax.Array, C: jax.Array) -> jax.Array:
    """P4: (N, n, d), (2, d, c, n, n) -> (N, n, c): Yhat_i[r, l] = sum_{q,k} C_ql[r, k] X_i[k, q]."""
    return jnp.einsum("qlrk,ikq->irl", C[0] - C[1], X)


class Sequence(Family):
    name = "sequence"
    program = "P4"
    losses = ("squared", "cross_entropy")
    description = "per-token outputs: sum of row-stochastic token mixers (eq. 30)"

    def encode(self, y, loss, X_shape, num_classes_=None, weights=None) -> Targets:
        if y.shape[:2] != tuple(X_shape[:2]) or y.ndim not in (2, 3):
            raise ValueError(
                f"y for kind 'sequence' must be (N, n, c) (or (N, n) labels/values); got {y.shape}"
            )
        if loss == "cross_entropy":
            per_token = None if weights is None else np.repeat(weights, X_shape[1])
            return Targets(y.reshape(-1), num_classes(y, num_classes_), False, per_token)
        return Targets(y, y.shape[2] if y.ndim == 3 else 1, y.ndim == 2, weights)

    def flattens_rows(self, loss: str) -> bool:
        return loss == "cross_entropy"

    def shape(self, data: Data, outputs: int) -> tuple[int, ...]:
        _, n, d = data.X.shape
        return (2, d, outputs, n, n)

    def raw_predict(self, data: Data) -> Partial:
        return Partial(predict_sequence, data.X)

    def penalty(self, beta: float) -> solvers.StochasticGauge:
        return solvers.StochasticGauge(beta)

    def dense_matrix(self, program: ConvexProgram) -> np.ndarray:
        """Rows (i, r, l), columns (sign, q, l', r', k): +-X_i[k, q] where l = l', r = r'."""
        X = np.asarray(program.X, dtype=float)
        N, n, d = X.shape
        c = program.outputs
        signs = np.array([1.0, -1.0])
        matrix = np.einsum("s,ikq,lm,rt->irlsqmtk", signs, X, np.eye(c), np.eye(n))
        return matrix.reshape(N * n * c, -1)

    def recover(self, program: ConvexProgram, x: np.ndarray, heads: int) -> dict[str, np.ndarray]:
        n, d, c = program.n, program.d, program.outputs
        s = x.sum(axis=-1).mean(axis=-1)  # (2, d, c): each block's row sum
        sign, q, l = np.nonzero(s > 0)
        m = sign.size
        W1 = np.full((heads, n, n), 1.0 / n)  # padding: uniform rows
        W2 = np.zeros((heads, d, c))
        a = np.zeros(heads)
        blocks = x[sign, q, l]  # (m, n, n)
        W1[:m] = blocks / blocks.sum(axis=-1, keepdims=True)
        root = np.sqrt(s[sign, q, l])
        W2[np.arange(m), q, l] = root
        a[:m] = np.where(sign == 0, 1.0, -1.0) * root
        return {"W1": W1, "W2": W2, "a": a}

    def token_norms(self, program: ConvexProgram, x: np.ndarray) -> np.ndarray:
        """Token k is used when some column k of some block is nonzero."""
        return np.abs(np.asarray(x)).sum(axis=(0, 1, 2, 3))

    def attention(self, heads: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(heads["W1"])

    def twin_forward(self, heads: Mapping[str, Any], X: jax.Array) -> jax.Array:
        return heads_module.forward("sequence", {k: jnp.asarray(v) for k, v in heads.items()}, X)

    def twin_penalty(self, heads: Mapping[str, Any], beta: float) -> jax.Array:
        return heads_module.penalty("sequence", {k: jnp.asarray(v) for k, v in heads.items()}, beta)

    def twin_heads(self, program: ConvexProgram) -> int:
        """One head per (sign, feature, output) block."""
        return 2 * program.d * program.outputs
