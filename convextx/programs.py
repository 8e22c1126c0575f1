"""The convex programs P1-P4 of "Convexifying Transformers" as ``solvers.Problem`` s.

Every program is ``min_x sum_i L(A(x)_i, y_i) + beta * Omega(x)`` (MATH.md sections 2-5):

=========  ==============================  ======================  ===============================
kind       variable x                      prediction A(x)_i       penalty Omega
=========  ==============================  ======================  ===============================
scalar     Z (n, d)                 (P1)   <X_i, Z>                sum_k |z_k|_2     (group lasso
vector     Z (c, n, d)              (P2)   (<X_i, Z_l>)_l          sum_{l,k} |z_lk|_2  over tokens)
gated      Z (P, c, n, d)           (P3)   sum_j D_ij <X_i, Z_jl>  sum_{j,l,k} |z_jlk|_2
sequence   C (2, d, c, n, n), C>=0  (P4)   sum_q (C+_ql - C-_ql)   sum_{+-,q,l} gauge(C_ql)
                                           X_i[:, q]  (n, c)
=========  ==============================  ======================  ===============================

P4's gauge is derived from the atom set of eq. 30 with the entrywise l1 weight decay on W2:
the atoms are ``+-W1 (x) e_q e_l^T`` with W1 row-stochastic, whose convex hull's gauge is

    |C|_{1,inf} := s  if C >= 0 and every row of C sums to s,   +inf otherwise

(``solvers.StochasticGauge``): the max-row-l1 norm of the paper, restricted to nonnegative
matrices with EQUAL row sums. Without the equal-row-sum restriction (the printed program) the
value is only a lower bound: a single row-stochastic W1 cannot produce unequal row sums.

The predict maps are module-level functions of (data, x) wrapped in ``jax.tree_util.Partial``, so
the data are arguments of the compiled solver (and may be sharded over devices).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import solvers
from convextx import gates as gates_module
from convextx._validation import check_beta, check_choice, check_samples, check_X
from convextx.gates import Gates

KINDS = ("scalar", "vector", "gated", "sequence")
LOSSES = ("squared", "logistic", "cross_entropy")
DEFAULT_NUM_GATES = 16

Array = jax.Array


def predict_scalar(X: Array, Z: Array) -> Array:
    """P1: (N, n, d), (n, d) -> (N,)."""
    return jnp.einsum("ikq,kq->i", X, Z)


def predict_vector(X: Array, Z: Array) -> Array:
    """P2: (N, n, d), (c, n, d) -> (N, c)."""
    return jnp.einsum("ikq,lkq->il", X, Z)


def predict_gated(X: Array, D: Array, Z: Array) -> Array:
    """P3: (N, n, d), gates D (N, P), (P, c, n, d) -> (N, c), as one (N, nd) x (nd, Pc) matmul."""
    N = X.shape[0]
    P, c = Z.shape[:2]
    scores = X.reshape(N, -1) @ Z.reshape(P * c, -1).T
    return jnp.einsum("ij,ijl->il", D, scores.reshape(N, P, c))


def predict_sequence(X: Array, C: Array) -> Array:
    """P4: (N, n, d), (2, d, c, n, n) -> (N, n, c): Yhat_i[r, l] = sum_{q,k} C_ql[r, k] X_i[k, q]."""
    return jnp.einsum("qlrk,ikq->irl", C[0] - C[1], X)


def _first_output(predict: Partial, x: Array) -> Array:
    return predict(x)[..., 0]


def _flatten_tokens(predict: Partial, x: Array) -> Array:
    out = predict(x)
    return out.reshape(-1, out.shape[-1])


@dataclasses.dataclass(frozen=True)
class ConvexProgram:
    """A convex attention program ready to solve.

    kind, loss, beta: as given.  problem: the ``solvers.Problem``.  n, d: tokens, features.
    outputs: c (number of output columns of the convex model; 1 for a scalar output).
    gates: the fixed gates (kind "gated"), deduplicated on the training data.
    scalar_output: predictions are (N,) (squared/logistic on (N,) targets).
    X: the training inputs (N, n, d) in the solve's dtype (what ``problem.predict`` holds).
    """

    kind: str
    loss: str
    beta: float
    problem: solvers.Problem
    n: int
    d: int
    outputs: int
    gates: Gates | None = None
    scalar_output: bool = False
    X: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.problem.shape

    def solve(
        self, method: str = "fista", working_set: bool = False, **options: Any
    ) -> solvers.SolveResult:
        """``solvers.solve`` on this program (tol, max_iter, x0, verbose, ...).

        working_set: FISTA on growing working sets of groups (``convextx.working_set``; kinds
          scalar, vector, gated): cheaper iterations when the solution is sparse, certified on
          the full program all the same.
        """
        if not working_set:
            return solvers.solve(self.problem, method=method, **options)
        if method != "fista":
            raise ValueError(f"working_set=True needs method 'fista'; got {method!r}")
        from convextx.working_set import solve_working_set

        return solve_working_set(self, **options)

    def with_beta(self, beta: float) -> ConvexProgram:
        beta = check_beta(beta)
        return dataclasses.replace(self, beta=beta, problem=self.problem.with_beta(beta))

    def predict(self, x: Any, X: Any) -> Array:
        """The convex model's predictions on new inputs X (N', n, d) for the solution x."""
        X = jnp.asarray(check_X(X), self.problem.dtype)
        if X.shape[1:] != (self.n, self.d):
            raise ValueError(
                f"X must have (n, d) = {(self.n, self.d)} per sample; got {X.shape[1:]}"
            )
        return _predict_map(self, X)(jnp.asarray(x, self.problem.dtype))

    def token_norms(self, x: Any) -> np.ndarray:
        """(n,) total weight each token position carries in the solution (0 = inactive token)."""
        x = np.asarray(x)
        if self.kind == "sequence":  # token k is used when some column k of some C is nonzero
            return np.abs(x).sum(axis=(0, 1, 2, 3))
        return np.sqrt((x**2).sum(axis=-1)).reshape(-1, self.n).sum(axis=0)

    def active_tokens(self, x: Any, rtol: float = 0.0) -> np.ndarray:
        """Sorted token positions with nonzero weight (above ``rtol`` times the largest)."""
        norms = self.token_norms(x)
        return np.flatnonzero(norms > rtol * norms.max()) if norms.max() > 0 else np.array([], int)


def _predict_map(program: ConvexProgram, X: Array) -> Partial:
    kind = program.kind
    if kind == "scalar":
        return Partial(predict_scalar, X)
    data = (X, program.gates.patterns(X)) if kind == "gated" else (X,)
    base = {"vector": predict_vector, "gated": predict_gated, "sequence": predict_sequence}[kind]
    if program.scalar_output:
        return Partial(_first_output, Partial(base, *data))
    if kind == "sequence" and program.loss == "cross_entropy":
        return Partial(_flatten_tokens, Partial(base, *data))
    return Partial(base, *data)


def outputs_and_targets(kind, loss, X, y, num_classes):
    """Number of outputs c, whether predictions are (N,) / per token, and the loss targets."""
    y = np.asarray(y)
    if kind == "sequence":
        if y.shape[:2] != X.shape[:2] or y.ndim not in (2, 3):
            raise ValueError(
                f"y for kind 'sequence' must be (N, n, c) (or (N, n) labels/values); got {y.shape}"
            )
        if loss == "logistic":
            raise ValueError(
                "loss 'logistic' is not available for kind 'sequence'; use 'cross_entropy'"
            )
        if loss == "cross_entropy":
            c = _num_classes(y, num_classes)
            return c, False, y.reshape(-1)
        return (y.shape[2] if y.ndim == 3 else 1), y.ndim == 2, y
    check_samples(X, y)
    if loss == "cross_entropy":
        if kind == "scalar":
            raise ValueError("kind 'scalar' has one output; use loss 'logistic' or kind 'vector'")
        return _num_classes(y, num_classes), False, y
    if y.ndim == 1:  # one output: predictions (N,)
        return 1, True, y
    if kind == "scalar" or loss == "logistic" or y.ndim != 2:
        raise ValueError(f"y must be (N,) for kind {kind!r} with loss {loss!r}; got {y.shape}")
    return y.shape[1], False, y


def _num_classes(y: np.ndarray, num_classes: int | None) -> int:
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"cross-entropy labels y must be integers; got dtype {y.dtype}")
    top = int(y.max()) + 1
    if num_classes is None:
        return max(top, 2)
    if not (isinstance(num_classes, int | np.integer) and num_classes >= 2):
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if top > num_classes:
        raise ValueError(f"label {top - 1} is out of range for num_classes={num_classes}")
    return int(num_classes)


def _variable_shape(kind: str, n: int, d: int, c: int, num_gates: int) -> tuple[int, ...]:
    return {
        "scalar": (n, d),
        "vector": (c, n, d),
        "gated": (num_gates, c, n, d),
        "sequence": (2, d, c, n, n),
    }[kind]


def _resolve_gates(kind: str, X: np.ndarray, gates: Any, seed: int) -> Gates | None:
    if kind != "gated":
        if gates is not None:
            raise ValueError(f"gates are only used by kind 'gated'; got gates for kind {kind!r}")
        return None
    if gates is None:
        gates = DEFAULT_NUM_GATES
    if isinstance(gates, Gates):
        return gates_module.unique(gates, X)
    if isinstance(gates, dict):
        return gates_module.unique(Gates(gates["u1"], gates["u2"]), X)
    if isinstance(gates, int | np.integer) and not isinstance(gates, bool):
        return gates_module.sample(X, int(gates), seed=seed)
    raise TypeError(f"gates must be None, a number of gates, or Gates(u1, u2); got {gates!r}")


def convex_program(
    X: Any,
    y: Any,
    kind: str = "vector",
    beta: float = 1e-3,
    loss: str = "squared",
    gates: Any = None,
    num_classes: int | None = None,
    weights: Any = None,
    seed: int = 0,
    dtype: Any = None,
) -> ConvexProgram:
    """Build the convex program (P1-P4) of ``kind`` for data X (N, n, d) and targets y.

    y: (N,) or (N, c) floats for "squared"; (N,) in {-1, +1} for "logistic" (one output);
      (N,) integer labels for "cross_entropy"; for kind "sequence" (N, n, c) floats or (N, n)
      integer labels.
    gates (kind "gated"): None (sample 16), an int (sample that many from ``seed``), or
      ``Gates(u1, u2)``; gates with duplicate activation patterns on X are removed
      (``program.gates.duplicates_removed``).
    weights: optional per-sample loss weights (N,).  dtype: float dtype of the solve.
    """
    check_choice("kind", kind, KINDS)
    check_choice("loss", loss, LOSSES)
    X = check_X(X)
    beta = check_beta(beta)
    N, n, d = X.shape
    c, scalar_output, targets = outputs_and_targets(kind, loss, X, y, num_classes)
    if kind == "sequence" and loss == "cross_entropy" and weights is not None:
        weights = np.repeat(np.asarray(weights), n)
    gates = _resolve_gates(kind, X, gates, seed)
    shape = _variable_shape(kind, n, d, c, gates.num if gates else 0)
    penalty = solvers.StochasticGauge(beta) if kind == "sequence" else solvers.GroupL2(beta, -1)
    skeleton = ConvexProgram(kind, loss, beta, None, n, d, c, gates, scalar_output)  # type: ignore[arg-type]
    dtype = solvers.problem.default_dtype() if dtype is None else dtype
    X = jnp.asarray(X, dtype)
    problem = solvers.Problem(
        predict=_predict_map(skeleton, X),
        shape=shape,
        loss=solvers.make_loss(loss, targets, weights),
        penalty=penalty,
        dtype=dtype,
    )
    return dataclasses.replace(skeleton, problem=problem, X=X)
