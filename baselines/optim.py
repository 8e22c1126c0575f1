"""The optimizers of the training loop: optax "sgd", "momentum", "adam", "adamw" on a schedule.

``make_optimizer`` returns an ``optax.GradientTransformation`` equal to every other one built
from equal settings (its ``init`` and ``update`` are value-equal callables), so ``Trainer``s
built twice from equal settings share their compiled steps: jax keys the compilations of a
static argument on its equality, not on its identity.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import optax

from solvers import checks

SCHEDULES = ("constant", "cosine")
_OPTAX: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": partial(optax.sgd, momentum=0.9),
    "adam": optax.adam,
    "adamw": optax.adamw,
}
OPTIMIZERS = tuple(_OPTAX)


def learning_rate_schedule(
    learning_rate: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    steps: int | None = None,
) -> optax.Schedule:
    """Linear warmup over ``warmup_steps`` (step t uses (t + 1) / warmup of the peak), then
    "constant" or "cosine" decay to 0 at ``steps``: optax schedules (linear, cosine, joined).
    Arguments as validated by ``make_optimizer``."""
    if schedule == "cosine":
        after = optax.cosine_decay_schedule(learning_rate, max(steps - warmup_steps, 1))
    else:
        after = optax.constant_schedule(learning_rate)
    if warmup_steps == 0:
        return after
    warmup = optax.linear_schedule(learning_rate / warmup_steps, learning_rate, warmup_steps - 1)
    return optax.join_schedules([warmup, after], [warmup_steps])


@dataclass(frozen=True)
class _Settings:
    """Validated settings of ``make_optimizer``; ``build`` makes the optax transformation."""

    name: str
    learning_rate: float
    schedule: str
    warmup_steps: int
    steps: int | None
    clip_norm: float | None
    options: tuple[tuple[str, Hashable], ...]

    def build(self) -> optax.GradientTransformation:
        rate = learning_rate_schedule(
            self.learning_rate, self.schedule, self.warmup_steps, self.steps
        )
        tx = _OPTAX[self.name](rate, **dict(self.options))
        if self.clip_norm is None:
            return tx
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), tx)


@dataclass(frozen=True)
class _Method:
    """``settings.build().<method>`` as a callable equal to every other of equal fields."""

    settings: _Settings
    method: str  # "init" | "update"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.settings.build(), self.method)(*args, **kwargs)


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    schedule: str = "constant",
    warmup_steps: int = 0,
    steps: int | None = None,
    clip_norm: float | None = None,
    options: Mapping[str, Hashable] | None = None,
) -> optax.GradientTransformation:
    """optax "sgd", "momentum" (sgd, momentum 0.9), "adam" or "adamw" with
    ``learning_rate_schedule(learning_rate, schedule, warmup_steps, steps)``.

    steps: the run's length (needed by "cosine", which decays to 0 there; warmup_steps <= steps).
    clip_norm: clip by global norm first.  options: keyword arguments of the optax constructor
    (e.g. {"b2": 0.98}; hashable values). adamw's decoupled weight decay is part of the
    optimizer, not of the reported objective. Equal settings give equal transformations.
    """
    checks.choice("optimizer", name, OPTIMIZERS)
    learning_rate = checks.positive("learning_rate", learning_rate)
    checks.choice("schedule", schedule, SCHEDULES)
    if steps is None and schedule == "cosine":
        raise ValueError("schedule 'cosine' needs steps, the step at which it reaches 0")
    if steps is not None:
        steps = checks.integer("steps", steps, 0)
    warmup_steps = checks.integer("warmup_steps", warmup_steps, 0, steps)
    if clip_norm is not None:
        clip_norm = checks.positive("clip_norm", clip_norm)
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping or None, got {type(options).__name__}")
    items = tuple(sorted((options or {}).items()))
    for key, value in items:
        checks.hashable(f"options[{key!r}]", value)
    settings = _Settings(name, learning_rate, schedule, warmup_steps, steps, clip_norm, items)
    settings.build()  # unknown options fail here, not inside the first compiled step
    return optax.GradientTransformation(_Method(settings, "init"), _Method(settings, "update"))
