"""Zoo entries "simplex-adam", "simplex-sgd": the convex model's architecture trained by gradient.

The head-sum simplex-attention network of ``baselines.heads`` (eq. 8/11/30) with its exact weight
decay, trained by a ``baselines.train.Trainer`` on the same features, loss and beta as the convex
program. Its final objective is scored by ``convextx.nonconvex_objective`` (the convex program's
scale) and reported next to the certified optimum of that program, so the table shows how far
Adam/SGD stop above the global optimum.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from baselines import heads as heads_module
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.estimator import precision
from convextx.objectives import nonconvex_objective
from convextx.tasks import Task
from convextx.zoo import base, certificates
from convextx.zoo.convex import default_kind

KINDS = ("scalar", "vector", "sequence")
DEFAULT_LEARNING_RATES = {"adam": 1e-2, "adamw": 1e-2}


@functools.cache
def _forward(kind: str) -> Callable[[Any, Any], Any]:
    """Jitted raw outputs of trainable params (one compilation per kind and shape)."""
    return jax.jit(
        lambda params, X: heads_module.forward(kind, heads_module.to_heads(params, kind), X)
    )


def default_heads(kind: str, n: int, d: int, c: int) -> int:
    """Enough heads to represent every optimum the convex solver returns unreduced: one per
    group of its variable (tokens n (x outputs c); 2 d c blocks for "sequence")."""
    return {"scalar": n, "vector": c * n, "sequence": 2 * d * c}[kind]


class SimplexModel(base.Model):
    """Simplex-attention heads trained by ``optimizer`` on the convex program's objective.

    kind: "scalar" | "vector" | "sequence" or None (``default_kind`` of the task).  beta: weight
    decay (> 0), as in the convex program.  heads: h (None: ``default_heads``).
    optimizer: a ``baselines.optim`` optimizer ("adam", "sgd", ...).  learning_rate: None picks
    1e-2 for Adam and 1 / N for SGD (the objective is a SUM over N samples, so plain gradient
    steps must shrink with N).  steps, batch_size (None: full batch), parameterization of the
    simplex rows ("softmax" | "projection").  seed: initialization and minibatch order.
    tol, max_iter: the certificate, the same program solved in float64 by FISTA after training
    (outside the timed fit) to relative gap ``tol`` (None: ConvexAttention's float64 default),
    or taken from the zoo's certificate cache (``convextx.zoo.certificates``) when a convex or
    simplex fit of the same task, kind, loss and beta certified it to ``tol`` or tighter.
    restarts: fit from seeds seed, ..., seed + restarts - 1 and keep the lowest final objective
    (details["restart_objectives"]).  record: ``predict -> {name: value}``, called at every
    logged step with the current network's predict (its entries join the history).
    progress: show the training progress bar.

    ``budget_seconds`` stops training at the first logged step past it (``log_every`` steps;
    "log": log-spaced). The report's details hold the certificate's lower_bound and the
    margin_above_bound of the lowest objective of the run (final and logged).
    """

    def __init__(
        self,
        *,
        name: str = "simplex-adam",
        kind: str | None = None,
        beta: float = 1.0,
        heads: int | None = None,
        optimizer: str = "adam",
        learning_rate: float | None = None,
        steps: int = 3000,
        batch_size: int | None = None,
        parameterization: str = "softmax",
        log_every: int | str = 50,
        tol: float | None = None,
        max_iter: int = 10_000,
        seed: int = 0,
        restarts: int = 1,
        record: Callable[[Callable[[Any], np.ndarray]], dict[str, float]] | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(**base.hyperparameters(locals()))

    def _resolved_kind(self, task: Task) -> str:
        kind = self.kind or default_kind(task)
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} for {self.name!r}; expected one of {KINDS}")
        return kind

    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        kind = self.kind_ = self._resolved_kind(task)
        N, n, d = task.X_train.shape
        c = task.output_dim
        h = default_heads(kind, n, d, c) if self.heads is None else self.heads
        params = heads_module.init_params(
            base.init_key(self.seed),
            kind,
            h,
            n,
            d,
            c if heads_module.architecture(kind).outputs else None,
            self.parameterization,
        )
        rate = self.learning_rate or DEFAULT_LEARNING_RATES.get(self.optimizer, 1.0 / N)
        accuracy = base.integer_targets(task)
        trainer = Trainer(
            heads_module.objective(kind, base.per_sample_loss(task), accuracy=accuracy),
            make_optimizer(self.optimizer, rate),
            penalty=heads_module.WeightDecay(kind, self.beta),
            project=heads_module.project if self.parameterization == "projection" else None,
            batch_size=self.batch_size,
        )
        result = self._train(trainer, params, task, _forward(kind), budget_seconds)
        self.heads_ = {
            k: np.asarray(v) for k, v in heads_module.to_heads(result.params, kind).items()
        }
        with precision("float64"):  # scored like the certificate, not in training precision
            self.objective_ = nonconvex_objective(
                {k: v.astype(np.float64) for k, v in self.heads_.items()},
                task.X_train,
                task.y_train,
                self.beta,
                kind,
                base.convex_loss(task),
                task.num_classes,
            )

    def _certify(self, task: Task) -> None:
        self.certificate_ = certificates.certify(
            task, self.kind_, self.beta, base.convex_loss(task), self.tol, self.max_iter
        )
        run = [self.objective_, *self.result_.history["objective"]]
        finite = np.isfinite(np.asarray(run, dtype=float)).all()
        self.margin_ = min(run) - self.certificate_.lower_bound if finite else None

    def decision_function(self, inputs: Any) -> np.ndarray:
        """The heads' raw outputs (logits or predictions) for features X (N, n, d)."""
        return np.asarray(heads_module.forward(self.kind_, self.heads_, jnp.asarray(inputs)))

    def attention_maps(self) -> dict[str, np.ndarray]:
        """{"heads": (h, n) simplex weights per head, or (h, n, n) for "sequence"}."""
        return {"heads": np.asarray(heads_module.attention_maps(self.heads_))}

    def _summary(self) -> dict[str, Any]:
        return {
            "objective": self.objective_,
            "objective_terms": base.CONVEX_TERMS,
            "certified_optimum": self.certificate_.objective,
            "gap": self.certificate_.gap,
            "status": self.certificate_.status,
            "parameters": base.count_parameters(self.result_.params),
            "history": base.train_history(self.result_.history),
            "details": {
                "kind": self.kind_,
                "beta": self.beta,
                "optimizer": self.optimizer,
                "steps": self.result_.steps,
                "stopped_by_budget": self.result_.stopped_early,
                "train_seconds": self.result_.seconds,
                "excess_over_optimum": self.objective_ - self.certificate_.objective,
                "lower_bound": self.certificate_.lower_bound,
                "margin_above_bound": self.margin_,
            },
        }
