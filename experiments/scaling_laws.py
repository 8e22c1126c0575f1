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
e_0 at some size) is recorded with its reason. The subsets, the fits and the plot are
``convextx.learning_curves`` and ``convextx.report.plot_scaling``, as in
``convextx bench --sizes``.

    python -m experiments.scaling_laws            # CPU default (2 seeds), about 3 minutes
    python -m experiments.scaling_laws --quick    # seconds (tests)
    python -m experiments.scaling_laws --full     # more steps, 3 seeds, up to 1347 samples

Writes experiments/results/scaling_laws[_quick|_full].json after every (model, seed, size) run
(``--resume`` keeps the runs of a matching earlier JSON) and a PNG of the learning curves with
the fitted laws next to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import convextx as cx
from convextx import learning_curves, report, zoo
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
    try:
        cfg["sizes"] = learning_curves.check_sizes(cfg["sizes"], cfg["held_out"])
    except ValueError as error:
        raise SystemExit(str(error)) from None
    return cfg | {
        "size": args.size,
        "models": list(args.models),
        "task": "digits",
        "e0": E0,
        "beta": BETA,
        "estimators": list(learning_curves.ESTIMATORS),
    }


def model_settings(model: str, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """The zoo settings of ``model`` in this experiment."""
    if model == "convex-fista":
        return {"beta": BETA, "seed": seed}
    if model == "simplex-adam":
        return {"beta": BETA, "steps": cfg["adam_steps"], "seed": seed}
    return {"steps": cfg["transformer_steps"], "seed": seed}


def train_one(task: cx.tasks.Task, model: str, cfg: dict[str, Any], seed: int, size: int):
    """One (model, seed, size) run: test error, train accuracy, seconds."""
    fitted = zoo.make(model, **model_settings(model, cfg, seed)).fit(task)
    summary = fitted.report()
    return {
        "model": model,
        "seed": seed,
        "size": size,
        "test_error": learning_curves.metric_error(summary["test_metric"]),
        "train_accuracy": summary["train_metric"],
        "wall_seconds": summary["wall_seconds"],
    }


def fit_curves(runs: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per model, ``learning_curves.fit_curve`` of its runs (every seed): each estimator fitted
    on the smaller sizes and its RMS log error at the ``held_out`` largest."""
    out: dict[str, Any] = {}
    for model in cfg["models"]:
        group = [r for r in runs if r["model"] == model]
        sizes, errors = [r["size"] for r in group], [r["test_error"] for r in group]
        out[model] = learning_curves.fit_curve(sizes, errors, cfg["held_out"], E0)
    return out


def plot(result: dict[str, Any], path: Path) -> Path:
    """Test error vs training-set size, one panel per model, with every fitted law
    (``convextx.report.plot_scaling``), beside the JSON."""
    title = f"{result['config']['task']}: fitted on N <= the dashed line"
    return report.plot_scaling(result["fits"], Path(path).with_suffix(".png"), title)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    task = cx.tasks.load("digits", seed=0)
    try:
        learning_curves.check_train_sizes(cfg["sizes"], task)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    stored = _common.resumed(args, path, cfg, "runs")
    done = {(r["model"], r["seed"], r["size"]): r for r in stored}
    result: dict[str, Any] = {
        "config": cfg,
        "data": {"N_train": task.n_train, "N_test": task.n_test, "classes": task.num_classes},
        "runs": [],
        "fits": {},
    }
    for seed in cfg["seeds"]:
        for model in cfg["models"]:
            for size in cfg["sizes"]:
                run = done.get((model, seed, size))
                if run is None:
                    small = learning_curves.subsample(task, size, seed)
                    run = train_one(small, model, cfg, seed, size)
                    if not args.no_progress:
                        print(f"{model:20s} seed {seed} N={size:5d} error {run['test_error']:.4f}")
                result["runs"].append(run)
                _common.write_json(path, result)
    result["fits"] = fit_curves(result["runs"], cfg)
    _common.write_json(path, result)
    plot(result, path)
    for model, fits in result["fits"].items():
        for estimator in cfg["estimators"]:
            entry = fits.get(estimator) or {"error": fits["error"]}  # no split: fits["error"]
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
