"""One trainer for every nonconvex baseline: optax optimizer, minibatches, logging, resume.

The objective is a SUM over samples, as in the convex programs (``convextx.families``)::

    F(params) = sum_i loss_i(params) + penalty(params)

``objective(params, batch, key) -> (sum of the batch's losses, aux)``. Each step on a batch of B
samples minimizes the unbiased estimate of F

    (N / B) * objective(batch) + N * aux["aux_loss"] + penalty(params),

then applies ``project`` (projected gradient, e.g. onto the simplex). Weight decay is an explicit
``penalty``, so the history's "objective" is F on the full data and compares exactly with a
certified convex optimum. ``aux_loss`` (e.g. MoE load balancing) is a per-batch MEAN-type term:
weighted by N it keeps its usual weight relative to the mean loss; it is minimized but kept out
of F and reported apart. ::

    trainer = Trainer(objective, make_optimizer("adam", 1e-2), penalty=penalty, batch_size=64)
    result = trainer.run(params, data, steps=1000, seed=0)   # TrainResult
    state = trainer.update(trainer.init(params, seed=0), data, steps=10)  # TrainState

Compilations: the steps are one module-level jitted loop whose static argument is the Trainer, a
frozen dataclass equal to another when its fields are. ``baselines.optim.make_optimizer`` and the
baselines' objectives and penalties (``heads.objective``, ``heads.WeightDecay``,
``transformer.objective``, ``mlp.objective``, ...) compare equal when their settings do, so runs
with equal settings (other seeds, other data of the same shapes, resumed runs) reuse one
compilation. A plain function or closure equals only itself.

The minibatch order and the objective's keys are pure functions of (seed, step): a run resumed
from a checkpoint retraces the uninterrupted run bit for bit. A run whose objective or params
turn non-finite stops at once with status "diverged".
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from baselines import checkpoint
from baselines.objective import Batch, Objective, Params
from solvers import checks

STATUSES = ("completed", "stopped_early", "diverged")


class TrainState(NamedTuple):
    """params, opt_state, step (int32 scalar: the steps taken) and key (the run's key: the
    minibatch order and the objective's keys derive from (key, step))."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


class TrainResult(NamedTuple):
    """params after ``steps`` steps; history: column name -> values at the logged steps ("step",
    "time", "objective" = sum_i loss_i + penalty, "train_loss" = mean loss, and when available
    "train_accuracy", "train_aux_loss", the same three for "test_", the eval_fn metrics);
    seconds: time spent in optimizer steps (compilation and evaluation excluded, summed over
    resumed runs); opt_state: the optimizer state; stopped_early: ``early_stop`` ended the run;
    status: "completed" | "stopped_early" | "diverged"; diverged_at: the logged step whose
    objective or params were first non-finite (None unless diverged)."""

    params: Params
    history: dict[str, list[float]]
    steps: int
    seconds: float
    opt_state: optax.OptState
    stopped_early: bool
    status: str
    diverged_at: int | None


def log_steps(steps: int, log_every: int | str = "log") -> list[int]:
    """Steps at which to log: 0, ``steps`` and either about 10 log-spaced steps per decade
    ("log") or every ``log_every`` steps."""
    if log_every == "log":
        count = int(np.ceil(10 * np.log10(max(steps, 1)))) + 1
        grid = np.round(np.geomspace(1, max(steps, 1), count)).astype(int)
    else:
        grid = np.arange(0, steps + 1, log_every)
    return sorted({0, steps, *(int(s) for s in grid if s <= steps)})


def num_samples(data: Any, name: str = "data") -> int:
    """N, the common leading axis of the arrays of ``data``; ValueError if none, 0 or mismatched."""
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError(f"{name} holds no arrays")
    shapes = [np.shape(leaf) for leaf in leaves]
    if any(len(shape) == 0 for shape in shapes):
        raise ValueError(f"{name}: every array needs a leading sample axis, got shapes {shapes}")
    counts = {shape[0] for shape in shapes}
    if len(counts) > 1:
        raise ValueError(f"{name}: arrays disagree on the number of samples, got shapes {shapes}")
    count = counts.pop()
    if count == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    return count


def _check_finite(data: Any, name: str) -> None:
    for leaf in jax.tree.leaves(data):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) and not np.isfinite(leaf).all():
            raise ValueError(f"{name} contains NaN or inf")


def _chunks(data: Any, size: int | None) -> tuple[list[Any], int]:
    """(``data`` cut into chunks of ``size`` samples (None: one chunk), N)."""
    n = num_samples(data)
    size = n if size is None else size
    return [jax.tree.map(lambda a, s=s: a[s : s + size], data) for s in range(0, n, size)], n


@partial(jax.jit, static_argnums=0)
def _init_opt_state(optimizer: optax.GradientTransformation, params: Params) -> optax.OptState:
    return optimizer.init(params)  # one compilation, not one per leaf shape


@partial(jax.jit, static_argnums=0)
def _evaluate(objective: Objective, params: Params, batch: Batch) -> tuple[jax.Array, dict]:
    return objective(params, batch, None)


@partial(jax.jit, static_argnums=0)
def _penalty(penalty: Callable[[Params], jax.Array], params: Params) -> jax.Array:
    return penalty(params)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    """Whether every float entry of ``tree`` is finite: a bool scalar."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves] or [True]))


@partial(jax.jit, static_argnums=0)
def _advance(trainer: Trainer, state: TrainState, data: Any, count: jax.Array) -> TrainState:
    """``state`` after ``count`` more steps on ``data`` (leading axis N) by ``trainer``."""
    n = num_samples(data)
    batch_size = n if trainer.batch_size is None else trainer.batch_size
    per_epoch = n // batch_size
    order_key, step_key = jax.random.split(state.key)

    def minimized(params: Params, batch: Batch, key: jax.Array) -> jax.Array:
        value, aux = trainer.objective(params, batch, key)
        value = (n / batch_size) * value + n * aux.get("aux_loss", 0.0)
        return value if trainer.penalty is None else value + trainer.penalty(params)

    def batch_at(step: jax.Array) -> Any:
        if batch_size == n:
            return data
        order = jax.random.permutation(jax.random.fold_in(order_key, step // per_epoch), n)
        idx = jax.lax.dynamic_slice(order, ((step % per_epoch) * batch_size,), (batch_size,))
        return jax.tree.map(lambda a: a[idx], data)

    def body(step: jax.Array, carry: tuple[Params, optax.OptState]) -> Any:
        params, opt_state = carry
        grads = jax.grad(minimized)(params, batch_at(step), jax.random.fold_in(step_key, step))
        updates, opt_state = trainer.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params if trainer.project is None else trainer.project(params)), opt_state

    stop = state.step + count
    params, opt_state = jax.lax.fori_loop(state.step, stop, body, state[:2])
    return TrainState(params, opt_state, stop, state.key)


def _metrics(
    objective: Objective, params: Params, chunks: list[Any], n: int, prefix: str
) -> tuple[float, dict[str, float]]:
    """(sum of the losses, {mean loss, accuracy, aux_loss}) over the N samples of ``chunks``."""
    loss, correct, aux_loss = 0.0, None, None
    for chunk in chunks:
        value, aux = _evaluate(objective, params, chunk)
        loss += float(value)
        if "correct" in aux:
            correct = (correct or 0.0) + float(aux["correct"])
        if "aux_loss" in aux:
            aux_loss = (aux_loss or 0.0) + num_samples(chunk) / n * float(aux["aux_loss"])
    out = {f"{prefix}_loss": loss / n}
    if correct is not None:
        out[f"{prefix}_accuracy"] = correct / n
    if aux_loss is not None:
        out[f"{prefix}_aux_loss"] = aux_loss
    return loss, out


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Minimizes sum_i loss_i + penalty over params by an optax optimizer (module doc).

    objective: ``(params, batch, key) -> (sum of the batch's losses, aux)``; key is None when
      evaluating. aux may hold "aux_loss" (minimized, reported apart) and "correct" (count of
      correct samples, for accuracies). See ``SupervisedObjective``.
    optimizer: an ``optax.GradientTransformation`` (``baselines.optim.make_optimizer``).
    penalty: ``params -> scalar`` added to the objective (e.g. ``heads.WeightDecay``).
    project: ``params -> params`` applied after every update (projected gradient).
    batch_size: B (None: full batch, B = N). Each epoch is a fresh permutation of the N samples
      cut into N // B batches.

    The fields are the static argument of the compiled steps: hashable, and equal across
    Trainers exactly when those should share compilations (see the module doc).
    """

    objective: Objective
    optimizer: optax.GradientTransformation
    penalty: Callable[[Params], jax.Array] | None = None
    project: Callable[[Params], Params] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("objective", "penalty", "project"):
            fn = getattr(self, name)
            if not callable(fn) and (fn is not None or name == "objective"):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if not all(callable(getattr(self.optimizer, m, None)) for m in ("init", "update")):
            raise TypeError(
                "optimizer must be an optax.GradientTransformation (see make_optimizer), got "
                f"{type(self.optimizer).__name__}"
            )
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", checks.integer("batch_size", self.batch_size, 1))
        for field in dataclasses.fields(self):
            checks.hashable(field.name, getattr(self, field.name))

    def init(self, params: Params, seed: int = 0) -> TrainState:
        """The state before the first step of a run with ``seed``."""
        checks.integer("seed", seed, 0)
        opt_state = _init_opt_state(self.optimizer, params)
        return TrainState(params, opt_state, jnp.int32(0), jax.random.key(seed))

    def update(self, state: TrainState, data: Any, steps: int = 1) -> TrainState:
        """``state`` after ``steps`` more optimizer steps on ``data`` (a pytree of arrays with a
        common leading sample axis N >= batch_size), in one compiled loop."""
        n = num_samples(data, "data")
        checks.integer("batch_size", n if self.batch_size is None else self.batch_size, 1, n)
        return _advance(self, state, data, jnp.int32(checks.integer("steps", steps, 0)))

    def run(
        self,
        params: Params,
        data: Any,
        steps: int,
        *,
        seed: int = 0,
        test_data: Any = None,
        eval_fn: Callable[[Params], Mapping[str, float]] | None = None,
        eval_batch_size: int | None = None,
        log_every: int | str = "log",
        early_stop: Callable[[dict[str, float]], bool] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1000,
        progress: bool = True,
    ) -> TrainResult:
        """``steps`` optimizer steps from ``params`` on ``data``, logged and checkpointed.

        data / test_data: pytrees of finite arrays with a common leading sample axis N.
        seed: the minibatch order and the objective's keys (pure functions of (seed, step)).
        eval_batch_size: chunk size of the full-data evaluations (default N, all at once; set it
          to bound their memory).
        log_every: "log" (``log_steps``) or an int; at each logged step the history gets the
          full-data objective and metrics, eval_fn(params)'s entries, and early_stop(record)
          may end the run (status "stopped_early").
        A non-finite logged objective, or params found non-finite after any chunk of steps
        (logged there), ends the run at once: status "diverged", diverged_at that step.
        checkpoint_dir: when given, a checkpoint (params, optimizer state, step, history,
          seconds) is written there every ``checkpoint_every`` steps and at the end, and a run
          finding one there resumes from it (same seed, batch size and N required; keeping the
          other settings, e.g. the optimizer's ``steps`` for a cosine schedule, is the caller's
          part).
        """
        n, batch = self._check_run(data, test_data, steps, eval_batch_size, log_every)
        checks.integer("checkpoint_every", checkpoint_every, 1)
        data = jax.tree.map(jnp.asarray, data)
        evaluation = _Evaluation(
            self,
            _chunks(data, eval_batch_size),
            None if test_data is None else _chunks(test_data, eval_batch_size),
            eval_fn,
        )
        path = None if checkpoint_dir is None else Path(checkpoint_dir) / checkpoint.CHECKPOINT_FILE
        meta = {"seed": seed, "batch_size": batch, "num_samples": n}
        state, seconds, history = _restore(path, self.init(params, seed), meta)
        step = int(state.step)
        jax.block_until_ready(_advance(self, state, data, jnp.int32(0)))  # compile, untimed

        logs = log_steps(steps, log_every)
        events = sorted(set(logs) | set(range(checkpoint_every, steps, checkpoint_every)))
        chunk = max(1, steps // 100)  # keeps the progress bar moving between far-apart events
        bar = tqdm(total=steps, initial=step, disable=not progress, desc="train")

        def log() -> str | None:
            """Record the state in the history; the status it ends the run with, if any."""
            entry = evaluation(state.params, step, seconds)
            for k, v in entry.items():
                history.setdefault(k, []).append(v)
            bar.set_postfix(objective=f"{entry['objective']:.4g}")
            if not (np.isfinite(entry["objective"]) and bool(_all_finite(state.params))):
                return "diverged"
            return "stopped_early" if early_stop is not None and early_stop(entry) else None

        status = None
        if history and not np.isfinite(history["objective"][-1]):
            status = "diverged"  # resumed from the checkpoint of a diverged run
        elif step in logs and (not history or history["step"][-1] != step):
            status = log()
        while step < steps and status is None:
            stop = min(min(e for e in events if e > step), step + chunk)
            tic = time.perf_counter()
            state = jax.block_until_ready(_advance(self, state, data, jnp.int32(stop - step)))
            seconds += time.perf_counter() - tic
            bar.update(stop - step)
            step = stop
            if step in logs or not _all_finite(state.params):
                status = log()
            if path is not None and (step % checkpoint_every == 0 or status or step == steps):
                checkpoint.save(path, state[:2], step, seconds, history, meta)
        bar.close()
        status = status or "completed"
        diverged_at = int(history["step"][-1]) if status == "diverged" else None
        stopped_early = status == "stopped_early"
        params, opt_state = state[:2]
        return TrainResult(
            params, history, step, seconds, opt_state, stopped_early, status, diverged_at
        )

    def _check_run(
        self, data: Any, test_data: Any, steps: int, eval_batch_size: Any, log_every: Any
    ) -> tuple[int, int]:
        """(N, B) after checking ``run``'s data and arguments; ValueError naming the bad one."""
        n = num_samples(data, "data")
        _check_finite(data, "data")
        if test_data is not None:
            num_samples(test_data, "test_data")
            _check_finite(test_data, "test_data")
        checks.integer("steps", steps, 0)
        if eval_batch_size is not None:
            checks.integer("eval_batch_size", eval_batch_size, 1)
        if isinstance(log_every, str):
            checks.choice("log_every", log_every, ("log",))
        else:
            checks.integer("log_every", log_every, 1)
        batch = n if self.batch_size is None else self.batch_size
        return n, checks.integer("batch_size", batch, 1, n)


def _restore(
    path: Path | None, state: TrainState, meta: dict
) -> tuple[TrainState, float, dict[str, list[float]]]:
    """(state, seconds, history) of the checkpoint at ``path`` if there is one (its settings
    must equal ``meta``), else of a fresh run from ``state``."""
    if path is None or not path.exists():
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return state, 0.0, {}
    (params, opt_state), step, seconds, history = checkpoint.load(path, state[:2], meta)
    return (
        state._replace(params=params, opt_state=opt_state, step=jnp.int32(step)),
        seconds,
        history,
    )


@dataclasses.dataclass(frozen=True)
class _Evaluation:
    """The history record of params: full-data objective (losses + penalty) and metrics on the
    train (and test) chunks, and eval_fn's entries."""

    trainer: Trainer
    train: tuple[list[Any], int]  # (chunks, N)
    test: tuple[list[Any], int] | None
    eval_fn: Callable[[Params], Mapping[str, float]] | None

    def __call__(self, params: Params, step: int, seconds: float) -> dict[str, float]:
        objective, penalty = self.trainer.objective, self.trainer.penalty
        loss, train_metrics = _metrics(objective, params, *self.train, "train")
        if penalty is not None:
            loss += float(_penalty(penalty, params))
        entry = {"step": step, "time": seconds, "objective": loss, **train_metrics}
        if self.test is not None:
            entry |= _metrics(objective, params, *self.test, "test")[1]
        if self.eval_fn is not None:
            entry |= {k: float(v) for k, v in self.eval_fn(params).items()}
        return entry
