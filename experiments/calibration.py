"""Calibration of every zoo classifier: ECE before and after temperature scaling, and LATES.

On ``cx.tasks.load("digits")`` (10 classes), the train split is cut once into a fitting part
(80%) and a validation part (20%, ``--val-fraction``); every zoo model that fits
classification (``convextx.zoo``, default settings; the transformer stacks "softmax-
transformer", "gss" and "moe" with ``depth`` layers) is trained on the fitting part. Its logits
(N, 10) on validation and test give (``convextx.calibration``):

- test accuracy, top-label ECE (15 equal-width bins; with its bootstrap standard deviation
  over 200 resamples of the test split) and NLL of softmax(logits);
- temperature scaling: T fitted on the validation NLL, then the test ECE and NLL of
  softmax(logits / T) (accuracy is unchanged);
- for the multi-layer stacks, LATES with two readouts of every block l = 1..depth, both read
  from the pooled representation after block l (the first l blocks through the final LayerNorm
  and pooling the model reads out with): "head", the model's own head (no new parameters),
  and "probe", a logistic regression per block l < depth fitted on the fitting part (the last
  block keeps the model's head in both, so its logits are the model's, checked). Per-layer
  temperatures and a softmax-weighted vote are fitted on the validation NLL; reported with the
  test accuracy, ECE and NLL, the fitted weights and temperatures, and the best single layer
  with its own temperature (chosen on validation) for comparison. Which readout the LATES
  paper attaches to each layer could not be read here; "probe" is the one that exists for
  layers without a shared head (its CNNs).

The logits are each model's ``decision_function`` and the probabilities its ``predict_proba``
(``convextx.zoo.base.Model``: the outputs its ``predict`` takes the argmax of, and their
softmax), as in the ECE column of ``convextx bench``.

    python -m experiments.calibration            # CPU default, about 3 minutes
    python -m experiments.calibration --quick    # seconds (tests)
    python -m experiments.calibration --full     # deeper stacks, 3 seeds (GPU)

Writes experiments/results/calibration[_quick|_full].json after every (model, seed) fit
(``--resume`` keeps the fits of a matching earlier JSON) and a PNG of the test ECE and NLL.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

import convextx as cx
from baselines import transformer
from convextx import calibration as cal
from convextx import zoo
from experiments import _common

NAME = "calibration"
BINS = 15
BOOTSTRAP = 200  # resamples of the test split for the ECE's standard deviation
STACKS = ("softmax-transformer", "gss", "moe")  # the multi-layer entries (LATES)
SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(models=["convex-fista", "softmax-transformer"], depth=2, seeds=[0],
                  settings={"softmax-transformer": {"steps": 30, "width": 16}}),
    "default": dict(models=None, depth=2, seeds=[0], settings={}),
    "full": dict(models=None, depth=4, seeds=[0, 1, 2], settings={}),
}  # fmt: skip


def classifiers() -> list[str]:
    """The zoo entries that fit classification tasks."""
    return [name for name in zoo.names() if "classification" in zoo.make(name).problems]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--models", nargs="+", choices=classifiers(), default=None)
        parser.add_argument("--depth", type=int, default=None, help="layers of the stacks")
        parser.add_argument("--val-fraction", type=float, default=0.2)
        parser.add_argument("--bins", type=int, default=BINS, help="ECE bins")

    args = _common.parse_args(__doc__.split("\n")[0], extra, argv)
    if not 0 < args.val_fraction < 1:
        raise SystemExit("--val-fraction must be in (0, 1)")
    return args


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(SIZES[args.size])
    cfg["models"] = args.models or cfg["models"] or classifiers()
    for name in ("seeds", "depth"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    if cfg["depth"] < 1:
        raise SystemExit("--depth must be >= 1")
    return cfg | {
        "size": args.size,
        "task": "digits",
        "val_fraction": args.val_fraction,
        "bins": args.bins,
    }


def split(task: cx.tasks.Task, val_fraction: float, seed: int):
    """(the task with its train split (features, targets, tokens) cut to the fitting part,
    X_val, y_val)."""
    order = np.random.default_rng(seed).permutation(task.n_train)
    n_val = round(val_fraction * task.n_train)
    val, keep = order[:n_val], order[n_val:]
    tokens = None if task.tokens_train is None else task.tokens_train[keep]
    fit_task = dataclasses.replace(
        task, X_train=task.X_train[keep], y_train=task.y_train[keep], tokens_train=tokens
    )
    return fit_task, task.X_train[val], task.y_train[val]


def layer_features(model: zoo.TransformerModel, X: np.ndarray) -> np.ndarray:
    """(L, N, E): the pooled representation the model's head reads, after each of its L blocks
    (the first l blocks run as a depth-l stack with the same embedding, final norm and pooling,
    and the identity for a head)."""
    cfg, params = model.config_, model.params_
    eye = jnp.eye(cfg.width, dtype=params["head"]["w"].dtype)
    identity = {"w": eye, "b": jnp.zeros(cfg.width, eye.dtype)}
    out = []
    for depth in range(1, cfg.depth + 1):
        mixer = cfg.mixer if isinstance(cfg.mixer, str) else cfg.mixer[:depth]
        prefix_cfg = dataclasses.replace(cfg, depth=depth, mixer=mixer, num_outputs=cfg.width)
        prefix = {**params, "layers": params["layers"][:depth], "head": identity}
        out.append(np.asarray(transformer.apply(prefix, jnp.asarray(X), prefix_cfg)[0]))
    return np.stack(out).astype(np.float64)


def layer_logits(model: zoo.TransformerModel, X: np.ndarray) -> np.ndarray:
    """(L, N, K): the model's own head on ``layer_features`` (the "head" readout)."""
    head = model.params_["head"]
    return layer_features(model, X) @ np.asarray(head["w"], np.float64) + np.asarray(head["b"])


def probe_logits(
    model: zoo.TransformerModel, X_fit: np.ndarray, y_fit: np.ndarray, X: list[np.ndarray]
) -> list[np.ndarray]:
    """The "probe" readout: per block l < L, a multinomial logistic regression (scikit-learn,
    L2 with C = 1) on ``layer_features`` of the fitting split; block L keeps the model's head.
    Returns (L, N, K) logits for each array of ``X``."""
    from sklearn.linear_model import LogisticRegression

    train = layer_features(model, X_fit)
    features = [layer_features(model, x) for x in X]
    heads = [LogisticRegression(max_iter=2000).fit(f, y_fit) for f in train[:-1]]
    out = []
    for x, f in zip(X, features, strict=True):
        probes = [h.decision_function(f_l) for h, f_l in zip(heads, f[:-1], strict=True)]
        out.append(np.stack([*probes, layer_logits(model, x)[-1]]))
    return out


def lates_entry(
    layers_val: np.ndarray, y_val: np.ndarray, layers_test: np.ndarray, y_test: np.ndarray, bins
) -> dict[str, Any]:
    """LATES fitted on the validation readouts (L, N_val, K), scored on the test readouts, and
    the best single layer with its own temperature."""
    lates = cal.fit_lates(layers_val, y_val)
    best = lates.best_layer
    single = cal.fit_temperature(layers_val[best], y_val)
    return {
        "weights": lates.weights.tolist(),
        "temperatures": lates.temperatures.tolist(),
        "val_nll": lates.nll,
        "val_single_layer_nll": lates.single_layer_nll.tolist(),
        "best_layer": best + 1,
        "test": metrics(lates.predict_proba(layers_test), y_test, bins),
        "best_layer_ts_test": metrics(single.predict_proba(layers_test[best]), y_test, bins),
        "layer_test_accuracy": [float(np.mean(z.argmax(1) == y_test)) for z in layers_test],
    }


def metrics(probs: np.ndarray, y: np.ndarray, bins: int) -> dict[str, float]:
    """accuracy, ECE and NLL of probabilities (N, K) against labels (N,), and ece_sd: the
    standard deviation of the ECE over ``BOOTSTRAP`` resamples of the samples (a fixed seed,
    so every model sees the same resamples)."""
    picked = np.maximum(probs[np.arange(len(y)), y], np.finfo(float).tiny)
    draws = np.random.default_rng(0).integers(0, len(y), (BOOTSTRAP, len(y)))
    resampled = [cal.expected_calibration_error(probs[i], y[i], bins) for i in draws]
    return {
        "accuracy": float(np.mean(probs.argmax(1) == y)),
        "ece": cal.expected_calibration_error(probs, y, bins),
        "ece_sd": float(np.std(resampled)),
        "nll": float(-np.mean(np.log(picked))),
    }


def evaluate(model_name: str, seed: int, cfg: dict[str, Any], data: tuple) -> dict[str, Any]:
    """Fit one zoo model on the fitting part and calibrate it on the validation part."""
    fit_task, X_val, y_val, X_test, y_test = data
    settings = {"seed": seed} | cfg["settings"].get(model_name, {})
    if model_name in STACKS:
        settings["depth"] = cfg["depth"]
    model = zoo.make(model_name, **settings).fit(fit_task)
    z_val, z_test = model.decision_function(X_val), model.decision_function(X_test)
    ts = cal.fit_temperature(z_val, y_val)
    entry: dict[str, Any] = {
        "model": model_name,
        "seed": seed,
        "settings": settings,
        "fit_seconds": model.report()["wall_seconds"],
        "before": metrics(model.predict_proba(X_test), y_test, cfg["bins"]),
        "temperature": ts.temperature,
        "val_nll_before": ts.nll_before,
        "val_nll_after": ts.nll_after,
        "after_ts": metrics(ts.predict_proba(z_test), y_test, cfg["bins"]),
    }
    if model_name in STACKS:
        layers_val, layers_test = layer_logits(model, X_val), layer_logits(model, X_test)
        np.testing.assert_allclose(layers_test[-1], z_test, rtol=1e-5, atol=1e-5)
        X_fit, y_fit = fit_task.X_train, fit_task.y_train
        probes_val, probes_test = probe_logits(model, X_fit, y_fit, [X_val, X_test])
        entry["lates"] = {
            "head": lates_entry(layers_val, y_val, layers_test, y_test, cfg["bins"]),
            "probe": lates_entry(probes_val, y_val, probes_test, y_test, cfg["bins"]),
        }
    return entry


def plot(result: dict[str, Any], path: Path) -> Path:
    """Test ECE (left) and NLL (right) per model: before, after temperature scaling, and LATES
    on the "head" and "probe" readouts (stacks only)."""
    fig, axes = _common.figure(1, 2, size=(7.0, 3.6))
    runs = [r for r in result["runs"] if r["seed"] == result["config"]["seeds"][0]]
    x = np.arange(len(runs))
    width = 0.2
    for ax, key in zip(axes[0], ("ece", "nll"), strict=True):
        ax.bar(x - 1.5 * width, [r["before"][key] for r in runs], width, label="T = 1")
        ax.bar(x - 0.5 * width, [r["after_ts"][key] for r in runs], width, label="temp. scaling")
        for offset, readout in ((0.5, "head"), (1.5, "probe")):
            values = [r["lates"][readout]["test"][key] if "lates" in r else np.nan for r in runs]
            ax.bar(x + offset * width, values, width, label=f"LATES ({readout} readout)")
        ax.set_xticks(x, [r["model"] for r in runs], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"test {key.upper()}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    axes[0, 0].set_title(f"digits, {result['config']['bins']} bins")
    return _common.save_plot(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    task = cx.tasks.load("digits", seed=0)
    done = {(r["model"], r["seed"]): r for r in _common.resumed(args, path, cfg, "runs")}
    result: dict[str, Any] = {"config": cfg, "runs": []}
    for seed in cfg["seeds"]:
        fit_task, X_val, y_val = split(task, cfg["val_fraction"], seed)
        data = (fit_task, X_val, y_val, task.X_test, task.y_test)
        result["data"] = {"N_fit": fit_task.n_train, "N_val": len(y_val), "N_test": task.n_test}
        for model_name in cfg["models"]:
            run = done.get((model_name, seed)) or evaluate(model_name, seed, cfg, data)
            result["runs"].append(run)
            _common.write_json(path, result)
            if not args.no_progress:
                line = (
                    f"{model_name:20s} seed {seed} acc {run['before']['accuracy']:.3f} "
                    f"ECE {run['before']['ece']:.4f} -> {run['after_ts']['ece']:.4f} "
                    f"(T = {run['temperature']:.3g})"
                )
                for readout, lates in run.get("lates", {}).items():
                    test = lates["test"]
                    line += f", LATES ({readout}) ECE {test['ece']:.4f} acc {test['accuracy']:.3f}"
                print(line)
    plot(result, path)
    return result


if __name__ == "__main__":
    main()
