"""``ConvexAttention``: a scikit-learn estimator trained by a certified convex solve.

``fit`` builds the convex program (P1-P4) of ``kind``, solves it to a certified duality gap,
and recovers the equivalent nonconvex attention heads (one-hot attention per head). The model
class is the simplex-attention network of eq. 4/8/11/13/30: an input-independent,
row-stochastic token mixer, NOT softmax attention (MATH.md section 1).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import jax
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score

import solvers
from convextx._validation import check_beta, check_choice, check_X
from convextx.programs import KINDS, LOSSES, ConvexProgram, convex_program
from convextx.recovery import recover_heads
from convextx.working_set import KINDS as WORKING_SET_KINDS

SOLVERS = ("fista", "cvxpy")
CLASSIFICATION_LOSSES = ("logistic", "cross_entropy")
NEGLIGIBLE_GROUP = 1e-9  # interior-point solutions: groups this small (relative) count as zero


def default_tol(dtype: Any) -> float:
    """The relative gap a solve in ``dtype`` certifies by default."""
    return 1e-6 if np.dtype(dtype) == np.float64 else 1e-3


def precision(dtype: Any):
    """Context in which JAX computes in ``dtype`` (float64 enables x64 locally)."""
    wide = np.dtype(dtype) == np.float64
    return jax.enable_x64(True) if wide else contextlib.nullcontext()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class ConvexAttention(BaseEstimator):
    """Simplex-attention network fitted to global optimality by a convex program.

    kind: "scalar" (P1, one output), "vector" (P2), "gated" (P3: gated-ReLU FCN on the heads),
      "sequence" (P4: per-token outputs).
    beta: weight-decay strength (> 0).  loss: "squared", "logistic", "cross_entropy", or None
      (non-float labels: cross-entropy, or logistic for kind "scalar"; float targets: squared).
    solver: "fista" (JAX) or "cvxpy" (exact, small problems).
    tol: relative duality gap to certify; None: 1e-6 in float64, 1e-3 in float32.
    dtype: "float64" (default: the solve runs inside ``jax.enable_x64``, whatever the global
      setting) or "float32" (faster, e.g. on GPUs). The certificate scales the dual point by how
      far the gradient leaves the dual ball, so its gap is first order in the error of x while
      the objective's error is second order: a float32 iterate whose objective is optimal to
      1e-7 may certify only ~1e-3, hence the looser float32 default.
    heads: number of heads to recover (None: as many as the solution needs).
    gates: for "gated": number of random gates or ``Gates``.  reduce_support: recover from a
      reduced optimum with linearly independent atoms (at most N + 1 active groups per output).
    warm_start: start FISTA from the previous solution (same data shape).
    working_set: solve by FISTA on growing working sets of token/gate groups, certified on the
      full program (``convextx.working_set``; kinds scalar, vector, gated; solver "fista"):
      cheaper iterations when few tokens are active.

    Fitted attributes: ``objective_``, ``gap_``, ``status_``, ``n_iter_``, ``solve_result_``,
    ``coef_`` (the convex variable as solved), ``program_``, ``heads_``, ``attention_`` ((h, n)
    token weights per head, or (h, n, n) for "sequence"), ``active_tokens_`` (tokens used by the
    heads: of the reduced optimum when ``reduce_support``), ``classes_``
    (classification).
    """

    def __init__(
        self,
        kind: str = "vector",
        beta: float = 1e-3,
        loss: str | None = None,
        solver: str = "fista",
        heads: int | None = None,
        gates: Any = None,
        tol: float | None = None,
        max_iter: int = 10_000,
        reduce_support: bool = True,
        warm_start: bool = False,
        working_set: bool = False,
        seed: int = 0,
        dtype: Any = "float64",
        verbose: bool = False,
    ) -> None:
        self.kind = kind
        self.beta = beta
        self.loss = loss
        self.solver = solver
        self.heads = heads
        self.gates = gates
        self.tol = tol
        self.max_iter = max_iter
        self.reduce_support = reduce_support
        self.warm_start = warm_start
        self.working_set = working_set
        self.seed = seed
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def _resolve_loss(self, y: np.ndarray) -> str:
        if self.loss is not None:
            return check_choice("loss", self.loss, LOSSES)
        if not np.issubdtype(y.dtype, np.floating):  # integer, bool or string labels
            return "logistic" if self.kind == "scalar" else "cross_entropy"
        return "squared"

    def _encode_targets(self, y: np.ndarray, loss: str) -> np.ndarray:
        if loss not in CLASSIFICATION_LOSSES:
            if not np.issubdtype(y.dtype, np.number):
                raise TypeError(f"regression targets y must be numeric; got dtype {y.dtype}")
            self.classes_ = None
            return y.astype(np.float64)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        encoded = encoded.reshape(y.shape)
        if loss == "logistic":
            if self.classes_.size != 2:
                raise ValueError(
                    f"loss 'logistic' needs exactly 2 classes; y has {self.classes_.size} "
                    "(use loss 'cross_entropy' with kind 'vector')"
                )
            return 2.0 * encoded - 1.0
        if self.classes_.size < 2:
            raise ValueError("y has a single class; classification needs at least 2")
        return encoded

    def build_program(self, X: Any, y: Any, sample_weight: Any = None) -> ConvexProgram:
        """Validate (X (N, n, d), y), encode labels (sets ``classes_``), build the program."""
        check_choice("kind", self.kind, KINDS)
        check_choice("solver", self.solver, SOLVERS)
        if self.working_set and (self.solver != "fista" or self.kind not in WORKING_SET_KINDS):
            raise ValueError(
                f"working_set=True needs solver 'fista' and kind in {WORKING_SET_KINDS}; "
                f"got solver {self.solver!r}, kind {self.kind!r}"
            )
        check_beta(self.beta)
        X = check_X(X)
        y = np.asarray(y)
        loss = self._resolve_loss(y)
        targets = self._encode_targets(y, loss)
        num_classes = None if self.classes_ is None else int(self.classes_.size)
        return convex_program(
            X, targets, self.kind, self.beta, loss, self.gates, num_classes,
            weights=sample_weight, seed=self.seed, dtype=self.dtype,
        )  # fmt: skip

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ConvexAttention:
        """Solve the convex program on (X (N, n, d), y) and recover the network."""
        if self.dtype not in ("float64", "float32", np.float64, np.float32):
            raise ValueError(f"dtype must be 'float64' or 'float32'; got {self.dtype!r}")
        with precision(self.dtype):
            return self._fit(X, y, sample_weight)

    def _fit(self, X: Any, y: Any, sample_weight: Any) -> ConvexAttention:
        self.program_ = self.build_program(X, y, sample_weight)
        X = check_X(X)
        previous = getattr(self, "coef_", None) if self.warm_start else None
        x0 = None
        if (
            previous is not None
            and previous.shape == self.program_.shape
            and self.solver == "fista"
        ):
            x0 = previous
        tol = self.tol if self.tol is not None else default_tol(self.program_.problem.dtype)
        result = self.program_.solve(
            method=self.solver,
            working_set=bool(self.working_set),
            tol=tol,
            max_iter=self.max_iter,
            x0=x0,
            verbose=self.verbose,
        )
        if result.status != "optimal":
            warnings.warn(
                f"ConvexAttention did not reach tol={tol}: status {result.status!r}, "
                f"relative gap {result.relative_gap:.3g}; raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.loss_ = self.program_.loss
        self.solve_result_ = result
        self.objective_ = result.objective
        self.gap_ = result.gap
        self.status_ = result.status
        self.n_iter_ = result.iterations
        self.coef_ = np.asarray(result.x)
        self.n_features_in_ = X.shape[2]
        self.n_tokens_ = X.shape[1]
        support = self._negligible_groups_zeroed()
        if self.reduce_support:
            support = solvers.reduce_support(self.program_.problem, support)
        self.heads_ = recover_heads(self.program_, support, self.heads, reduce=False)
        self.attention_ = self.heads_["W1" if self.kind == "sequence" else "w1"]
        self.active_tokens_ = self.program_.active_tokens(support)
        return self

    def _negligible_groups_zeroed(self) -> np.ndarray:
        """coef_ with groups below NEGLIGIBLE_GROUP * the largest set to 0 (interior-point
        solutions are dense at that level; FISTA's zeros are exact and unaffected)."""
        if self.solver == "fista":
            return self.coef_
        penalty = self.program_.problem.penalty
        norms = np.asarray(penalty.group_norms(self.coef_))
        index = penalty.group_indices(self.coef_.shape)
        cleaned = self.coef_.copy().ravel()
        cleaned[index[norms <= NEGLIGIBLE_GROUP * norms.max()].ravel()] = 0.0
        return cleaned.reshape(self.coef_.shape)

    # --------------------------------------------------------------- prediction

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise AttributeError("this ConvexAttention is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw outputs of the convex model (equal to the recovered network's): (N,), (N, c),
        or (N, n, c) for "sequence"."""
        self._check_fitted()
        X = check_X(X)
        if X.shape[1:] != (self.n_tokens_, self.n_features_in_):
            raise ValueError(
                f"X must have (n, d) = {(self.n_tokens_, self.n_features_in_)}; got {X.shape[1:]}"
            )
        with precision(self.dtype):
            out = np.asarray(self.program_.predict(self.coef_, X))
        if self.kind == "sequence" and self.loss_ == "cross_entropy":
            out = out.reshape(X.shape[0], X.shape[1], -1)
        return out

    def predict(self, X: Any) -> np.ndarray:
        out = self.decision_function(X)
        if self.classes_ is None:
            return out
        if self.loss_ == "logistic":
            return self.classes_[(out > 0).astype(int)]
        return self.classes_[np.argmax(out, axis=-1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, classes) (or (N, n, classes) for "sequence")."""
        out = self.decision_function(X)
        if self.classes_ is None:
            raise AttributeError("predict_proba is only available for classification losses")
        if self.loss_ == "logistic":
            p = 1.0 / (1.0 + np.exp(-out))
            return np.stack([1.0 - p, p], axis=-1)
        return _softmax(out)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy for classification, R^2 (uniform average over outputs) for regression."""
        y = np.asarray(y)
        pred = self.predict(X)
        if self.classes_ is not None:
            return float(np.average(pred == y, weights=sample_weight if pred.ndim == 1 else None))
        return float(
            r2_score(
                y.reshape(y.shape[0], -1),
                pred.reshape(pred.shape[0], -1),
                sample_weight=sample_weight,
            )
        )
