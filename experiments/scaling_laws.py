"""Scaling-law extrapolation (arXiv 2209.06640) of zoo models trained on growing subsets.

Does certified convex training scale with data like Adam training of the same architecture,
and like a softmax transformer? On ``cx.tasks.load("digits")`` (10 classes, 1347 train / 450
test samples), each model is trained on nested subsets of the train split (the first N of one
fixed permutation per seed, so a larger subset contains the smaller ones) and scored on the
whole test split: error e_N = 1 - test accuracy. Models (``convextx.zoo``):

- ``convex-fista``: the simplex-attention network (P2, cross-entropy) at its certified optimum,
  beta = 1 (on the sum-of-losses scale, so the penalty weighs less as N grows);
- ``simplex-adam``: the same architecture and objective trained by Adam (full batch);
- ``softmax-transformer``: the zoo's 1-layer softmax transformer (Adam, minibatches of 128).

Then, following the paper, every estimator of ``convextx.scaling`` (M1, M2, M3, M4; e_0 = 0.9,
the error of guessing among 10 classes) is fitted on the smaller sizes, and the RMS log error
of its predictions at the ``held_out`` largest sizes is reported per model and estimator (with
the fitted parameters, e.g. the exponent c). A fit that cannot be made (an error of 0 or above
e_0 at some size) is recorded with its reason.

    python -m experiments.scaling_laws            # CPU default (2 seeds), about 3 minutes
    python -m experiments.scaling_laws --quick    # seconds (tests)
    python -m experiments.scaling_laws --full     # more steps, 3 seeds, up to 1347 samples

Writes experiments/results/scaling_laws[_quick|_full].json after every (model, seed, size) run
(``--resume`` keeps the runs of a matching earlier JSON) and a PNG of the learning curves with
the fitted laws next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

import convextx as cx
from convextx import scaling, zoo
from experiments import _common

NAME = "scaling_laws"
MODELS = ("convex-fista", "simplex-adam", "softmax-transformer")
E0 = 0.9  # random guessing among 10 balanced classes
BETA = 1.0
SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(sizes=[24, 32, 48, 64, 96], held_out=1, seeds=[0], adam_steps=100,
                  transformer_steps=60),
    "default": dict(sizes=[32, 45, 64, 91, 128, 181, 256, 362, 512, 724, 1024], held_out=3,
                    seeds=[0, 1], adam_steps=1500, transformer_steps=600),
    "full": dict(sizes=[32, 45, 64, 91, 128, 181, 256, 362, 512, 724, 1024, 1347], held_out=4,
                 seeds=[0, 1, 2], adam_steps=3000, transformer_steps=1500),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
        parser.add_argument("--sizes", type=int, nargs="+", default=None, help="subset sizes N")
        parser.add_argument("--held-out", type=int, default=None, help="largest sizes held out")

    return _common.parse_args(__doc__.split("\n")[0], extra, argv)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings: the size's defaults overridden by the command line."""
    cfg = dict(SIZES[args.size])
    for name in ("seeds", "sizes", "held_out"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    cfg["sizes"] = sorted(set(cfg["sizes"]))
    if min(cfg["sizes"]) < 1:
        raise SystemExit(f"--sizes must be >= 1; got {cfg['sizes']}")
    if not 1 <= cfg["held_out"] < len(cfg["sizes"]):
        raise SystemExit(f"--held-out must be in [1, {len(cfg['sizes']) - 1}]")
    return cfg | {
        "size": args.size,
        "models": list(args.models),
        "task": "digits",
        "e0": E0,
        "beta": BETA,
        "estimators": list(scaling.ESTIMATORS),
    }


def model_settings(model: str, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """The zoo settings of ``model`` in this experiment."""
    if model == "convex-fista":
        return {"beta": BETA, "seed": seed}
    if model == "simplex-adam":
        return {"beta": BETA, "steps": cfg["adam_steps"], "seed": seed}
    return {"steps": cfg["transformer_steps"], "seed": seed}


def subset(task: cx.tasks.Task, order: np.ndarray, size: int) -> cx.tasks.Task:
    """The task with its train split (features, targets and tokens, if any) cut to the samples
    ``order[:size]``; the test split is kept."""
    keep = order[:size]
    tokens = None if task.tokens_train is None else task.tokens_train[keep]
    return dataclasses.replace(
        task, X_train=task.X_train[keep], y_train=task.y_train[keep], tokens_train=tokens
    )


def train_one(task: cx.tasks.Task, model: str, cfg: dict[str, Any], seed: int, size: int):
    """One (model, seed, size) run: test error, train accuracy, seconds."""
    fitted = zoo.make(model, **model_settings(model, cfg, seed)).fit(task)
    report = fitted.report()
    return {
        "model": model,
        "seed": seed,
        "size": size,
        "test_error": 1.0 - report["test_metric"],
        "train_accuracy": report["train_metric"],
        "wall_seconds": report["wall_seconds"],
    }


def fit_curves(runs: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per model and estimator: the law fitted on the smaller sizes, and its RMS log error at
    the ``held_out`` largest (``convextx.scaling``); {"error": reason} where it cannot be."""
    out: dict[str, Any] = {}
    for model in cfg["models"]:
        group = [r for r in runs if r["model"] == model]
        sizes = np.array([r["size"] for r in group], dtype=float)
        errors = np.array([r["test_error"] for r in group])
        if np.unique(sizes).size < len(cfg["sizes"]):
            continue  # still running
        (x_fit, e_fit), (x_test, e_test) = scaling.split_by_size(sizes, errors, cfg["held_out"])
        out[model] = {
            "fit_sizes": sorted(set(x_fit.tolist())),
            "held_out_sizes": sorted(set(x_test.tolist())),
        }
        for estimator in cfg["estimators"]:
            try:
                fit = scaling.fit_scaling_law(x_fit, e_fit, estimator, e0=E0)
                entry = {
                    "params": fit.params,
                    "fit_rms_log_residual": fit.rms_log_residual,
                    "extrapolation_rms_log_error": scaling.extrapolation_error(fit, x_test, e_test),
                    "predicted_held_out": fit.predict(x_test).tolist(),
                }
            except ValueError as error:
                entry = {"error": str(error)}
            out[model][estimator] = entry
    return out


def plot(result: dict[str, Any], path: Path) -> Path:
    """Test error vs training-set size (log-log), one panel per model: the measured points
    (fitted: filled, held out: open) and every estimator's law fitted on the filled ones."""
    models = list(result["fits"])
    fig, axes = _common.figure(1, max(1, len(models)), size=(4.2, 3.4))
    colors = {"M1": "tab:blue", "M2": "tab:orange", "M3": "tab:purple", "M4": "tab:green"}
    for ax, model in zip(axes[0], models, strict=False):
        fits = result["fits"][model]
        runs = [r for r in result["runs"] if r["model"] == model]
        held = set(fits["held_out_sizes"])
        for r in runs:
            filled = r["size"] not in held
            ax.plot(r["size"], r["test_error"], "o", color="k", mfc="k" if filled else "none")
        grid = np.geomspace(min(fits["fit_sizes"]) / 1.5, max(fits["held_out_sizes"]) * 2, 200)
        for estimator, color in colors.items():
            entry = fits.get(estimator, {})
            if "params" not in entry:
                continue
            label = f"{estimator} (extrap. {entry['extrapolation_rms_log_error']:.3f})"
            ax.plot(grid, scaling.predict(estimator, entry["params"], grid, E0), color=color,
                    label=label)  # fmt: skip
        ax.axvline(max(fits["fit_sizes"]), color="gray", lw=0.5, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training samples N")
        ax.set_ylabel("test error")
        ax.set_title(model)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _common.save_plot(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    task = cx.tasks.load("digits", seed=0)
    if max(cfg["sizes"]) > task.n_train:
        raise SystemExit(f"--sizes must be <= {task.n_train} (digits train split)")
    stored = _common.resumed(args, path, cfg, "runs")
    done = {(r["model"], r["seed"], r["size"]): r for r in stored}
    result: dict[str, Any] = {
        "config": cfg,
        "data": {"N_train": task.n_train, "N_test": task.n_test, "classes": task.num_classes},
        "runs": [],
        "fits": {},
    }
    for seed in cfg["seeds"]:
        order = np.random.default_rng(seed).permutation(task.n_train)
        for model in cfg["models"]:
            for size in cfg["sizes"]:
                run = done.get((model, seed, size))
                if run is None:
                    run = train_one(subset(task, order, size), model, cfg, seed, size)
                    if not args.no_progress:
                        print(f"{model:20s} seed {seed} N={size:5d} error {run['test_error']:.4f}")
                result["runs"].append(run)
                _common.write_json(path, result)
    result["fits"] = fit_curves(result["runs"], cfg)
    _common.write_json(path, result)
    plot(result, path)
    for model, fits in result["fits"].items():
        for estimator in cfg["estimators"]:
            entry = fits[estimator]
            text = (
                f"extrapolation RMS log error {entry['extrapolation_rms_log_error']:.4f}, "
                + ", ".join(f"{k} {v:.4g}" for k, v in entry["params"].items())
                if "params" in entry
                else entry["error"]
            )
            print(f"{model:20s} {estimator}: {text}")
    return result


if __name__ == "__main__":
    main()
