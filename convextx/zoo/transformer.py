"""Zoo entries "softmax-transformer", "gss", "moe": the ``baselines.transformer`` stack.

Reads the task's tokens when it has them (discrete tasks), else its features X (N, n, d) through
a linear embedding. Pooled outputs for classification/regression, per-token outputs for sequence
tasks. Trained by a ``baselines.train.Trainer`` on the sum of losses, without weight decay: its
objective is not the convex program's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from baselines import moe, transformer
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.tasks import Task
from convextx.zoo import base

VIEWS = ("auto", "tokens", "features")
MAPS_SAMPLES = 64  # attention maps are averaged over this many training inputs
DECAY_TERMS = "sum of losses + weight decay on the weight matrices"


@dataclasses.dataclass(frozen=True)
class MatrixDecay:
    """The Trainer penalty beta / 2 sum |W|^2 over the weight matrices (leaves of >= 2 axes);
    equal for equal beta, so trainers built twice share their compiled steps."""

    beta: float

    def __call__(self, params: Any) -> jax.Array:
        leaves = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim >= 2]
        return self.beta / 2 * sum(jnp.sum(leaf**2) for leaf in leaves)


@functools.cache
def _apply(cfg: transformer.TransformerConfig) -> Callable[[Any, Any], jax.Array]:
    """Jitted raw outputs (one per config)."""
    return jax.jit(lambda params, x: transformer.apply(params, x, cfg)[0])


class TransformerModel(base.Model):
    """A ``depth``-layer transformer with token ``mixer`` ("softmax", "gss", "simplex", ...) and
    ``ffn`` ("mlp", "moe" or None), width E, ``heads`` H; ``options`` go to every layer (e.g.
    {"num_experts": 4}).  view: the inputs read, "auto" (tokens if the task has them), "tokens" or
    "features".
    causal: decoder mask.  norm ("pre" | "post"), positions ("learned" | "sinusoidal" |
    "none"), pooling ("mean" | "first" | "last"): ``baselines.transformer.TransformerConfig``.
    optimizer, learning_rate, optimizer_options (e.g. {"b2": 0.98}), warmup_steps (linear
    warmup, then constant), steps, batch_size (None: full batch; capped at N), log_every (an int
    or "log"): ``baselines.optim.make_optimizer`` and ``baselines.train.Trainer``.
    weight_decay: beta / 2 |W|^2 over the weight matrices (LayerNorm gains and biases are not
    decayed), part of the objective (on the sum-of-losses scale); 0 by default.
    checkpoint_dir, checkpoint_every: the Trainer's checkpoints (a run finding one resumes).
    seed: initialization and minibatch order.  restarts: fit from seeds seed, ...,
    seed + restarts - 1 and keep the lowest final objective.  record: ``predict -> {name:
    value}``, called at every logged step (its entries join the history).

    ``budget_seconds`` stops training at the first logged step past it (``log_every`` steps).
    """

    def __init__(
        self,
        *,
        name: str = "softmax-transformer",
        mixer: str = "softmax",
        ffn: str | None = "mlp",
        width: int = 32,
        depth: int = 1,
        heads: int = 2,
        options: dict[str, Any] | None = None,
        view: str = "auto",
        causal: bool = False,
        norm: str = "pre",
        positions: str = "learned",
        pooling: str = "mean",
        optimizer: str = "adam",
        learning_rate: float = 3e-3,
        optimizer_options: dict[str, Any] | None = None,
        warmup_steps: int = 0,
        weight_decay: float = 0.0,
        steps: int = 1000,
        batch_size: int | None = 128,
        log_every: int | str = 50,
        checkpoint_dir: str | None = None,
        checkpoint_every: int = 1000,
        seed: int = 0,
        restarts: int = 1,
        record: Callable[[Callable[[Any], np.ndarray]], dict[str, float]] | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(**base.hyperparameters(locals()))

    def _config(self, task: Task) -> transformer.TransformerConfig:
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r}; expected one of {VIEWS}")
        if self.view == "tokens" and task.tokens_train is None:
            raise ValueError(f"view='tokens' but task {task.name!r} has no tokens")
        use_tokens = self.view == "tokens" or (
            self.view == "auto" and task.tokens_train is not None
        )
        self.input_view = "tokens" if use_tokens else "features"
        output = {"classification": "classification", "regression": "regression"}
        return transformer.TransformerConfig(
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            max_len=task.n_tokens,
            vocab_size=task.vocab_size if use_tokens else None,
            input_dim=None if use_tokens else task.dim,
            mixer=self.mixer,
            ffn=self.ffn,
            causal=self.causal,
            norm=self.norm,
            positions=self.positions,
            pooling=self.pooling,
            output=output.get(task.problem, "token"),
            num_outputs=task.output_dim,
            options=dict(self.options or {}),
        )

    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        cfg = self.config_ = self._config(task)
        inputs = jnp.asarray(self.inputs(task, "train"))
        params = jax.jit(lambda key: transformer.init(key, cfg))(base.init_key(self.seed))
        batch = None if self.batch_size is None else min(self.batch_size, task.n_train)
        optimizer = make_optimizer(
            self.optimizer,
            self.learning_rate,
            warmup_steps=self.warmup_steps,
            steps=self.steps if self.warmup_steps else None,
            options=self.optimizer_options,
        )
        trainer = Trainer(
            # moe.objective: transformer.objective, or for a stochastic MoE router (options
            # "router"), the objective that adds that router's gradient estimator.
            moe.objective(cfg, base.per_sample_loss(task), accuracy=base.integer_targets(task)),
            optimizer,
            penalty=MatrixDecay(self.weight_decay) if self.weight_decay else None,
            batch_size=batch,
        )
        self._apply = _apply(cfg)
        result = self._train(
            trainer,
            params,
            task,
            self._apply,
            budget_seconds,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=self.checkpoint_every,
        )
        self.params_ = result.params
        self.objective_ = result.history["objective"][-1]
        self.maps_inputs_ = inputs[:MAPS_SAMPLES]

    def decision_function(self, inputs: Any) -> np.ndarray:
        """Raw outputs (logits or predictions) for tokens (N, L) or features (N, L, d)
        (``input_view``)."""
        return np.asarray(self._apply(self.params_, jnp.asarray(inputs)))

    def attention_maps(self) -> dict[str, np.ndarray]:
        """{"layer{i}": (H, L, L)} mixing weights averaged over up to 64 training inputs, for
        every layer whose mixer has them (none for GSS)."""
        maps = transformer.attention_maps(self.params_, self.maps_inputs_, self.config_)
        return {
            f"layer{i}": np.asarray(m).mean(axis=0) for i, m in enumerate(maps) if m is not None
        }

    def _summary(self) -> dict[str, Any]:
        return {
            "objective": self.objective_,
            "objective_terms": base.LOSS_TERMS if not self.weight_decay else DECAY_TERMS,
            "parameters": base.count_parameters(self.params_),
            "history": base.train_history(self.result_.history),
            "details": {
                "mixer": self.mixer,
                "ffn": self.ffn,
                "view": self.input_view,
                "steps": self.result_.steps,
                "stopped_by_budget": self.result_.stopped_early,
                "train_seconds": self.result_.seconds,
            },
        }
