"""The objective every nonconvex baseline trains: a SUM of per-sample losses on a batch.

``Objective``: ``objective(params, batch, key) -> (sum of the batch's losses, aux)``, what
``baselines.train.Trainer`` minimizes (plus its penalty). ``SupervisedObjective`` builds one from
a model's ``predict`` and a per-sample ``loss``. This module imports JAX alone (no optax), so the
models (``baselines.heads``, ``baselines.linear_attention``, ...) load without the trainer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

Params = Any
Batch = Any
Objective = Callable[[Params, Batch, jax.Array | None], tuple[jax.Array, Mapping[str, Any]]]


@dataclasses.dataclass(frozen=True)
class SupervisedObjective:
    """An objective on batches (x, y) for a model ``predict(params, x, key) -> (pred, aux)``.

    ``loss(pred, y)`` returns per-sample losses (B,); the objective is their sum. aux carries the
    model's "aux_loss" when it has one and, with ``accuracy``, "correct": the number of samples
    whose argmax over the last axis of pred equals the integer label y (token outputs count the
    fraction of correct tokens of each sample). Equal when predict, loss and accuracy are.
    """

    predict: Callable[[Params, jax.Array, jax.Array | None], tuple[jax.Array, Mapping[str, Any]]]
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    accuracy: bool = dataclasses.field(default=False, kw_only=True)

    def __call__(
        self, params: Params, batch: Batch, key: jax.Array | None
    ) -> tuple[jax.Array, dict]:
        x, y = batch
        pred, model_aux = self.predict(params, x, key)
        losses = self.loss(pred, y)
        if losses.shape != (x.shape[0],):
            raise ValueError(
                f"loss must return per-sample losses {(x.shape[0],)}, got {losses.shape}"
            )
        aux = {k: model_aux[k] for k in ("aux_loss",) if k in model_aux}
        if self.accuracy:
            hits = (jnp.argmax(pred, axis=-1) == y).reshape(x.shape[0], -1)
            aux["correct"] = hits.mean(axis=1).sum()
        return losses.sum(), aux
