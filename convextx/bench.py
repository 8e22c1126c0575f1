"""The benchmark harness: a grid of (task, model, seed) runs through the zoo, resumable.

::

    from convextx import bench
    result = bench.run(["digits", "student_teacher"], ["convex-fista", "simplex-adam"], [0, 1],
                       "results/bench")
    result.ran, result.skipped, result.rows

Each finished run is appended at once as one JSON line to ``OUT/runs.jsonl`` (a ``Model.report()``
plus task, model, seed and the settings used), so a killed grid keeps its runs and a rerun skips
every (task, model, seed) already there. A run that raises is recorded with its "error" (and
skipped by reruns: delete its line to retry). After the grid, ``OUT/leaderboard.md``,
``OUT/objective_<task>.png`` (first seed) and ``OUT/test_metric.png`` are rewritten from all runs.

The seed selects the task's split / draw (its ``seed`` setting) and the model's initialization.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from convextx import report, tasks, zoo

RUNS_FILE = "runs.jsonl"
LEADERBOARD_FILE = "leaderboard.md"
METRIC_PLOT = "test_metric.png"
DEVICES = ("cpu", "gpu")
HISTORY_POINTS = 200  # histories are thinned to at most this many points per run

DEMO_MODELS = ("convex-fista", "simplex-adam", "softmax-transformer")
DEMO_BETA = 10.0


@dataclass(frozen=True)
class BenchResult:
    """ran / skipped: runs computed now / found in runs.jsonl.  rows: every run in runs.jsonl
    (old and new).  files: what was written."""

    ran: int
    skipped: int
    rows: list[dict[str, Any]]
    files: list[Path]


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
    """The runs of a runs.jsonl ([] if it does not exist). A line cut short by a killed run is
    skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: skipping an unreadable line", stacklevel=2)
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else ""
    prefix = "\n" if text and not text.endswith("\n") else ""  # after a cut-short line
    with path.open("a") as f:
        f.write(prefix + json.dumps(row) + "\n")


def _thin(history: Mapping[str, list[float]], points: int) -> dict[str, list[float]]:
    size = len(history["time"])
    keep = (
        np.unique(np.linspace(0, size - 1, points).round().astype(int)) if size > points else None
    )
    return {k: v if keep is None else [v[i] for i in keep] for k, v in history.items()}


def run_one(
    task: tasks.Task,
    model: str,
    seed: int,
    model_cfg: Mapping[str, Any],
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """One run as a runs.jsonl row (without "task_cfg"): the model's report, or an "error" if
    fitting raised."""
    row: dict[str, Any] = {"task": task.name, "model": model, "seed": seed}
    built = zoo.make(model, **{"seed": seed, **model_cfg})  # bad settings raise here, not logged
    try:
        report_ = built.fit(task, budget_seconds=budget_seconds).report()
    except Exception as error:  # a benchmark records the failed run and goes on
        return row | {"error": f"{type(error).__name__}: {error}", "model_cfg": dict(model_cfg)}
    report_["history"] = _thin(report_["history"], HISTORY_POINTS)
    return row | report_ | {"model_cfg": dict(model_cfg)}


def write_outputs(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """leaderboard.md, objective_<task>.png (each task's first seed) and test_metric.png."""
    board = out / LEADERBOARD_FILE
    board.write_text(report.leaderboard(rows))
    files = [board]
    done = [r for r in rows if "error" not in r]
    for task in dict.fromkeys(r["task"] for r in done):
        first = min(r["seed"] for r in done if r["task"] == task)
        chosen = [r for r in done if r["task"] == task and r["seed"] == first]
        files.append(
            report.plot_objective(chosen, out / f"objective_{task}.png", f"{task}, seed {first}")
        )
    if done:
        files.append(report.plot_metric(done, out / METRIC_PLOT))
    return files


def _check_settings(
    name: str, settings: Mapping[str, Mapping[str, Any]] | None, grid: list[str]
) -> dict[str, dict[str, Any]]:
    settings = {k: dict(v) for k, v in (settings or {}).items()}
    extra = sorted(set(settings) - set(grid))
    if extra:
        raise ValueError(f"{name} has settings for {extra}, which are not in the grid {grid}")
    if any("seed" in values for values in settings.values()):
        raise ValueError(f"{name} must not set 'seed': the seeds come from the seeds argument")
    return settings


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
    progress: bool = True,
) -> BenchResult:
    """Run every (task, model, seed) not yet in ``out``/runs.jsonl, then rewrite the outputs.

    task_cfg / model_cfg: settings per task / model name (``tasks.load`` / ``zoo.make``
    keywords; the seed comes from ``seeds``). budget_seconds: per run (``Model.fit``).
    device: "cpu" | "gpu" (ValueError if JAX has no such device). resume=False starts over
    (deletes runs.jsonl).
    """
    task_names = check_names("tasks", task_names, tasks.names())
    models = check_names("models", models, zoo.names())
    seeds = check_seeds(seeds)
    task_cfg = _check_settings("task_cfg", task_cfg, task_names)
    model_cfg = _check_settings("model_cfg", model_cfg, models)
    for model in models:  # fail on bad settings before any run
        zoo.make(model, **model_cfg.get(model, {}))
    target = select_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUNS_FILE
    if not resume and path.exists():
        path.unlink()
    rows = read_runs(path)
    done = {(r["task"], r["model"], r["seed"]) for r in rows}
    grid = [(t, s, m) for t in task_names for s in seeds for m in models]
    todo = [(t, s, m) for t, s, m in grid if (t, m, s) not in done]
    loaded, task = None, None  # one task in memory at a time: todo is ordered by (task, seed)
    with jax.default_device(target):
        bar = tqdm(todo, desc="bench", unit="run", disable=not progress)
        for task_name, seed, model in bar:
            bar.set_postfix_str(f"{task_name} / {model} / seed {seed}")
            settings = task_cfg.get(task_name, {})
            if loaded != (task_name, seed):
                loaded, task = (task_name, seed), tasks.load(task_name, seed=seed, **settings)
            row = run_one(task, model, seed, model_cfg.get(model, {}), budget_seconds)
            row["task_cfg"] = dict(settings)
            _append(path, row)
            rows.append(row)
    files = [path, *write_outputs(rows, out)]
    return BenchResult(ran=len(todo), skipped=len(grid) - len(todo), rows=rows, files=files)


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
    out: str | Path = "convextx-demo", quick: bool = False, progress: bool = True
) -> BenchResult:
    """The new user's tour: on ``digits``, the certified convex attention classifier, the same
    architecture trained by Adam, and a softmax transformer (``DEMO_MODELS``), from scratch into
    ``out`` (runs.jsonl, leaderboard.md, objective_digits.png: objective vs time with the
    certified optimum dashed, test_metric.png)."""
    return run(
        ["digits"],
        DEMO_MODELS,
        [0],
        out,
        model_cfg=demo_settings(quick, progress),
        resume=False,
        progress=progress,
    )
