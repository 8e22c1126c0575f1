"""The benchmark harness: a grid of (task, model, seed) runs through the zoo, resumable.

::

    from convextx import bench
    result = bench.run(["digits", "student_teacher"], ["convex-fista", "simplex-adam"], [0, 1],
                       "results/bench")
    result.ran, result.skipped, result.ignored, result.rows

Everything is checked before the first run: names, seeds, budget, device, the output folder,
each task built once with its settings, each model constructed with its settings (and its
``validate()`` where it has one; settings named beta, learning_rate, tol, steps and max_iter
must be in range). A bad argument raises there, with nothing run or stored.

The store (``convextx._store``): each finished run is appended at once as one JSON line to
``OUT/runs.jsonl``: a ``Model.report()`` plus task, model, seed, the settings used, "config"
(the run's whole configuration: task and its settings, model and its settings, seed, budget,
device, convextx version; display-only settings such as "progress" aside), "key" (a hash of
the canonical JSON of "config") and "writer" ("bench" or "demo": which command wrote it). The
file is only appended to, and the latest row of each key wins, so a killed grid keeps its runs
and a store written twice counts each configuration once. A rerun skips every configuration
whose latest row succeeded and retries those whose latest row is an "error"; stored runs of
other configurations (another setting, budget, device or version) are ignored and counted in
``BenchResult.ignored``. One process at a time writes a folder (``OUT/.lock``).

After the grid, ``OUT/leaderboard.md``, ``OUT/objective_<task>.png`` (first seed) and
``OUT/test_metric.png`` are rewritten atomically from the runs of the current grid only. Each
row of a classifier holds "test_ece", its test split's expected calibration error
(``calibration_error``; None for regression), a column of the leaderboard.

A size sweep (``sizes``, ``convextx bench --sizes 64,128,...``) runs every (task, seed, model)
at each training-set size (``learning_curves.subsample``; "train_size" in the configuration
and the row), fits every scaling law of ``convextx.scaling`` per (task, model) on the smaller
sizes and scores its extrapolation at the ``held_out`` largest (``learning_curves.fit_rows``):
``OUT/scaling.json``, ``OUT/scaling_<task>.png`` and two tables under the leaderboard, which
(like the other plots) shows the runs at the largest size.

Nothing is deleted, and nothing that the command did not write is overwritten: a bench adds to
a folder's runs.jsonl but refuses (``BenchError``) a folder holding a leaderboard or plots and
no runs; the demo refuses a folder holding any of them unless every stored run was written by
the demo. ``force=True`` (``--force``) lifts these refusals.

The seed selects the task's split / draw (its ``seed`` setting) and the model's initialization.
A task given as a ``Task`` (``given_tasks``: e.g. ``tasks.from_arrays`` of a user's arrays) is the
same for every seed; its configuration holds a fingerprint of its arrays instead of settings, so
a rerun on other arrays of the same name computes its runs afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from convextx import _store, calibration, learning_curves, report, tasks, zoo
from convextx._store import BenchError
from convextx.zoo.base import check_budget, json_safe

RUNS_FILE = "runs.jsonl"
LEADERBOARD_FILE = "leaderboard.md"
METRIC_PLOT = "test_metric.png"
SCALING_FILE = "scaling.json"  # the learning curves and their fits of a ``sizes`` grid
PLOT_KINDS = ("objective", "suboptimality", "scaling")  # per-task plots: <kind>_<task>.png
DEVICES = ("cpu", "gpu")
HISTORY_POINTS = 200  # histories are thinned to at most this many points per run
DISPLAY_SETTINGS = ("progress",)  # model settings that change what is shown, not the result

DEMO_MODELS = ("convex-fista", "simplex-adam", "softmax-transformer")
DEMO_BETA = 10.0


@dataclass(frozen=True)
class BenchResult:
    """ran: runs computed now; retried: how many of them had a stored "error".  skipped:
    successful runs found in runs.jsonl.  ignored: stored runs of other configurations (not in
    rows).  rows: the grid's runs (latest row per configuration, grid order).  files: what was
    written.  curves: with ``sizes``, {task: {model: ``learning_curves.fit_curve``}} (also in
    scaling.json); else None."""

    ran: int
    skipped: int
    rows: list[dict[str, Any]]
    files: list[Path]
    ignored: int
    retried: int
    curves: dict[str, dict[str, dict[str, Any]]] | None = None


@dataclass(frozen=True)
class _Run:
    """One cell of the grid: what to run (size: the training-set size, None for the whole train
    split), its whole configuration and that configuration's key."""

    task: str
    seed: int
    size: int | None
    model: str
    task_cfg: dict[str, Any]
    model_cfg: dict[str, Any]
    config: dict[str, Any]
    key: str


@dataclass(frozen=True)
class _Plan:
    """A checked grid: its runs in (task, seed, size, model) order, the device, the budget, the
    tasks built while checking (by (task, seed), reused by the first runs), and for a size sweep
    the sizes, how many are held out and each task's chance error (``learning_curves``)."""

    runs: list[_Run]
    task_names: list[str]
    device: jax.Device
    budget_seconds: float | None
    prebuilt: dict[tuple[str, int], tasks.Task]
    given: dict[str, tasks.Task]
    sizes: list[int] | None
    held_out: int
    chance: dict[str, float]


def check_names(kind: str, given: Sequence[str], valid: Sequence[str]) -> list[str]:
    """``given`` as a list; ValueError naming the unknown ones and listing the valid ones."""
    given = list(given)
    unknown = [name for name in given if name not in valid]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; expected names from {sorted(valid)}")
    if not given or len(set(given)) != len(given):
        raise ValueError(f"{kind} must be a non-empty list of distinct names; got {given}")
    return given


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list of ints; ValueError unless they are distinct ints >= 0."""
    seeds = list(seeds)
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0]
    if not seeds or bad or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints >= 0; got {seeds}")
    return [int(s) for s in seeds]


def select_device(name: str) -> jax.Device:
    """The first JAX device of platform ``name`` ("cpu" | "gpu"); ValueError if there is none."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; expected one of {DEVICES}")
    try:
        return jax.devices(name)[0]
    except RuntimeError:
        found = sorted({d.platform for d in jax.devices()})
        raise ValueError(
            f"device {name!r} requested but JAX sees no {name.upper()} (platforms: {found}); "
            "install a CUDA-enabled jaxlib or use --device cpu"
        ) from None


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """Every run of a runs.jsonl in file order, duplicates included ([] if it does not exist).
    A line cut short by a killed run, or one that is not a run's JSON object, is skipped with a
    warning naming the file and line."""
    return _store.read_rows(Path(path))


def _thin(history: Mapping[str, list[float]], points: int) -> dict[str, list[float]]:
    """``history`` with at most ``points`` evenly spaced entries per series (ends kept)."""
    size = len(history["time"])
    keep = (
        np.unique(np.linspace(0, size - 1, points).round().astype(int)) if size > points else None
    )
    return {k: v if keep is None else [v[i] for i in keep] for k, v in history.items()}


def calibration_error(model: zoo.Model, task: tasks.Task) -> float | None:
    """Top-label expected calibration error (``calibration.DEFAULT_BINS`` equal-width bins) of
    a fitted model's ``predict_proba`` on the test split of ``task``, tokens pooled
    (probabilities (N, n, K) as (N n, K) against labels (N n,)); None for float targets and for
    a diverged model or one whose probabilities are not finite."""
    if not model.integer_targets_ or model.diverged_at_ is not None:
        return None
    probs = model.predict_proba(model.inputs(task, "test"))
    probs = probs.reshape(-1, probs.shape[-1])
    if not np.isfinite(probs).all():
        return None
    return calibration.expected_calibration_error(probs, np.asarray(task.y_test).reshape(-1))


def run_one(
    task: tasks.Task,
    model: str,
    seed: int,
    model_cfg: Mapping[str, Any],
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """One run as a runs.jsonl row (without "task_cfg" and the store's fields): the model's
    report and "test_ece" (``calibration_error``), or an "error" if fitting raised."""
    row: dict[str, Any] = {"task": task.name, "model": model, "seed": seed}
    built = zoo.make(model, **{"seed": seed, **model_cfg})  # bad settings raise here, not logged
    try:
        fitted = built.fit(task, budget_seconds=budget_seconds)
        report_ = fitted.report() | {"test_ece": calibration_error(fitted, task)}
    except Exception as error:  # a benchmark records the failed run and goes on
        return row | {"error": f"{type(error).__name__}: {error}", "model_cfg": dict(model_cfg)}
    report_["history"] = _thin(report_["history"], HISTORY_POINTS)
    return row | report_ | {"model_cfg": dict(model_cfg)}


def _largest_size(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a size sweep at its largest training-set size, and every failed row."""
    largest = max(row["train_size"] for row in rows)
    return [row for row in rows if row["train_size"] == largest or "error" in row]


def _write_curves(curves: dict[str, dict[str, dict[str, Any]]], out: Path) -> list[Path]:
    """scaling.json (``curves``) and scaling_<task>.png (``report.plot_scaling``) per task."""
    text = json.dumps(json_safe(curves), indent=1) + "\n"
    files = [_store.write_text(out / SCALING_FILE, text)]
    for task, models in curves.items():
        files.append(report.plot_scaling(models, out / f"scaling_{task}.png", task))
    return files


def write_outputs(
    rows: Sequence[dict[str, Any]],
    out: Path,
    curves: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> list[Path]:
    """leaderboard.md, objective_<task>.png and suboptimality_<task>.png (each task's first
    seed; the latter where a run has a certified optimum) and test_metric.png of ``rows`` (the
    caller chooses them: ``run`` passes the current grid's), each written atomically. With
    ``curves`` (a size sweep's: {task: {model: ``learning_curves.fit_curve``}}) these show the
    runs at the largest training-set size (and every failed run), leaderboard.md gains
    ``report.scaling_tables``, and scaling.json and scaling_<task>.png are written."""
    rows = rows if curves is None else _largest_size(rows)
    board = report.leaderboard(rows)
    board += "" if curves is None else "\n" + report.scaling_tables(curves)
    files = [_store.write_text(out / LEADERBOARD_FILE, board)]
    done = [r for r in rows if "error" not in r]
    for task in dict.fromkeys(r["task"] for r in done):
        first = min(r["seed"] for r in done if r["task"] == task)
        chosen = [r for r in done if r["task"] == task and r["seed"] == first]
        title = f"{task}, seed {first}"
        files.append(report.plot_objective(chosen, out / f"objective_{task}.png", title))
        suboptimality = report.plot_suboptimality(chosen, out / f"suboptimality_{task}.png", title)
        files += [suboptimality] if suboptimality is not None else []
    if done:
        files.append(report.plot_metric(done, out / METRIC_PLOT))
    return files + ([] if curves is None else _write_curves(curves, out))


def _check_settings(
    name: str, settings: Mapping[str, Mapping[str, Any]] | None, grid: list[str]
) -> dict[str, dict[str, Any]]:
    """``settings`` as plain dicts; ValueError for names outside ``grid`` or a "seed" setting."""
    settings = {k: dict(v) for k, v in (settings or {}).items()}
    extra = sorted(set(settings) - set(grid))
    if extra:
        raise ValueError(f"{name} has settings for {extra}, which are not in the grid {grid}")
    if any("seed" in values for values in settings.values()):
        raise ValueError(f"{name} must not set 'seed': the seeds come from the seeds argument")
    return settings


def _positive(value: Any) -> bool:
    """Whether ``value`` is a finite number > 0 (bools are not numbers here)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _positive_or_none(value: Any) -> bool:
    """Whether ``value`` is None or a finite number > 0."""
    return value is None or _positive(value)


def _count_from(minimum: int) -> Callable[[Any], bool]:
    """A check: an int (not a bool) >= ``minimum``."""
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


#: model settings checked by name before the grid: setting -> (check, what is expected)
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "beta": (_positive, "a finite number > 0"),
    "learning_rate": (_positive_or_none, "a finite number > 0 or null"),
    "tol": (_positive_or_none, "a finite number > 0 or null"),
    "steps": (_count_from(0), "an int >= 0"),
    "max_iter": (_count_from(1), "an int >= 1"),
}


@contextlib.contextmanager
def _naming(what: str) -> Iterator[None]:
    """Prefix ``what`` to a TypeError / ValueError raised in the block (keeping its class)."""
    try:
        yield
    except (TypeError, ValueError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        raise kind(f"{what}: {error}") from error


def _check_model(name: str, settings: Mapping[str, Any], seed: int) -> None:
    """Construct model ``name`` with ``settings`` and run its ``validate()`` if it has one;
    ValueError naming a setting out of range (``_RANGES``), TypeError for unknown settings."""
    for setting, value in settings.items():
        if setting in _RANGES and not _RANGES[setting][0](value):
            raise ValueError(
                f"model {name!r}: setting {setting!r} must be {_RANGES[setting][1]}; got {value!r}"
            )
    with _naming(f"model {name!r} with settings {dict(settings)}"):
        validate = getattr(zoo.make(name, **{"seed": seed, **settings}), "validate", None)
        if callable(validate):
            validate()


def fingerprint(task: tasks.Task) -> str:
    """SHA-256 of a task's splits: their dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for array in (task.X_train, task.y_train, task.X_test, task.y_test):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_given(given: Mapping[str, tasks.Task] | None) -> dict[str, tasks.Task]:
    """``given`` as a dict; TypeError unless it maps each task's own name to a ``Task``,
    ValueError for a name the registry has."""
    given = dict(given or {})
    wrong = [name for name, task in given.items() if not isinstance(task, tasks.Task)]
    if wrong:
        raise TypeError(f"given_tasks must map names to Task objects; not for {wrong}")
    renamed = [name for name, task in given.items() if task.name != name]
    if renamed:
        raise ValueError(f"given_tasks must map each task's own name to it; not for {renamed}")
    taken = sorted(set(given) & set(tasks.names()))
    if taken:
        raise ValueError(f"given tasks {taken} have the names of registered tasks; rename them")
    return given


def _load_task(name: str, seed: int, settings: Mapping[str, Any]) -> tasks.Task:
    """``tasks.load(name, seed=seed, **settings)``, errors naming the task and its settings."""
    with _naming(f"task {name!r} with settings {dict(settings)}"):
        return tasks.load(name, seed=seed, **settings)


def _cell(
    task: str,
    seed: int,
    size: int | None,
    model: str,
    task_cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    shared: Mapping[str, Any],
) -> _Run:
    """The run of one grid cell, keyed on its whole configuration (``shared``: budget, device,
    version; "train_size" only in a size sweep, so the keys of whole-split runs stay)."""
    config = {
        "task": task,
        "task_cfg": task_cfg,
        "model": model,
        "model_cfg": {k: v for k, v in model_cfg.items() if k not in DISPLAY_SETTINGS},
        "seed": seed,
        **({} if size is None else {"train_size": size}),
        **shared,
    }
    return _Run(task, seed, size, model, task_cfg, model_cfg, config, _store.config_key(config))


def _plan(
    task_names: Sequence[str],
    models: Sequence[str],
    seeds: Sequence[int],
    task_cfg: Mapping[str, Mapping[str, Any]] | None,
    model_cfg: Mapping[str, Mapping[str, Any]] | None,
    budget_seconds: float | None,
    device: str,
    given_tasks: Mapping[str, tasks.Task] | None = None,
    sizes: Sequence[int] | None = None,
    held_out: int = 1,
) -> _Plan:
    """Check every argument (see the module docstring) and lay out the grid."""
    given = _check_given(given_tasks)
    sizes = None if sizes is None else learning_curves.check_sizes(sizes, held_out)
    task_names = check_names("tasks", task_names, [*tasks.names(), *given])
    models = check_names("models", models, zoo.names())
    seeds = check_seeds(seeds)
    task_cfg = _check_settings("task_cfg", task_cfg, [t for t in task_names if t not in given])
    model_cfg = _check_settings("model_cfg", model_cfg, models)
    budget = check_budget(budget_seconds)
    target = select_device(device)
    for model in models:
        _check_model(model, model_cfg.get(model, {}), seeds[0])
    registered = [t for t in task_names if t not in given]
    prebuilt = {(t, seeds[0]): _load_task(t, seeds[0], task_cfg.get(t, {})) for t in registered}
    chance: dict[str, float] = {}
    if sizes is not None:
        for name, task in ({t: prebuilt[(t, seeds[0])] for t in registered} | given).items():
            learning_curves.check_train_sizes(sizes, task)
            chance[name] = learning_curves.chance_error(task)
    task_cfg |= {name: {"fingerprint": fingerprint(task)} for name, task in given.items()}
    shared = {"budget_seconds": budget, "device": device, "version": _store.package_version()}
    runs = [
        _cell(t, s, n, m, task_cfg.get(t, {}), model_cfg.get(m, {}), shared)
        for t in task_names
        for s in seeds
        for n in sizes or [None]
        for m in models
    ]
    return _Plan(runs, task_names, target, budget, prebuilt, given, sizes, held_out, chance)


def _check_folder(out: Path) -> Path:
    """``out``, checked to be (or to be creatable as) a writable folder; ValueError if not."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"out {out}: {existing} is a file; expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"out {out}: the folder {existing} is not writable")
    return out


def _derived_files(out: Path, task_names: Sequence[str]) -> list[Path]:
    """The files a grid over ``task_names`` rewrites in ``out``."""
    plots = [out / f"{kind}_{task}.png" for task in task_names for kind in PLOT_KINDS]
    return [out / LEADERBOARD_FILE, out / METRIC_PLOT, out / SCALING_FILE, *plots]


def _check_owner(
    out: Path, task_names: Sequence[str], stored: list[dict], writer: str, force: bool
) -> None:
    """BenchError unless ``writer`` ("bench" | "demo") may write into ``out``: it holds none
    of the store's files, or a store it may add to (a bench: any store with runs; the demo: a
    store whose every run the demo wrote), or ``force``."""
    foreign = [row for row in stored if row.get("writer") != writer]
    if force or (stored and (writer == "bench" or not foreign)):
        return
    present = [p.name for p in [out / RUNS_FILE, *_derived_files(out, task_names)] if p.exists()]
    if present:
        what = (
            f"{out / RUNS_FILE} holds {len(foreign)} runs"
            if stored
            else f"{out} holds {present}, files"
        )
        raise BenchError(
            f"{what} that `convextx {writer}` did not write; use another output folder, or "
            f"--force (force=True) to add this {writer}'s runs to {RUNS_FILE} and rewrite "
            f"{LEADERBOARD_FILE} and the plots (nothing is deleted)"
        )


def _other_configurations(stored: Sequence[dict], keys: set[str]) -> int:
    """Stored runs outside the grid: distinct keys not in ``keys``, plus rows without a key."""
    keyed = {row["key"] for row in stored if "key" in row}
    return len(keyed - keys) + sum("key" not in row for row in stored)


def _needs_run(stored: dict[str, Any] | None) -> bool:
    """Whether a cell whose latest stored row is ``stored`` (None: none) must be run."""
    return stored is None or "error" in stored


def _cell_task(task: tasks.Task, cell: _Run) -> tasks.Task:
    """What ``cell`` trains on: ``task``, or in a size sweep its ``learning_curves.subsample``
    at the cell's size (by the cell's seed)."""
    return task if cell.size is None else learning_curves.subsample(task, cell.size, cell.seed)


def _curves(plan: _Plan, rows: list[dict[str, Any]]) -> dict[str, dict[str, dict]] | None:
    """The learning curves of a size sweep's rows (``learning_curves.fit_rows``); None when
    ``plan`` has no sizes."""
    if plan.sizes is None:
        return None
    return learning_curves.fit_rows(rows, plan.held_out, plan.chance)


def _compute(
    todo: Sequence[_Run], plan: _Plan, path: Path, view: dict, writer: str, progress: bool
) -> None:
    """Run ``todo`` in order, appending each row to ``path`` at once and entering it in
    ``view``; one task in memory at a time (``todo`` is ordered by (task, seed))."""
    loaded, task = None, None
    with jax.default_device(plan.device):
        bar = tqdm(todo, desc="bench", unit="run", disable=not progress)
        for cell in bar:
            size = "" if cell.size is None else f" / N={cell.size}"
            bar.set_postfix_str(f"{cell.task} / {cell.model} / seed {cell.seed}{size}")
            if loaded != (cell.task, cell.seed):
                loaded = (cell.task, cell.seed)
                task = (
                    plan.given.get(cell.task)
                    or plan.prebuilt.pop(loaded, None)
                    or _load_task(cell.task, cell.seed, cell.task_cfg)
                )
            data = _cell_task(task, cell)
            row = run_one(data, cell.model, cell.seed, cell.model_cfg, plan.budget_seconds)
            row |= {} if cell.size is None else {"train_size": cell.size}
            row |= {
                "task_cfg": cell.task_cfg,
                "config": cell.config,
                "key": cell.key,
                "writer": writer,
            }
            _store.append_row(path, row)
            view[cell.key] = row


def _execute(
    plan: _Plan, out: Path, writer: str, resume: bool, force: bool, progress: bool
) -> BenchResult:
    """Run the cells of ``plan`` that ``out``'s store lacks (all of them if not ``resume``),
    under the folder's lock, then rewrite the outputs from the grid's runs."""
    _check_folder(out).mkdir(parents=True, exist_ok=True)
    path = out / RUNS_FILE
    with _store.locked(out):
        stored = read_runs(path)
        _check_owner(out, plan.task_names, stored, writer, force)
        view = _store.latest(stored)
        todo = [c for c in plan.runs if not resume or _needs_run(view.get(c.key))]
        retried = sum("error" in view.get(c.key, {}) for c in todo)
        _compute(todo, plan, path, view, writer, progress)
        rows = [view[cell.key] for cell in plan.runs]
        curves = _curves(plan, rows)
        files = [path, *write_outputs(rows, out, curves)]
    return BenchResult(
        ran=len(todo),
        skipped=len(plan.runs) - len(todo),
        rows=rows,
        files=files,
        ignored=_other_configurations(stored, {cell.key for cell in plan.runs}),
        retried=retried,
        curves=curves,
    )


def run(
    task_names: Sequence[str],
    models: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    task_cfg: Mapping[str, Mapping[str, Any]] | None = None,
    model_cfg: Mapping[str, Mapping[str, Any]] | None = None,
    budget_seconds: float | None = None,
    device: str = "cpu",
    resume: bool = True,
    force: bool = False,
    progress: bool = True,
    given_tasks: Mapping[str, tasks.Task] | None = None,
    sizes: Sequence[int] | None = None,
    held_out: int = 1,
) -> BenchResult:
    """Run every (task, model, seed) whose configuration ``out``/runs.jsonl lacks or holds as
    failed, then rewrite the outputs from this grid's runs (see the module docstring).

    task_cfg / model_cfg: settings per task / model name (``tasks.load`` / ``zoo.make``
    keywords; the seed comes from ``seeds``). budget_seconds: per run (``Model.fit``).
    device: "cpu" | "gpu" (ValueError if JAX has no such device). resume=False recomputes
    every run of the grid; the new rows are appended and supersede the stored ones (nothing is
    deleted). force: write into a folder holding a leaderboard or plots but no runs.
    given_tasks: tasks by name that ``task_names`` may name besides the registry's (e.g.
    ``tasks.from_arrays``; no settings; the same split for every seed).
    sizes: a training-set size sweep (``learning_curves``; ints > 0, strictly increasing, at
    least ``learning_curves.FIT_SIZES_NEEDED`` + held_out of them, each <= every task's train
    split): every (task, seed, model) runs at each size on ``learning_curves.subsample`` of the
    train split (the test split whole), and every scaling law is fitted per (task, model) on
    the smaller sizes and scored at the ``held_out`` largest (``BenchResult.curves``,
    scaling.json, scaling_<task>.png, the tables in leaderboard.md).
    Bad arguments raise ValueError / TypeError before any run; a folder held by another
    process or not the bench's raises BenchError.
    """
    plan = _plan(
        task_names,
        models,
        seeds,
        task_cfg,
        model_cfg,
        budget_seconds,
        device,
        given_tasks,
        sizes,
        held_out,
    )
    return _execute(plan, Path(out), "bench", resume, force, progress)


def demo_settings(quick: bool = False, progress: bool = True) -> dict[str, dict[str, Any]]:
    """The demo's model settings: the convex program and the same architecture by Adam at
    beta = DEMO_BETA, and a small softmax transformer; quick: fewer training steps."""
    adam_steps, transformer_steps = (300, 100) if quick else (3000, 1500)
    return {
        "convex-fista": {"beta": DEMO_BETA},
        "simplex-adam": {"beta": DEMO_BETA, "steps": adam_steps, "progress": progress},
        "softmax-transformer": {"steps": transformer_steps, "progress": progress},
    }


def demo(
    out: str | Path = "convextx-demo",
    quick: bool = False,
    progress: bool = True,
    force: bool = False,
) -> BenchResult:
    """The new user's tour: on ``digits``, the certified convex attention classifier, the same
    architecture trained by Adam, and a softmax transformer (``DEMO_MODELS``), each computed
    afresh into ``out`` (runs.jsonl, leaderboard.md, objective_digits.png: objective vs time
    with the certified optimum dashed, test_metric.png).

    The demo's rows are marked "writer": "demo", so a rerun into a folder the demo made just
    adds its new rows; a folder holding a runs.jsonl, leaderboard or plots that the demo did
    not write raises BenchError unless ``force`` (which adds the demo's runs to runs.jsonl and
    rewrites the leaderboard and plots; nothing is deleted)."""
    plan = _plan(["digits"], DEMO_MODELS, [0], None, demo_settings(quick, progress), None, "cpu")
    return _execute(plan, Path(out), "demo", False, force, progress)
