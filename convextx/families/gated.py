"""P3, kind "gated": simplex attention followed by a gated-ReLU FCN (eq. 13-14 of the paper).

Fixed gates (u1_j in R^n, u2_j in R^d), j = 1..P, sampled once: gate j is on for sample i
when ``u1_j^T X_i u2_j >= 0``, the (N, P) 0/1 matrix D. Nonconvex network (``baselines.heads``
kind "gated"):

    f(X_i) = sum_j D_ij (w1_j^T X_i w2_j) a_j in R^c,
    objective  sum_i L(f(X_i), y_i) + beta/2 sum_j (|w2_j|^2 + |a_j|_1^2)   (gates: fixed).

Convex program, Z (P, c, n, d):

    min_Z  sum_i L((sum_j D_ij <X_i, Z_jl>)_l, y_i) + beta sum_{j,l,k} |z_{jl,k}|_2.

With n = 1 token this is exactly the convex gated-ReLU two-layer network of Mishkin, Sahiner
and Pilanci (ICML 2022). Gates with identical patterns on the training data give identical
columns, so only the first of each pattern is kept (``Gates.duplicates_removed``). The
patterns D of the training data are computed once, in ``prepare``, and kept in the data.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from baselines.heads import sample_gates
from convextx.families._token_groups import TokenGroupFamily
from solvers import checks

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram

DEFAULT_NUM_GATES = 16


@dataclasses.dataclass(frozen=True)
class Gates:
    """u1: (P, n), u2: (P, d).  duplicates_removed: patterns dropped as repeats when fitted."""

    u1: np.ndarray
    u2: np.ndarray
    duplicates_removed: int = 0

    def __post_init__(self) -> None:
        u1 = checks.real_array("gates u1", self.u1, 2, " (P, n)")
        u2 = checks.real_array("gates u2", self.u2, 2, " (P, d)")
        if u1.shape[0] != u2.shape[0]:
            raise ValueError(
                f"gates need u1 (P, n) and u2 (P, d) with the same P; got {u1.shape}, {u2.shape}"
            )
        object.__setattr__(self, "u1", u1.astype(float))
        object.__setattr__(self, "u2", u2.astype(float))

    @property
    def num(self) -> int:
        return self.u1.shape[0]

    def patterns(self, X: Any) -> jax.Array:
        """D (N, P): D_ij = 1{u1_j^T X_i u2_j >= 0}, in X's float dtype."""
        X = jnp.asarray(X)
        if X.shape[1:] != (self.u1.shape[1], self.u2.shape[1]):
            raise ValueError(
                f"X tokens/features {X.shape[1:]} do not match the gates' "
                f"({self.u1.shape[1]}, {self.u2.shape[1]})"
            )
        return _patterns(jnp.asarray(self.u1, X.dtype), X, jnp.asarray(self.u2, X.dtype))

    def as_heads(self) -> dict[str, np.ndarray]:
        return {"u1": self.u1, "u2": self.u2}


@jax.jit
def _patterns(u1: jax.Array, X: jax.Array, u2: jax.Array) -> jax.Array:
    """(P, n), (N, n, d), (P, d) -> D (N, P) in X's dtype. One compiled call: a fresh process
    compiles each eager operation apart (about 45 ms each, too short for the disk cache)."""
    scores = jnp.einsum("jk,ikq,jq->ij", u1, X, u2)
    return (scores >= 0).astype(X.dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _draw(seed: jax.Array, num: int, n: int, d: int) -> dict[str, jax.Array]:
    """``sample_gates`` from ``PRNGKey(seed)`` (seed: a uint32 scalar, so that every seed of
    ``checks.seed`` passes without x64), compiled as one call (see ``_patterns``)."""
    return sample_gates(jax.random.PRNGKey(seed), num, n, d)


def sample(n: int, d: int, num: int, seed: int = 0) -> Gates:
    """``num`` standard-normal gates for tokens (n, d)."""
    num = checks.integer("number of gates", num, 1)
    drawn = _draw(np.uint32(checks.seed("seed", seed)), num, n, d)
    return Gates(np.asarray(drawn["u1"]), np.asarray(drawn["u2"]))


def first_distinct_columns(D: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the first column of each distinct 0/1 pattern of D (N, P).

    Each column is packed to bytes and the P byte strings are sorted as one void array:
    13 ms at N = P = 2000 where ``np.unique(D.T, axis=0)`` takes 156 ms, and 1 ms at
    N = 1000, P = 100 where it takes 55 ms in a fresh process."""
    packed = np.ascontiguousarray(np.packbits(D.astype(bool), axis=0).T)  # (P, ceil(N/8))
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first = np.unique(rows, return_index=True)
    return np.sort(first)


def deduplicate(gates: Gates, D: jax.Array) -> tuple[Gates, jax.Array]:
    """The gates with distinct patterns in D (N, P) (first occurrence kept, order kept), and
    their columns of D."""
    host = np.asarray(D)
    keep = first_distinct_columns(host)
    removed = gates.num - keep.size + gates.duplicates_removed
    kept = D if keep.size == gates.num else jnp.asarray(host[:, keep])  # no compiled gather
    return Gates(gates.u1[keep], gates.u2[keep], removed), kept


def resolve(gates: Any, n: int, d: int, seed: int) -> Gates:
    """None (``DEFAULT_NUM_GATES`` sampled), a number of gates to sample from ``seed``,
    ``Gates`` or {"u1", "u2"}."""
    if gates is None:
        gates = DEFAULT_NUM_GATES
    if isinstance(gates, Gates):
        return gates
    if isinstance(gates, Mapping):
        return Gates(gates["u1"], gates["u2"])
    if isinstance(gates, int | np.integer) and not isinstance(gates, bool):
        return sample(n, d, int(gates), seed)
    raise TypeError(f"gates must be None, a number of gates, or Gates(u1, u2); got {gates!r}")


class GatedData(NamedTuple):
    """X (N, n, d), its gate patterns D (N, P), and the gates."""

    X: jax.Array
    D: jax.Array
    gates: Gates


def predict_gated(X: jax.Array, D: jax.Array, Z: jax.Array) -> jax.Array:
    """P3: (N, n, d), gates D (N, P), (P, c, n, d) -> (N, c), as one (N, nd) x (nd, Pc) matmul."""
    N = X.shape[0]
    P, c = Z.shape[:2]
    scores = X.reshape(N, -1) @ Z.reshape(P * c, -1).T
    return jnp.einsum("ij,ijl->il", D, scores.reshape(N, P, c))


class Gated(TokenGroupFamily):
    name = "gated"
    program = "P3"
    twin_kind = "gated"
    options = {"gates": None}
    deterministic = False  # random gates unless given
    description = "simplex attention + gated-ReLU FCN with fixed gates (eq. 13)"

    def prepare(self, X, X_host, options, seed) -> GatedData:
        _, n, d = X_host.shape
        gates = resolve(options["gates"], n, d, seed)
        gates, D = deduplicate(gates, gates.patterns(X))
        return GatedData(X, D, gates)

    def data_for(self, program: ConvexProgram, X: jax.Array) -> GatedData:
        gates = program.data.gates
        return GatedData(X, gates.patterns(X), gates)

    def shape(self, data: GatedData, outputs: int) -> tuple[int, ...]:
        return (data.gates.num, outputs, *data.X.shape[1:])

    def raw_predict(self, data: GatedData) -> Partial:
        return Partial(predict_gated, data.X, data.D)

    def host_gates(self, program: ConvexProgram) -> np.ndarray:
        return np.asarray(program.data.D)

    def sliced(self, program, X, D, gates) -> Partial:
        dtype = program.problem.dtype
        return Partial(predict_gated, jnp.asarray(X, dtype), jnp.asarray(D[:, gates], dtype))

    def assemble(self, program, heads, gate):
        h, m = heads["w1"].shape[0], gate.size
        u1 = np.zeros((h, program.n))
        u2 = np.zeros((h, program.d))
        u1[:m], u2[:m] = program.data.gates.u1[gate], program.data.gates.u2[gate]
        return {**heads, "u1": u1, "u2": u2}

    def twin_gates(self, program: ConvexProgram) -> dict[str, np.ndarray]:
        """Gates of the twin with one head per group: gate j repeated for its c n groups."""
        _, c, n, _ = program.shape
        gates = program.data.gates
        return {"u1": np.repeat(gates.u1, c * n, axis=0), "u2": np.repeat(gates.u2, c * n, axis=0)}
