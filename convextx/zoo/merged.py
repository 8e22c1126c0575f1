"""Zoo entry "repair-merged": two MLPs on flattened features, aligned, interpolated, REPAIRed.

Two ``baselines.mlp`` classifiers (seeds ``seed`` and ``seed + 1``) are trained by one
``baselines.train.Trainer`` on X (N, n * d); ``baselines.repair.merge`` aligns the second to
the first, interpolates at ``alpha`` and REPAIRs the hidden statistics on the training inputs. The
merged network is the model; the endpoints' test metrics go in the report's details.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from baselines import mlp, repair
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.tasks import Task
from convextx.zoo import base


def flatten(X: Any) -> jax.Array:
    """(N, n, d) -> (N, n * d)."""
    X = jnp.asarray(X)
    return X.reshape(X.shape[0], -1)


class MergedMLPModel(base.Model):
    """REPAIR-merged MLP classifier.

    widths: hidden widths.  optimizer, learning_rate, steps, batch_size (capped at N),
    log_every: ``baselines.optim.make_optimizer`` and ``baselines.train.Trainer`` for each
    endpoint.  method: "activation" | "weight"
    alignment.  alpha: interpolation point in [0, 1].  seed: the first endpoint's seed.

    ``budget_seconds`` is split evenly between the two endpoints' training.
    """

    problems = ("classification",)

    def __init__(
        self,
        *,
        name: str = "repair-merged",
        widths: tuple[int, ...] = (64,),
        optimizer: str = "adam",
        learning_rate: float = 3e-3,
        steps: int = 500,
        batch_size: int | None = 128,
        log_every: int = 50,
        method: str = "activation",
        alpha: float = 0.5,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__(**base.hyperparameters(locals()))

    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        X = flatten(task.X_train)
        data = (X, jnp.asarray(task.y_train))
        cfg = mlp.MLPConfig(X.shape[1], tuple(self.widths), task.num_classes)
        batch = None if self.batch_size is None else min(self.batch_size, task.n_train)
        half = None if budget_seconds is None else budget_seconds / 2
        trainer = Trainer(
            mlp.objective(), make_optimizer(self.optimizer, self.learning_rate), batch_size=batch
        )
        self.endpoints_ = [
            trainer.run(
                mlp.init(base.init_key(seed), cfg),
                data,
                self.steps,
                log_every=self.log_every,
                early_stop=base.wall_clock_stop(half),
                seed=seed,
                progress=self.progress,
            )
            for seed in (self.seed, self.seed + 1)
        ]
        diverged = [r.diverged_at for r in self.endpoints_ if r.diverged_at is not None]
        self.diverged_at_ = diverged[0] if diverged else None
        a, b = (result.params for result in self.endpoints_)
        # non-finite endpoints cannot be aligned: a diverged model keeps the first one
        self.params_ = a if diverged else repair.merge(a, b, X, self.alpha, method=self.method)
        self.objective_ = float(trainer.objective(self.params_, data, None)[0])

    def _certify(self, task: Task) -> None:
        self.endpoint_test_metrics_ = [
            base.score(
                task, "test", np.asarray(mlp.apply(r.params, flatten(task.X_test))).argmax(-1)
            )
            for r in self.endpoints_
        ]

    def decision_function(self, inputs: Any) -> np.ndarray:
        """The merged MLP's logits (N, K) for features X (N, n, d)."""
        return np.asarray(mlp.apply(self.params_, flatten(inputs)))

    def attention_maps(self) -> dict[str, np.ndarray]:
        """{}: an MLP has no attention."""
        return {}

    def _summary(self) -> dict[str, Any]:
        first = self.endpoints_[0]
        return {
            "objective": self.objective_,
            "objective_terms": base.LOSS_TERMS,
            "parameters": base.count_parameters(self.params_),
            "history": base.train_history(first.history),  # the first endpoint's training
            "details": {
                "widths": list(self.widths),
                "method": self.method,
                "alpha": self.alpha,
                "endpoint_test_metrics": self.endpoint_test_metrics_,
                "endpoint_objectives": [r.history["objective"][-1] for r in self.endpoints_],
                "train_seconds": sum(r.seconds for r in self.endpoints_),
            },
        }
