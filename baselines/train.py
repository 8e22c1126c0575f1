"""One training loop for every nonconvex baseline: optax optimizer, minibatches, logging, resume.

The objective is a SUM over samples, as in the convex programs of MATH.md::

    F(params) = sum_i loss_i(params) + penalty(params)

``objective(params, batch, key) -> (sum of the batch's losses, aux)``. Each step on a batch of B
samples minimizes the unbiased estimate of F

    (N / B) * objective(batch) + N * aux["aux_loss"] + penalty(params),

then applies ``project`` (projected gradient, e.g. onto the simplex). Weight decay is an explicit
``penalty``, so the history's "objective" is F on the full data and compares exactly with a
certified convex optimum. ``aux_loss`` (e.g. MoE load balancing) is a per-batch MEAN-type term:
weighted by N it keeps its usual weight relative to the mean loss; it is minimized but kept out
of F and reported apart.

The minibatch order and the objective's keys are pure functions of (seed, step): a run resumed
from a checkpoint retraces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

Params = Any
Batch = Any
Objective = Callable[[Params, Batch, jax.Array | None], tuple[jax.Array, Mapping[str, Any]]]

SCHEDULES = ("constant", "cosine")
CHECKPOINT_FILE = "checkpoint.npz"
_HISTORY_PREFIX = "history/"


class TrainResult(NamedTuple):
    """params after ``steps`` steps; history: column name -> values at the logged steps ("step",
    "time", "objective" = sum_i loss_i + penalty, "train_loss" = mean loss, and when available
    "train_accuracy", "train_aux_loss", the same three for "test_", the eval_fn metrics);
    seconds: time spent in optimizer steps (compilation and evaluation excluded, summed over
    resumed runs); opt_state: the optimizer state; stopped_early: ``early_stop`` ended the run."""

    params: Params
    history: dict[str, list[float]]
    steps: int
    seconds: float
    opt_state: optax.OptState
    stopped_early: bool


def supervised_objective(
    predict: Callable[[Params, jax.Array, jax.Array | None], tuple[jax.Array, Mapping[str, Any]]],
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    accuracy: bool = False,
) -> Objective:
    """An objective on batches (x, y) for a model ``predict(params, x, key) -> (pred, aux)``.

    ``loss(pred, y)`` returns per-sample losses (B,); the objective is their sum. aux carries the
    model's "aux_loss" when it has one and, with ``accuracy``, "correct": the number of samples
    whose argmax over the last axis of pred equals the integer label y (token outputs count the
    fraction of correct tokens of each sample).
    """

    def objective(params: Params, batch: Batch, key: jax.Array | None) -> tuple[jax.Array, dict]:
        x, y = batch
        pred, model_aux = predict(params, x, key)
        losses = loss(pred, y)
        if losses.shape != (x.shape[0],):
            raise ValueError(
                f"loss must return per-sample losses {(x.shape[0],)}, got {losses.shape}"
            )
        aux = {k: model_aux[k] for k in ("aux_loss",) if k in model_aux}
        if accuracy:
            hits = (jnp.argmax(pred, axis=-1) == y).reshape(x.shape[0], -1)
            aux["correct"] = hits.mean(axis=1).sum()
        return losses.sum(), aux

    return objective


def learning_rate_schedule(
    learning_rate: float, schedule: str, warmup_steps: int, steps: int
) -> optax.Schedule:
    """Linear warmup over ``warmup_steps`` (step t uses (t + 1) / warmup of the peak), then
    "constant" or "cosine" decay to 0 at ``steps``."""

    def rate(count: jax.Array) -> jax.Array:
        count = jnp.asarray(count, float)
        value = learning_rate * jnp.minimum(1.0, (count + 1) / max(warmup_steps, 1))
        if schedule == "cosine":
            frac = jnp.clip((count - warmup_steps) / max(steps - warmup_steps, 1), 0.0, 1.0)
            value = value * 0.5 * (1 + jnp.cos(jnp.pi * frac))
        return value

    return rate


_OPTAX: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": partial(optax.sgd, momentum=0.9),
    "adam": optax.adam,
    "adamw": optax.adamw,
}
OPTIMIZERS = tuple(_OPTAX)


def make_optimizer(
    name: str,
    learning_rate: optax.ScalarOrSchedule,
    clip_norm: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> optax.GradientTransformation:
    """optax "sgd", "momentum" (sgd, momentum 0.9), "adam" or "adamw"; ``options`` go to the
    optax constructor (e.g. {"b2": 0.98}). Clipping by global norm comes first when given.
    adamw's decoupled weight decay is part of the optimizer, not of the reported objective."""
    if name not in _OPTAX:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    tx = _OPTAX[name](learning_rate, **(options or {}))
    return tx if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), tx)


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


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | np.integer)
    if bad or value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be an int >= {low}{upper}, got {value!r}")


def _chunks(data: Any, n: int, size: int) -> list[Any]:
    return [jax.tree.map(lambda a, s=s: a[s : s + size], data) for s in range(0, n, size)]


@partial(jax.jit, static_argnames="objective")
def _evaluate(params: Params, batch: Batch, *, objective: Objective) -> tuple[jax.Array, dict]:
    return objective(params, batch, None)


def _metrics(
    objective: Objective, params: Params, chunks: list[Any], n: int, prefix: str
) -> tuple[float, dict[str, float]]:
    """(sum of the losses, {mean loss, accuracy, aux_loss}) over the N samples of ``chunks``."""
    loss, correct, aux_loss = 0.0, None, None
    for chunk in chunks:
        value, aux = _evaluate(params, chunk, objective=objective)
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


@lru_cache(maxsize=64)
def _optimizer(
    name: str,
    learning_rate: float,
    schedule: str,
    warmup_steps: int,
    steps: int,
    clip_norm: float | None,
    options: tuple[tuple[str, Any], ...],
) -> optax.GradientTransformation:
    """One optimizer object per setting, so the jitted steps compile once per setting."""
    rate = learning_rate_schedule(learning_rate, schedule, warmup_steps, steps)
    return make_optimizer(name, rate, clip_norm, dict(options))


@partial(jax.jit, static_argnames=("objective", "tx", "batch_size", "penalty", "project"))
def _run_steps(
    state: Any,
    data: Any,
    keys: jax.Array,
    start: jax.Array,
    stop: jax.Array,
    *,
    objective: Objective,
    tx: optax.GradientTransformation,
    batch_size: int,
    penalty: Callable[[Params], jax.Array] | None,
    project: Callable[[Params], Params] | None,
) -> Any:
    """(params, opt_state) after the steps start..stop-1; keys = (minibatch order, objective)."""
    n = num_samples(data)
    per_epoch = n // batch_size
    order_key, step_key = keys

    def minimized(params: Params, batch: Batch, key: jax.Array) -> jax.Array:
        value, aux = objective(params, batch, key)
        value = (n / batch_size) * value + n * aux.get("aux_loss", 0.0)
        return value if penalty is None else value + penalty(params)

    def batch_at(step: jax.Array) -> Any:
        if batch_size == n:
            return data
        order = jax.random.permutation(jax.random.fold_in(order_key, step // per_epoch), n)
        idx = jax.lax.dynamic_slice(order, ((step % per_epoch) * batch_size,), (batch_size,))
        return jax.tree.map(lambda a: a[idx], data)

    def body(step: jax.Array, state: Any) -> Any:
        params, opt_state = state
        key = jax.random.fold_in(step_key, step)
        grads = jax.grad(minimized)(params, batch_at(step), key)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params if project is None else project(params)), opt_state

    return jax.lax.fori_loop(start, stop, body, state)


def _save(path: Path, state: Any, step: int, seconds: float, history: dict, meta: dict) -> None:
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    arrays |= {_HISTORY_PREFIX + k: np.asarray(v) for k, v in history.items()}
    arrays |= {k: np.asarray(v) for k, v in meta.items()}
    arrays |= {"step": np.asarray(step), "seconds": np.asarray(seconds)}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _load(path: Path, template: Any, meta: dict) -> tuple[Any, int, float, dict]:
    leaves, treedef = jax.tree.flatten(template)
    with np.load(path, allow_pickle=False) as f:
        for k, v in meta.items():
            if f[k].item() != v:
                raise ValueError(f"checkpoint {path} was written with {k}={f[k].item()}, not {v}")
        if sum(k.startswith("leaf_") for k in f.files) != len(leaves):
            raise ValueError(f"checkpoint {path} does not match these params / optimizer")
        loaded = [f[f"leaf_{i:05d}"] for i in range(len(leaves))]
        if any(
            a.shape != np.shape(b) or a.dtype != jnp.result_type(b)
            for a, b in zip(loaded, leaves, strict=True)
        ):
            raise ValueError(f"checkpoint {path} does not match these params / optimizer")
        history = {
            k.removeprefix(_HISTORY_PREFIX): f[k].tolist()
            for k in f.files
            if k.startswith(_HISTORY_PREFIX)
        }
        state = jax.tree.unflatten(treedef, [jnp.asarray(a) for a in loaded])
        return state, int(f["step"]), float(f["seconds"]), history


def train(
    objective: Objective,
    params: Params,
    data: Any,
    *,
    learning_rate: float,
    steps: int,
    optimizer: str = "adam",
    optimizer_options: Mapping[str, Any] | None = None,
    schedule: str = "constant",
    warmup_steps: int = 0,
    batch_size: int | None = None,
    penalty: Callable[[Params], jax.Array] | None = None,
    clip_norm: float | None = None,
    project: Callable[[Params], Params] | None = None,
    eval_fn: Callable[[Params], Mapping[str, float]] | None = None,
    test_data: Any = None,
    eval_batch_size: int | None = None,
    log_every: int | str = "log",
    early_stop: Callable[[dict[str, float]], bool] | None = None,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    progress: bool = True,
) -> TrainResult:
    """Minimize sum_i loss_i + penalty over ``params`` by ``steps`` optimizer steps.

    objective: ``(params, batch, key) -> (sum of the batch's losses, aux)``; key is None when
      evaluating. aux may hold "aux_loss" (minimized, reported apart) and "correct" (count of
      correct samples, for accuracies). See ``supervised_objective``.
    data / test_data: pytrees of arrays with a common leading sample axis N.
    batch_size: B (None: full batch, B = N). Each epoch is a fresh permutation of the N samples
      cut into N // B batches. eval_batch_size: chunk size of the full-data evaluations (default
      N, all at once; set it to bound their memory).
    optimizer, optimizer_options, learning_rate, schedule, warmup_steps, clip_norm: see
      ``make_optimizer`` and ``learning_rate_schedule`` (option values must be hashable).
      The jitted steps are compiled once per (objective, penalty, project, optimizer setting,
      batch size, data shapes): repeated calls, other seeds and resumed runs reuse them.
    project: ``params -> params`` applied after every update (projected gradient).
      objective, penalty and project are static arguments of the jitted steps: hashable
      callables (functions are), reused across calls to reuse the compilation.
    log_every: "log" (log-spaced) or an int; at each logged step the history gets the full-data
      objective and metrics, eval_fn(params)'s entries, and early_stop(record) may end the run.
    checkpoint_dir: when given, a checkpoint (params, optimizer state, step, history, seconds) is
      written there every ``checkpoint_every`` steps and at the end, and a run finding one there
      resumes from it (same seed, batch size and N required; keeping the other settings, e.g.
      ``steps`` for a cosine schedule, is the caller's part).
    """
    for name, fn in (("objective", objective), ("penalty", penalty), ("project", project)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    n = num_samples(data, "data")
    n_test = None if test_data is None else num_samples(test_data, "test_data")
    _check_finite(data, "data")
    _check_finite(test_data, "test_data")
    _check_int("steps", steps, 0)
    _check_int("warmup_steps", warmup_steps, 0, steps)
    _check_int("seed", seed, 0)
    _check_int("checkpoint_every", checkpoint_every, 1)
    batch = n if batch_size is None else batch_size
    _check_int("batch_size", batch, 1, n)
    eval_batch = n if eval_batch_size is None else eval_batch_size
    _check_int("eval_batch_size", eval_batch, 1)
    if log_every != "log":
        _check_int("log_every", log_every, 1)
    if not isinstance(learning_rate, numbers.Real) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm!r}")
    options = tuple(sorted((optimizer_options or {}).items()))
    tx = _optimizer(optimizer, learning_rate, schedule, warmup_steps, steps, clip_norm, options)

    data = jax.tree.map(jnp.asarray, data)
    state = (params, jax.jit(tx.init)(params))  # one compilation, not one per leaf shape
    step, seconds, history = 0, 0.0, {}
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"seed": seed, "batch_size": batch, "num_samples": n}
    if path is not None and path.exists():
        state, step, seconds, history = _load(path, state, meta)

    keys = jax.random.split(jax.random.key(seed))
    run = partial(
        _run_steps, objective=objective, tx=tx, batch_size=batch, penalty=penalty, project=project
    )
    jax.block_until_ready(run(state, data, keys, jnp.int32(step), jnp.int32(step)))  # compile
    train_chunks = _chunks(data, n, eval_batch)
    test_chunks = None if test_data is None else _chunks(test_data, n_test, eval_batch)

    def record() -> dict[str, float]:
        loss, train_metrics = _metrics(objective, state[0], train_chunks, n, "train")
        if penalty is not None:
            loss += float(jax.jit(penalty)(state[0]))
        entry = {"step": step, "time": seconds, "objective": loss, **train_metrics}
        if test_chunks is not None:
            entry |= _metrics(objective, state[0], test_chunks, n_test, "test")[1]
        if eval_fn is not None:
            entry |= {k: float(v) for k, v in eval_fn(state[0]).items()}
        for k, v in entry.items():
            history.setdefault(k, []).append(v)
        return entry

    logs = log_steps(steps, log_every)
    events = sorted(set(logs) | set(range(checkpoint_every, steps, checkpoint_every)))
    chunk = max(1, steps // 100)  # keeps the progress bar moving between far-apart events
    stopped = False
    if step in logs and (not history or history["step"][-1] != step):
        entry = record()
        stopped = early_stop is not None and early_stop(entry)
    bar = tqdm(total=steps, initial=step, disable=not progress, desc="train")
    while step < steps and not stopped:
        stop = min(min(e for e in events if e > step), step + chunk)
        tic = time.perf_counter()
        state = jax.block_until_ready(run(state, data, keys, jnp.int32(step), jnp.int32(stop)))
        seconds += time.perf_counter() - tic
        bar.update(stop - step)
        step = stop
        if step in logs:
            entry = record()
            bar.set_postfix(objective=f"{entry['objective']:.4g}")
            stopped = early_stop is not None and early_stop(entry)
        if path is not None and (step % checkpoint_every == 0 or stopped or step == steps):
            _save(path, state, step, seconds, history, meta)
    bar.close()
    return TrainResult(state[0], history, step, seconds, state[1], stopped)
