"""Fixed gates of the gated-ReLU attention FCN (MATH.md section 4, eq. 13).

A gate j is a pair (u1_j in R^n, u2_j in R^d); it is on for sample i when
``u1_j^T X_i u2_j >= 0``. The activation pattern of gate j is the column D[:, j] of the
(N, P) 0/1 matrix D. Gates with identical patterns on the training data give identical columns of
the convex program, so only the first of each pattern is kept (and the count is reported).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from baselines.heads import sample_gates


@dataclasses.dataclass(frozen=True)
class Gates:
    """u1: (P, n), u2: (P, d).  duplicates_removed: patterns dropped as repeats when fitted."""

    u1: np.ndarray
    u2: np.ndarray
    duplicates_removed: int = 0

    def __post_init__(self) -> None:
        u1, u2 = np.asarray(self.u1, float), np.asarray(self.u2, float)
        if u1.ndim != 2 or u2.ndim != 2 or u1.shape[0] != u2.shape[0] or u1.shape[0] == 0:
            raise ValueError(
                f"gates need u1 (P, n) and u2 (P, d) with the same P >= 1; got {u1.shape}, {u2.shape}"
            )
        if not (np.all(np.isfinite(u1)) and np.all(np.isfinite(u2))):
            raise ValueError("gates u1, u2 contain NaN or inf")
        object.__setattr__(self, "u1", u1)
        object.__setattr__(self, "u2", u2)

    @property
    def num(self) -> int:
        return self.u1.shape[0]

    def patterns(self, X) -> jax.Array:
        """D (N, P): D_ij = 1{u1_j^T X_i u2_j >= 0}, in X's float dtype."""
        X = jnp.asarray(X)
        if X.shape[1:] != (self.u1.shape[1], self.u2.shape[1]):
            raise ValueError(
                f"X tokens/features {X.shape[1:]} do not match the gates' ({self.u1.shape[1]}, {self.u2.shape[1]})"
            )
        scores = jnp.einsum("jk,ikq,jq->ij", self.u1.astype(X.dtype), X, self.u2.astype(X.dtype))
        return (scores >= 0).astype(X.dtype)

    def as_heads(self) -> dict[str, np.ndarray]:
        return {"u1": self.u1, "u2": self.u2}


def sample(X: np.ndarray, num: int, seed: int = 0, deduplicate: bool = True) -> Gates:
    """``num`` standard-normal gates; with ``deduplicate``, repeated patterns on X are dropped."""
    if not (isinstance(num, int | np.integer) and num >= 1):
        raise ValueError(f"number of gates must be an int >= 1; got {num!r}")
    _, n, d = X.shape
    drawn = sample_gates(jax.random.PRNGKey(seed), int(num), n, d)
    gates = Gates(np.asarray(drawn["u1"]), np.asarray(drawn["u2"]))
    return unique(gates, X) if deduplicate else gates


def unique(gates: Gates, X: np.ndarray) -> Gates:
    """The gates with distinct activation patterns on X (first occurrence kept, order kept)."""
    D = np.asarray(gates.patterns(X)).astype(bool)
    _, first = np.unique(D.T, axis=0, return_index=True)
    keep = np.sort(first)
    return Gates(gates.u1[keep], gates.u2[keep], gates.num - keep.size + gates.duplicates_removed)
