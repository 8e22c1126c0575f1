"""``ConvexAttention``: a scikit-learn estimator trained by a certified convex solve.

``fit`` builds the convex program of the family ``kind`` (``convextx.families``), solves it to
a certified duality gap, and recovers the equivalent nonconvex network (for the paper's
families: simplex-attention heads, one-hot attention per head). The paper's model class is an
input-independent, row-stochastic token mixer, NOT softmax attention.

Fitting is atomic: ``fit`` validates its inputs once, computes everything into locals and
sets the fitted attributes only when it succeeds, so a failed fit leaves an earlier fitted
state whole.

Predictions read ``predictor_`` (a ``Predictor``: the family's fixed parts, no training data),
never the program, so a model saved with ``save`` and read back with ``load`` (``convextx.persist``:
one .npz, no pickles) predicts exactly as the fitted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils.validation import check_is_fitted

import solvers
from convextx import families
from convextx._validation import check_X, check_y
from convextx.families.base import CLASSIFICATION_LOSSES, LOSSES
from convextx.programs import METHODS, ConvexProgram, build
from convextx.recovery import recover_heads
from solvers import checks, sharding

SOLVERS = METHODS
DTYPES = ("float64", "float32")


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


@dataclasses.dataclass(frozen=True)
class Predictor:
    """What maps a solution x and new inputs X (N', n, d) to the convex model's outputs: a
    fitted program's prediction state, without its training data.

    family, loss, scalar_output: the program's.  dtype: the solve's.  data: the family's data
    bundle of zero samples (``family.data_for`` on the program's X[:0]): only its fixed parts
    carry anything (the gates of P3, the query index and bases of P5; nothing for P1, P2, P4).
    """

    family: families.Family
    loss: str
    scalar_output: bool
    dtype: np.dtype
    data: Any = dataclasses.field(repr=False)

    @classmethod
    def of(cls, program: ConvexProgram) -> Predictor:
        """The predictor of ``program`` (under ``precision`` of the program's dtype)."""
        data = program.family.data_for(program, program.X[:0])
        dtype = np.dtype(program.problem.dtype)
        return cls(program.family, program.loss, program.scalar_output, dtype, data)

    def __call__(self, x: Any, X: np.ndarray) -> np.ndarray:
        """Outputs of solution x on validated X (N', n, d), shaped as the loss reads them:
        (N',), (N', c), or (N' n, c) for per-token rows (under ``precision(self.dtype)``)."""
        # a family's data_for reads only the fixed parts of ``.data``, which a Predictor
        # carries as a program does
        data = self.family.data_for(self, jnp.asarray(X, self.dtype))
        predict = self.family.predict(data, self.scalar_output, self.loss)
        return np.asarray(predict(jnp.asarray(x, self.dtype)))


@dataclasses.dataclass(frozen=True)
class _Fitted:
    """Everything ``fit`` learns, computed before any attribute is set."""

    program: ConvexProgram
    classes: np.ndarray | None
    result: solvers.SolveResult
    heads: dict[str, np.ndarray]
    support: np.ndarray
    predictor: Predictor


class ConvexAttention(BaseEstimator):
    """A network of a convex program family, fitted to a certified global optimum.

    kind: a family name (``convextx.families.names()``): "scalar" (P1, one output), "vector"
      (P2), "gated" (P3: gated-ReLU FCN on the heads), "sequence" (P4: per-token outputs),
      "linear" (P5: multi-head linear attention at a query token, a nuclear-norm program).
    beta: weight-decay strength (> 0).  loss: "squared", "logistic", "cross_entropy", or None
      (labels: the family's default classification loss, cross-entropy or logistic for
      "scalar"; float targets: squared). The scikit-learn estimator type follows the loss
      (classifier for logistic / cross-entropy, regressor for squared; none for None).
    solver: "fista" (JAX), "working_set" (FISTA on growing working sets of token/gate groups,
      certified on the full program; group-lasso families: cheaper iterations when few tokens
      are active) or "cvxpy" (exact, small problems).
    tol: relative duality gap to certify; None: 1e-6 in float64, 1e-3 in float32.
    max_iter: iteration budget.  time_limit: seconds of iterations (FISTA methods), or None.
    dtype: "float64" (default: the solve runs inside ``jax.enable_x64``, whatever the global
      setting) or "float32" (faster, e.g. on GPUs; certified in float64 all the same, so its
      gap is honest: a float32 iterate whose objective is optimal to 1e-7 may certify only
      ~1e-3, hence the looser float32 default).
    heads: number of heads to recover (None: as many as the solution needs).
    gates: for "gated": number of random gates or ``Gates``.  query: for "linear": the query
      position (an int index into the n tokens; None: -1, the last).  reduce_support: recover
      from a reduced optimum with linearly independent atoms (at most N + 1 active groups per
      output).
    warm_start: start from the previous solution (same program shape, solvers fista and
      working_set).  working_set: deprecated alias of solver="working_set".
    seed: random parts of the program (gates).  verbose: print the solve's summary.
    devices: None (one device), "all" or a count k (the first k of ``jax.devices()``): the
      training samples are split over them (``solvers.sharding``; N must be a multiple of the
      count; solvers fista and working_set). Pays on several GPUs, not on one CPU.

    Fitted attributes: ``objective_``, ``gap_``, ``status_``, ``n_iter_``, ``solve_result_``,
    ``coef_`` (the convex variable as solved), ``program_``, ``predictor_`` (``Predictor``: what
    predictions read), ``heads_``, ``attention_`` (the heads' token weights: (h, n), or
    (h, n, n) for "sequence"), ``active_tokens_`` (tokens used by the heads: of the reduced
    optimum when ``reduce_support``), ``classes_`` (classification; None for regression),
    ``loss_``, ``n_features_in_``, ``n_tokens_``.

    ``save(path)`` writes the fitted model to one .npz (no pickles, no training data) and
    ``ConvexAttention.load(path)`` reads it back (``convextx.persist``): every attribute above
    but ``program_`` and ``solve_result_``, which hold the training data and the solve's history.
    """

    def __init__(
        self,
        kind: str = "vector",
        beta: float = 1e-3,
        loss: str | None = None,
        solver: str = "fista",
        heads: int | None = None,
        gates: Any = None,
        query: int | None = None,
        tol: float | None = None,
        max_iter: int = 10_000,
        reduce_support: bool = True,
        warm_start: bool = False,
        working_set: bool = False,
        seed: int = 0,
        dtype: Any = "float64",
        verbose: bool = False,
        time_limit: float | None = None,
        devices: int | str | None = None,
    ) -> None:
        self.kind = kind
        self.beta = beta
        self.loss = loss
        self.solver = solver
        self.heads = heads
        self.gates = gates
        self.query = query
        self.tol = tol
        self.max_iter = max_iter
        self.reduce_support = reduce_support
        self.warm_start = warm_start
        self.working_set = working_set
        self.seed = seed
        self.dtype = dtype
        self.verbose = verbose
        self.time_limit = time_limit
        self.devices = devices

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.loss in CLASSIFICATION_LOSSES:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        elif self.loss == "squared":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        tags.input_tags.three_d_array = True
        return tags

    # ---------------------------------------------------------- hyperparameters

    def _method(self) -> str:
        """The solve method, after checking every hyperparameter (ValueError / TypeError
        naming the first bad one)."""
        family = families.get(self.kind)
        method = checks.choice("solver", self.solver, SOLVERS)
        if checks.boolean("working_set", self.working_set):
            warnings.warn(
                "working_set=True is deprecated; use solver='working_set'",
                DeprecationWarning,
                stacklevel=3,
            )
            if method != "fista" or not family.working_sets:
                grouped = tuple(k for k in families.names() if families.get(k).working_sets)
                raise ValueError(
                    f"working_set=True needs solver 'fista' and kind in {grouped}; "
                    f"got solver {self.solver!r}, kind {self.kind!r}"
                )
            method = "working_set"
        checks.positive("beta", self.beta)
        if self.loss is not None:
            family.check_loss(checks.choice("loss", self.loss, LOSSES))
        if self.tol is not None:
            checks.tolerance("tol", self.tol)
        checks.integer("max_iter", self.max_iter, 1, checks.INT32_MAX)
        if self.time_limit is not None:
            checks.positive("time_limit", self.time_limit)
        if self.heads is not None:
            checks.integer("heads", self.heads, 1)
        if self.devices is not None:
            if method == "cvxpy" or isinstance(self.devices, list | tuple):
                raise ValueError(
                    f"devices must be None, 'all' or a count with solver fista or working_set; "
                    f"got devices={self.devices!r}, solver {self.solver!r}"
                )
            sharding.resolve_devices(self.devices)
        for name in ("reduce_support", "warm_start", "verbose"):
            checks.boolean(name, getattr(self, name))
        checks.seed("seed", self.seed)
        _check_dtype(self.dtype)
        return method

    # ------------------------------------------------------------------ fitting

    def _targets(self, y: np.ndarray) -> tuple[str, np.ndarray, np.ndarray | None]:
        """(loss, encoded targets, classes or None) for validated y."""
        family = families.get(self.kind)
        loss = self.loss if self.loss is not None else family.default_loss(y)
        if loss not in CLASSIFICATION_LOSSES:
            if not np.issubdtype(y.dtype, np.number) or y.dtype == bool:
                raise TypeError(f"regression targets y must be numeric; got dtype {y.dtype}")
            return loss, y.astype(np.float64), None
        classes, encoded = np.unique(y, return_inverse=True)
        encoded = encoded.reshape(y.shape)
        if loss == "logistic":
            if classes.size != 2:
                raise ValueError(
                    f"loss 'logistic' needs exactly 2 classes; y has {classes.size} "
                    "(use loss 'cross_entropy' with kind 'vector')"
                )
            return loss, 2.0 * encoded - 1.0, classes
        if classes.size < 2:
            raise ValueError("y has a single class; classification needs at least 2")
        return loss, encoded, classes

    def _program(
        self, X: np.ndarray, y: np.ndarray, sample_weight: Any
    ) -> tuple[ConvexProgram, np.ndarray | None]:
        """The program of validated X and y, and the classes (None for regression)."""
        family = families.get(self.kind)
        weights = checks.sample_weights(sample_weight, X.shape[0])
        loss, encoded, classes = self._targets(y)
        num_classes = None if classes is None else int(classes.size)
        targets = family.encode(encoded, loss, X.shape, num_classes, weights)
        options = families.resolve_options(family, {"gates": self.gates, "query": self.query})
        program = build(
            family, X, targets, float(self.beta), loss, options, int(self.seed), self.dtype,
            check_targets=False,
        )  # fmt: skip
        return program, classes

    def build_program(self, X: Any, y: Any, sample_weight: Any = None) -> ConvexProgram:
        """Validate (X (N, n, d), y), encode the targets and build the program (no state)."""
        self._method()
        with precision(self.dtype):
            return self._program(check_X(X), check_y(y), sample_weight)[0]

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ConvexAttention:
        """Solve the convex program on (X (N, n, d), y) and recover the network."""
        method = self._method()
        X, y = check_X(X), check_y(y)
        with precision(self.dtype):
            fitted = self._solve(method, X, y, sample_weight)
        result = fitted.result
        if result.status != "optimal":
            warnings.warn(
                f"ConvexAttention did not reach tol={result.tol}: status {result.status!r}, "
                f"relative gap {result.relative_gap:.3g}; raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_fitted(fitted, X)
        return self

    def _solve(self, method: str, X: np.ndarray, y: np.ndarray, sample_weight: Any) -> _Fitted:
        program, classes = self._program(X, y, sample_weight)
        options: dict[str, Any] = {}
        previous = getattr(self, "coef_", None) if self.warm_start else None
        if previous is not None and previous.shape == program.shape and method != "cvxpy":
            options["x0"] = previous
        if self.time_limit is not None and method != "cvxpy":
            options["time_limit"] = float(self.time_limit)
        if self.devices is not None:
            options["devices"] = self.devices
        tol = self.tol if self.tol is not None else default_tol(program.problem.dtype)
        result = program.solve(
            method=method, tol=tol, max_iter=int(self.max_iter), verbose=self.verbose, **options
        )
        return self._recovered(program, classes, result)

    def _recovered(
        self, program: ConvexProgram, classes: np.ndarray | None, result: solvers.SolveResult
    ) -> _Fitted:
        """The fitted state of a solved program (heads recovered from the solution)."""
        support = np.asarray(result.x, dtype=np.float64)
        if self.reduce_support:
            support = solvers.reduce_support(program.problem, support)
        heads = recover_heads(program, support, self.heads, reduce=False)
        return _Fitted(program, classes, result, heads, support, Predictor.of(program))

    def _set_fitted(self, fitted: _Fitted, X: np.ndarray) -> None:
        """Set every fitted attribute at once (after the fit has succeeded)."""
        program, result = fitted.program, fitted.result
        self.program_ = program
        self.predictor_ = fitted.predictor
        self.classes_ = fitted.classes
        self.loss_ = program.loss
        self.solve_result_ = result
        self.objective_ = result.objective
        self.gap_ = result.gap
        self.status_ = result.status
        self.n_iter_ = result.iterations
        self.coef_ = np.asarray(result.x)
        self.n_features_in_ = X.shape[2]
        self.n_tokens_ = X.shape[1]
        self.heads_ = fitted.heads
        self.attention_ = program.family.attention(fitted.heads)
        self.active_tokens_ = program.active_tokens(fitted.support)

    # --------------------------------------------------------------- prediction

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw outputs of the convex model (equal to the recovered network's): (N,), (N, c),
        or (N, n, c) for "sequence"."""
        check_is_fitted(self, "coef_")
        X = check_X(X)
        if X.shape[1:] != (self.n_tokens_, self.n_features_in_):
            raise ValueError(
                f"X must have (n, d) = {(self.n_tokens_, self.n_features_in_)}; got {X.shape[1:]}"
            )
        predictor = self.predictor_
        with precision(predictor.dtype):
            out = predictor(self.coef_, X)
        if predictor.family.flattens_rows(predictor.loss):
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

    # -------------------------------------------------------------- persistence

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the fitted model to the .npz file ``path`` (exactly that name), atomically;
        FileExistsError if it exists, unless ``force``. Returns the path. The file holds the
        hyperparameters, the solution, the heads and the predictor's fixed parts: no training
        data and no pickles (``convextx.persist``)."""
        from convextx import persist  # persist imports this module

        return persist.save(self, path, force=force)

    @classmethod
    def load(cls, path: str | Path) -> ConvexAttention:
        """The model ``save`` wrote to ``path``; its predictions equal the saved model's.
        ValueError for a file that is not a convextx model or has a newer format version."""
        from convextx import persist

        return persist.load(path, cls)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy for classification, R^2 (uniform average over outputs) for regression.
        y must have the predictions' shape ((N,), (N, c), (N, n) or (N, n, c))."""
        pred = self.predict(X)
        y = check_y(y)
        if y.shape != pred.shape:
            raise ValueError(f"y must have the predictions' shape {pred.shape}; got {y.shape}")
        weights = checks.sample_weights(sample_weight, y.shape[0])
        if self.classes_ is not None:
            per_sample = (pred == y).reshape(y.shape[0], -1).mean(axis=1)
            return float(np.average(per_sample, weights=weights))
        return float(
            r2_score(
                y.reshape(y.shape[0], -1), pred.reshape(pred.shape[0], -1), sample_weight=weights
            )
        )


def _check_dtype(dtype: Any) -> str:
    """The name of ``dtype`` if it is float64 or float32."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    return name
