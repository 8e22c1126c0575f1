"""Convex attention programs: a family's program on data, ready to solve.

Every program is ``min_x sum_i L(A(x)_i, y_i) + beta * Omega(x)``, a ``solvers.Problem`` whose
linear map, penalty and targets come from its family (``convextx.families``):

=========  ==============================  ======================  ===============================
kind       variable x                      prediction A(x)_i       penalty Omega
=========  ==============================  ======================  ===============================
scalar     Z (n, d)                 (P1)   <X_i, Z>                sum_k |z_k|_2     (group lasso
vector     Z (c, n, d)              (P2)   (<X_i, Z_l>)_l          sum_{l,k} |z_lk|_2  over tokens)
gated      Z (P, c, n, d)           (P3)   sum_j D_ij <X_i, Z_jl>  sum_{j,l,k} |z_jlk|_2
sequence   C (2, d, c, n, n), C>=0  (P4)   sum_q (C+_ql - C-_ql)   sum_{+-,q,l} gauge(C_ql)
                                           X_i[:, q]  (n, c)
=========  ==============================  ======================  ===============================

The data are arguments of the compiled solver (``jax.tree_util.Partial`` maps), so one
compiled solve serves every beta and every data set of the same shape.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import solvers
from convextx import families
from convextx._validation import check_beta, check_X, check_y
from convextx.families.base import LOSSES, Family, Targets
from solvers import checks
from solvers.materialize import check_size

KINDS = families.names()
METHODS = tuple(solvers.METHODS)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ConvexProgram:
    """A convex attention program ready to solve.

    family: the ``convextx.families.Family``.  loss: the loss name.  beta: penalty strength.
    problem: the ``solvers.Problem``.  data: the family's device-resident data bundle (the
    training inputs X and, e.g., the gate patterns of P3, computed once).
    outputs: c, the number of output columns of the convex model (1 for a scalar output).
    scalar_output: predictions are squeezed to one output ((N,), or (N, n) per token).
    """

    family: Family
    loss: str
    beta: float
    problem: solvers.Problem
    data: Any = dataclasses.field(repr=False)
    outputs: int = 1
    scalar_output: bool = False

    @property
    def kind(self) -> str:
        return self.family.name

    @property
    def X(self) -> Array:
        """The training inputs (N, n, d), in the solve's dtype."""
        return self.data.X

    @property
    def n(self) -> int:
        return int(self.data.X.shape[1])

    @property
    def d(self) -> int:
        return int(self.data.X.shape[2])

    @property
    def gates(self) -> families.Gates | None:
        """The fixed gates of P3 (deduplicated on the training data), else None."""
        return getattr(self.data, "gates", None)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.problem.shape

    def solve(
        self, method: str = "fista", working_set: bool = False, **options: Any
    ) -> solvers.SolveResult:
        """``solvers.solve`` on this program (tol, max_iter, x0, verbose, method options).

        method: "fista", "working_set" (FISTA on growing working sets of token/gate groups,
          with the family's data restriction and operator-norm bounds: cheaper iterations when
          the solution is sparse, certified on the full program all the same; group-lasso
          families only) or "cvxpy" (with the family's closed-form dense matrix).
        working_set: deprecated alias of method="working_set".
        """
        if working_set:
            warnings.warn(
                "working_set=True is deprecated; use method='working_set'",
                DeprecationWarning,
                stacklevel=2,
            )
            if method != "fista":
                raise ValueError(f"working_set=True needs method 'fista'; got {method!r}")
            method = "working_set"
        options = {**self.method_options(checks.choice("method", method, METHODS)), **options}
        return solvers.solve(self.problem, method=method, **options)

    def path(self, betas: Any, method: str = "fista", **options: Any) -> solvers.PathResult:
        """``solvers.regularization_path`` over ``betas`` with this program's method options
        (each solve warm-started from the previous solution and step size)."""
        options = {**self.method_options(checks.choice("method", method, METHODS)), **options}
        return solvers.regularization_path(self.problem, betas, method=method, **options)

    def method_options(self, method: str) -> dict[str, Any]:
        """What the family adds to a solve by ``method``: the data restriction and
        operator-norm bounds of working sets, the closed-form matrix of the cvxpy route."""
        if method == "working_set":
            restrict = self.family.restriction(self)
            if restrict is None:
                grouped = tuple(k for k in KINDS if families.get(k).working_sets)
                raise ValueError(
                    f"working sets need a group-lasso program (kind in {grouped}); "
                    f"got {self.kind!r}"
                )
            # A family's restriction is checked by the test suite (tests/test_working_set.py)
            # rather than at each solve: a check compiles both maps for each new shape.
            return {
                "restrict": restrict,
                "operator_norms": self.family.operator_norm_bounds(self),
                "check_restriction": False,
            }
        if method == "cvxpy":
            what = f"the cvxpy backend at N, n, d = {self.X.shape[0]}, {self.n}, {self.d}"
            check_size(self.problem, what)
            return {"matrix": self.family.dense_matrix(self)}
        return {}

    def with_beta(self, beta: float) -> ConvexProgram:
        beta = check_beta(beta)
        return dataclasses.replace(self, beta=beta, problem=self.problem.with_beta(beta))

    def predict(self, x: Any, X: Any) -> Array:
        """The convex model's predictions on new inputs X (N', n, d) for the solution x."""
        X = check_X(X)
        if X.shape[1:] != (self.n, self.d):
            raise ValueError(
                f"X must have (n, d) = {(self.n, self.d)} per sample; got {X.shape[1:]}"
            )
        data = self.family.data_for(self, jnp.asarray(X, self.problem.dtype))
        predict = self.family.predict(data, self.scalar_output, self.loss)
        return predict(jnp.asarray(x, self.problem.dtype))

    def token_norms(self, x: Any) -> np.ndarray:
        """(n,) total weight each token position carries in the solution (0 = inactive token)."""
        return self.family.token_norms(self, np.asarray(x))

    def active_tokens(self, x: Any, rtol: float = 0.0) -> np.ndarray:
        """Sorted token positions with nonzero weight (above ``rtol`` times the largest)."""
        norms = self.token_norms(x)
        return np.flatnonzero(norms > rtol * norms.max()) if norms.max() > 0 else np.array([], int)


def encode(
    family: Family,
    X_shape: tuple[int, ...],
    y: np.ndarray,
    loss: str,
    num_classes: int | None,
    weights: np.ndarray | None,
) -> Targets:
    """The family's targets for validated y and weights."""
    return family.encode(y, loss, X_shape, num_classes, weights)


def build(
    family: Family,
    X: np.ndarray,
    targets: Targets,
    beta: float,
    loss: str,
    options: dict[str, Any],
    seed: int,
    dtype: Any,
    check_targets: bool = True,
) -> ConvexProgram:
    """The program of validated X, beta and weights (nothing here re-checks them;
    ``convex_program`` is the checking entry point). check_targets: let the loss check its
    targets (e.g. logistic labels in {-1, +1}); False for targets the caller encoded itself."""
    dtype = solvers.problem.solve_dtype(dtype)
    X_device = jnp.asarray(X, dtype)
    data = family.prepare(X_device, X, options, seed)
    problem = solvers.Problem(
        predict=family.predict(data, targets.scalar_output, loss),
        shape=family.shape(data, targets.outputs),
        loss=solvers.make_loss(loss, targets.values, targets.weights, check=check_targets),
        penalty=family.penalty(beta),
        dtype=dtype,
        check_linear=False,  # the family's map is linear by construction (and tested)
    )
    return ConvexProgram(family, loss, beta, problem, data, targets.outputs, targets.scalar_output)


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
    **options: Any,
) -> ConvexProgram:
    """Build the convex program of family ``kind`` (P1-P4) for data X (N, n, d) and targets y.

    y: (N,) or (N, c) floats for "squared"; (N,) in {-1, +1} for "logistic" (one output);
      (N,) integer labels for "cross_entropy"; for kind "sequence" (N, n, c) floats or (N, n)
      integer labels / values.
    gates (kind "gated"): None (sample 16), an int (sample that many from ``seed``), or
      ``Gates(u1, u2)``; gates with duplicate activation patterns on X are removed
      (``program.gates.duplicates_removed``).
    weights: optional per-sample loss weights (N,) > 0.  dtype: float32 or float64 (None: JAX's
    default).  options: further options of the family (``families.option_names()``).
    """
    family = families.get(kind)
    family.check_loss(checks.choice("loss", loss, LOSSES))
    X = check_X(X)
    beta = check_beta(beta)
    seed = checks.seed("seed", seed)
    weights = checks.sample_weights(weights, X.shape[0], "weights")
    resolved = families.resolve_options(family, {"gates": gates, **options})
    targets = encode(family, X.shape, check_y(y), loss, num_classes, weights)
    return build(family, X, targets, beta, loss, resolved, seed, dtype)
