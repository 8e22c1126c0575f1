"""The protocol every zoo model follows, and the pieces the models share.

::

    model = zoo.make(name, **cfg).fit(task, budget_seconds=None)
    model.predict(model.inputs(task, "test"))  # features X (N, n, d) or tokens (N, L)
    model.decision_function(X)                 # raw outputs: logits (N, ..., K) or predictions
    model.predict_proba(X)                     # softmax of the logits (integer targets only)
    model.score(task, "test")                  # accuracy (integer targets) or R^2 (float targets)
    model.attention_maps()                     # {name: token weights}
    model.report()                             # one JSON-ready dict (see ``Model.report``)

A model's "objective" is the quantity its trainer minimizes, summed over the training samples
(as in the convex programs of ``convextx.families``): ``objective_terms`` in the report says which. Models of the
convex program's architecture (convex solves, simplex heads by Adam/SGD) share one scale and
also report the certified optimum of that program.
"""

from __future__ import annotations

import abc
import copy
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import softmax
from sklearn.metrics import r2_score

from convextx.tasks import Task

SPLITS = ("train", "test")
CONVEX_TERMS = "sum of losses + weight decay"  # the convex program's objective
LOSS_TERMS = "sum of losses"


def integer_targets(task: Task) -> bool:
    """Whether the task's targets are class labels (classification or token labels)."""
    return bool(np.issubdtype(task.y_train.dtype, np.integer))


def metric_name(task: Task) -> str:
    return "accuracy" if integer_targets(task) else "r2"


def convex_loss(task: Task) -> str:
    """The convex programs' loss for the task's targets: cross-entropy on labels, else squared."""
    return "cross_entropy" if integer_targets(task) else "squared"


def cross_entropy(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Softmax cross-entropy of integer labels y (B, ...), summed per sample: (B,)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(pred, y)
    return losses.reshape(y.shape[0], -1).sum(axis=1)


def squared(pred: jax.Array, y: jax.Array) -> jax.Array:
    """1/2 the squared error, summed per sample: (B,)."""
    diff = pred.reshape(y.shape[0], -1) - y.reshape(y.shape[0], -1)
    return 0.5 * jnp.sum(diff**2, axis=1)


def per_sample_loss(task: Task) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``loss(pred, y) -> (B,)`` with the convex programs' scaling: ``cross_entropy`` for integer
    targets, else ``squared``. Module-level functions, so the objectives built for one task equal
    those of the next and reuse their compiled steps (``baselines.train.Trainer``)."""
    return cross_entropy if integer_targets(task) else squared


def init_key(seed: int) -> jax.Array:
    """The key of a model's initialization: "rbg" bits, which XLA compiles far faster on CPU than
    the default threefry (seconds per parameter shape)."""
    return jax.random.key(seed, impl="rbg")


def score(task: Task, split: str, pred: Any) -> float:
    """Accuracy (fraction of equal labels, over tokens too) or R^2 (uniform over outputs); nan
    when a prediction is not finite (e.g. of a diverged model)."""
    y = np.asarray(getattr(task, f"y_{split}"))
    pred = np.asarray(pred)
    if pred.shape != y.shape:
        raise ValueError(f"predictions have shape {pred.shape}; y_{split} has {y.shape}")
    if np.issubdtype(pred.dtype, np.inexact) and not np.isfinite(pred).all():
        return float("nan")
    if integer_targets(task):
        return float(np.mean(pred == y))
    return float(r2_score(y.reshape(y.shape[0], -1), pred.reshape(pred.shape[0], -1)))


def count_parameters(tree: Any) -> int:
    """Number of scalars in the arrays of a pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def device_name() -> str:
    """Where new arrays are placed (honours ``jax.default_device``): "platform:device_kind"."""
    (device,) = jnp.zeros(()).devices()
    return f"{device.platform}:{device.device_kind}"


def check_budget(budget_seconds: Any) -> float | None:
    """None, or ``budget_seconds`` as a finite float > 0 (``solvers.checks.positive``)."""
    from solvers import checks

    return None if budget_seconds is None else checks.positive("budget_seconds", budget_seconds)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts and lists) replaced by None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(json_safe(v) for v in value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def wall_clock_stop(budget_seconds: float | None) -> Callable[[dict], bool] | None:
    """An ``early_stop`` for ``baselines.train.Trainer.run`` ending the run once
    ``budget_seconds`` of wall time (compilation included) have passed since this call; None
    without a budget."""
    if budget_seconds is None:
        return None
    deadline = time.perf_counter() + budget_seconds
    return lambda record: time.perf_counter() > deadline


def train_history(history: dict[str, list[float]]) -> dict[str, list[float]]:
    """Every column of a ``baselines.train.Trainer`` history: step, time (seconds in optimizer
    steps, compilation and evaluation excluded), objective, the mean train / test losses (and
    accuracies), test_metric and the entries of a model's ``record``."""
    return {k: list(v) for k, v in history.items()}


def best_restart(objectives: list[float]) -> int:
    """Index of the lowest finite objective (0 when none is finite)."""
    values = np.asarray(objectives, dtype=float)
    return int(np.argmin(np.where(np.isfinite(values), values, np.inf)))


def hyperparameters(arguments: dict[str, Any]) -> dict[str, Any]:
    """A subclass ``__init__``'s ``locals()`` without ``self`` (and the ``super()`` cell)."""
    return {k: v for k, v in arguments.items() if k not in ("self", "__class__")}


class Model(abc.ABC):
    """A zoo entry. Subclasses store their hyperparameters in ``__init__`` (keyword-only) and
    implement ``_fit``, ``decision_function``, ``attention_maps`` and ``_summary``."""

    #: problem types the model can fit (``Task.problem``)
    problems: tuple[str, ...] = ("regression", "classification", "sequence")
    #: which view of the task the model reads: "features" (X) or "tokens"
    input_view: str = "features"
    #: trained models: the logged step at which training diverged (``TrainResult.diverged_at``)
    diverged_at_: int | None = None

    def __init__(self, name: str, **settings: Any) -> None:
        """Store the model's name and hyperparameters as attributes (a subclass passes its
        keyword arguments: ``super().__init__(**base.hyperparameters(locals()))``)."""
        self.name = name
        for key, value in settings.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ protocol

    def fit(self, task: Task, budget_seconds: float | None = None) -> Model:
        """Train on ``task``'s train split, capped at ``budget_seconds`` of wall time where the
        trainer is iterative (see each model; with ``restarts``, shared evenly between them).
        Records wall and CPU time, both metrics."""
        if not isinstance(task, Task):
            raise TypeError(f"task must be a convextx.tasks.Task; got {type(task).__name__}")
        if task.problem not in self.problems:
            raise ValueError(
                f"model {self.name!r} fits problems {self.problems}; task {task.name!r} is a "
                f"{task.problem} task"
            )
        self.budget_seconds_ = check_budget(budget_seconds)
        self.integer_targets_ = integer_targets(task)
        self.num_classes_ = task.num_classes
        self.target_shape_ = task.y_train.shape[1:]
        wall, cpu = time.perf_counter(), time.process_time()
        from solvers import checks

        restarts = checks.integer("restarts", getattr(self, "restarts", 1), 1)
        if restarts == 1:
            self._fit(task, self.budget_seconds_)
        else:
            self._fit_restarts(task, self.budget_seconds_, restarts)
        self.wall_seconds_ = time.perf_counter() - wall
        self.cpu_seconds_ = time.process_time() - cpu
        self._certify(task)
        self.task_ = task.name
        self.problem_ = task.problem
        self.metric_ = metric_name(task)
        self.train_metric_ = self.score(task, "train")
        self.test_metric_ = self.score(task, "test")
        self.device_ = device_name()
        return self

    def inputs(self, task: Task, split: str = "test") -> np.ndarray:
        """The task's inputs this model reads: X (N, n, d) or tokens (N, L)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if self.input_view == "tokens":
            return getattr(task, f"tokens_{split}")
        return getattr(task, f"X_{split}")

    @abc.abstractmethod
    def decision_function(self, inputs: Any) -> np.ndarray:
        """Raw outputs on ``inputs`` (``self.inputs`` view: X (N, n, d) or tokens (N, L)): for
        integer targets the logits (N, K) / (N, n, K) over the task's K classes, else the
        predictions (N, ..., c), which ``predict`` reshapes like y."""

    def predict(self, inputs: Any) -> np.ndarray:
        """Labels (N,) / (N, n) for integer targets (the argmax of ``decision_function``), else
        predictions shaped like y."""
        return self._decode(self.decision_function(inputs))

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Class probabilities (N, K) / (N, n, K): the softmax of ``decision_function`` over
        the task's K classes. AttributeError before ``fit``; ValueError for a model fitted to
        float targets."""
        if not hasattr(self, "integer_targets_"):
            raise AttributeError(f"model {self.name!r} is not fitted yet; call fit(task) first")
        if not self.integer_targets_:
            raise ValueError(
                f"predict_proba needs class labels; model {self.name!r} was fitted to float "
                "targets (a regression task)"
            )
        return softmax(np.asarray(self.decision_function(inputs), dtype=np.float64), axis=-1)

    def score(self, task: Task, split: str = "test") -> float:
        """Accuracy (integer targets) or R^2 (float targets) on ``split`` of ``task``; nan for a
        model whose training diverged or whose predictions are not finite."""
        if self.diverged_at_ is not None:
            return float("nan")
        return score(task, split, self.predict(self.inputs(task, split)))

    @abc.abstractmethod
    def attention_maps(self) -> dict[str, np.ndarray]:
        """Token-mixing weights by name ({} for a model without attention)."""

    def report(self) -> dict[str, Any]:
        """A JSON-ready summary of the fitted model.

        model, task, problem, metric ("accuracy" | "r2"), train_metric, test_metric,
        objective (final train objective), objective_terms (what it sums), certified_optimum,
        gap and status (the convex program of the same architecture; None where there is
        none), parameters, wall_seconds and cpu_seconds (of ``fit``, compilation included),
        budget_seconds, device, history (during training: "time" in measured seconds and
        "objective", with "step"; trained models also record "test_metric", the mean
        "train_loss" / "test_loss" and the entries of their ``record`` setting at each logged
        step; convex models with ``curve=True`` too), details (model-specific; with
        ``restarts`` > 1: restart_seeds, restart_objectives (each restart's final train
        objective) and best_seed, the one kept). A model whose training diverged has status
        "diverged" and details["diverged_at"] (the step); non-finite numbers are None.
        """
        if not hasattr(self, "wall_seconds_"):
            raise AttributeError(f"model {self.name!r} is not fitted yet; call fit(task) first")
        summary = self._summary()
        details = dict(summary.get("details", {}))
        if hasattr(self, "restart_objectives_"):
            details |= {
                "restart_seeds": self.restart_seeds_,
                "restart_objectives": self.restart_objectives_,
                "best_seed": self.restart_seeds_[self.best_restart_],
            }
        status = summary.get("status")
        if self.diverged_at_ is not None:
            status, details["diverged_at"] = "diverged", self.diverged_at_
        report = {
            "model": self.name,
            "task": self.task_,
            "problem": self.problem_,
            "metric": self.metric_,
            "train_metric": self.train_metric_,
            "test_metric": self.test_metric_,
            "objective": float(summary["objective"]),
            "objective_terms": summary["objective_terms"],
            "certified_optimum": summary.get("certified_optimum"),
            "gap": summary.get("gap"),
            "status": status,
            "parameters": int(summary["parameters"]),
            "wall_seconds": self.wall_seconds_,
            "cpu_seconds": self.cpu_seconds_,
            "budget_seconds": self.budget_seconds_,
            "device": self.device_,
            "history": {k: [float(v) for v in vs] for k, vs in summary["history"].items()},
            "details": details,
        }
        return json_safe(report)

    # ------------------------------------------------------------ for subclasses

    def _decode(self, out: Any) -> np.ndarray:
        """Raw outputs (N, ..., c) as labels (argmax) or as predictions shaped like y."""
        out = np.asarray(out)
        if self.integer_targets_:
            return out.argmax(axis=-1)
        return out.reshape(out.shape[0], *self.target_shape_)

    @abc.abstractmethod
    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        """Train (timed by ``fit``)."""

    def _train_objective(self) -> float:
        """The final train objective after ``_fit`` (inf for a diverged run): restarts keep the
        lowest."""
        if self.diverged_at_ is not None:
            return float("inf")
        return float(self.objective_)

    def _fit_restarts(self, task: Task, budget_seconds: float | None, restarts: int) -> None:
        """``_fit`` from seeds seed, seed + 1, ..., seed + restarts - 1 (each given an equal share
        of the budget); keeps the fit of the lowest final train objective."""
        share = None if budget_seconds is None else budget_seconds / restarts
        trials = []
        for r in range(restarts):
            trial = copy.copy(self)
            trial.seed, trial.restarts = self.seed + r, 1
            trial._fit(task, share)
            trials.append(trial)
        objectives = [trial._train_objective() for trial in trials]
        best = best_restart(objectives)
        seed = self.seed
        self.__dict__.update(trials[best].__dict__)
        self.seed, self.restarts = seed, restarts
        self.restart_seeds_ = [seed + r for r in range(restarts)]
        self.restart_objectives_ = objectives
        self.best_restart_ = best

    def _curve(self, task: Task, outputs: Callable[[Any, Any], Any]) -> Callable[[Any], dict]:
        """A ``Trainer.run`` ``eval_fn``: params -> {"test_metric": the test metric of the
        model with those params, **record(predict)} (``outputs(params, inputs)``: raw outputs,
        jitted by the caller; ``record``: the model's setting, if any)."""
        X_test = jnp.asarray(self.inputs(task, "test"))
        record = getattr(self, "record", None)

        def evaluate(params: Any) -> dict[str, float]:
            def predict(inputs: Any) -> np.ndarray:
                return self._decode(outputs(params, jnp.asarray(inputs)))

            entry = {"test_metric": score(task, "test", predict(X_test))}
            if record is not None:
                entry |= {k: float(v) for k, v in record(predict).items()}
            return entry

        return evaluate

    def _train(
        self,
        trainer: Any,
        params: Any,
        task: Task,
        outputs: Callable[[Any, Any], Any],
        budget_seconds: float | None,
        **options: Any,
    ) -> Any:
        """``trainer.run`` on the task's train split (``self.inputs`` view) with the model's
        steps, log_every, seed and progress settings, the test-metric curve of ``outputs``,
        and the wall-clock budget; sets ``result_`` and ``diverged_at_``. ``options``: more
        ``Trainer.run`` arguments (e.g. checkpoints)."""
        result = trainer.run(
            params,
            (jnp.asarray(self.inputs(task, "train")), jnp.asarray(task.y_train)),
            self.steps,
            test_data=(jnp.asarray(self.inputs(task, "test")), jnp.asarray(task.y_test)),
            eval_fn=self._curve(task, outputs),
            log_every=self.log_every,
            early_stop=wall_clock_stop(budget_seconds),
            seed=self.seed,
            progress=self.progress,
            **options,
        )
        self.result_, self.diverged_at_ = result, result.diverged_at
        return result

    def _certify(self, task: Task) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Work after training that is not part of it (untimed), e.g. a reference optimum."""

    @abc.abstractmethod
    def _summary(self) -> dict[str, Any]:
        """objective, objective_terms, parameters, history, and optionally certified_optimum,
        gap, status, details."""
