"""Frozen encoder, last attention layer replaced: the paper's BERT student-teacher, offline.

The analogue of the paper's first experiment (BERT student-teacher) without a download: a small
softmax transformer encoder (the zoo's "softmax-transformer", ``baselines.transformer``,
pre-norm, learned positions, mean pooling) is pretrained on scikit-learn's digits
(``cx.tasks.load("digits")``: the 8 pixel rows of an image as 8 tokens) and frozen. Its last attention layer's inputs, LN(h) of the residual stream
entering the last block (N, n, E), are the student's data X; the encoder's own class logits
(N, c = 10) are the teacher targets T. A student of ONE attention layer with a linear readout
X -> (N, c) replaces the last block and the head, and is fitted to T by squared loss
sum_i 1/2 |f(X_i) - T_i|^2 in four ways, each a ``convextx.zoo`` entry fitted to (X, T) as a
regression ``Task`` (``as_task``), its metrics recorded along training by the zoo (``record``):

- ``convex``: the certified convex program P2 ("convex-fista", kind "vector", squared loss;
  beta = ``beta_ratio`` x beta_max, the smallest beta with a zero solution). Its curve
  (``curve=True``) is a warm-started sequence of solves with doubling iteration budgets, to the
  certificate;
- ``simplex_heads``: the same architecture ("simplex-adam", eq. 11: h = c n simplex heads,
  enough for exact recovery) and the same objective, by Adam (full batch): its objective can
  never fall below the certified optimum (``convextx.zoo.certificates.check_certified``);
- ``simplex_layer`` / ``softmax_layer``: a one-layer "softmax-transformer" on X (input map,
  pre-norm residual mixer, mean pooling, linear head; no FFN, no positions: X carries them) with
  the convex alternative of eq. 4 or with standard softmax attention, by Adam (minibatches of
  256) on the unpenalized squared loss: other model classes, so only their errors compare.

Reported vs time (optimizer / solver seconds, compilation and evaluation excluded): the teacher-fit
MSE, mean_{i,l} (f_l(X_i) - T_il)^2, on train and test, and the digits accuracy of argmax f
against the true labels; plus attention maps: the token usage (c, n) of the head-sum models,
|z_lk| for the convex solution and sum_j |a_jl| |w2_j| w1_jk for heads (the same quantity), and
the mean attention over samples and queries (H, n) of the teacher's last layer and the students.

``compare(features, cfg)`` takes any ``Features`` (X, targets): ``--bert-dir DIR --bert-texts
FILE`` builds them from a local BERT checkpoint with the optional ``transformers`` package (never
downloaded): X = hidden states entering its last layer, T = that layer's [CLS] output under a
fixed random projection to c outputs.

    python -m experiments.frozen_encoder            # CPU default, a few minutes
    python -m experiments.frozen_encoder --quick    # seconds (tests)
    python -m experiments.frozen_encoder --full     # wider, deeper encoder, patches, more steps

Writes experiments/results/frozen_encoder[_quick|_full].json after every method run and a PNG of
the curves and maps next to it (``--resume`` keeps the runs of a matching earlier JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import convextx as cx
import solvers
from baselines import transformer
from convextx import zoo
from convextx.tasks import Task
from convextx.zoo.certificates import check_certified
from experiments import _common

NAME = "frozen_encoder"
METHODS = ("convex", "simplex_heads", "simplex_layer", "softmax_layer")

SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(layout="rows", subsample=120, width=8, depth=2, heads=2, pretrain_steps=100,
                  steps=100, seeds=[0], fista_max_iter=3000),
    "default": dict(layout="rows", subsample=None, width=32, depth=2, heads=4, pretrain_steps=1000,
                    steps=2000, seeds=[0], fista_max_iter=50_000),
    "full": dict(layout="patches", subsample=None, width=64, depth=4, heads=4,
                 pretrain_steps=5000, steps=20_000, seeds=[0, 1, 2], fista_max_iter=500_000),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Features:
    """A student-teacher problem: inputs X (N, n, d) of the replaced layer, teacher targets
    T (N, c), true labels y (N,) int (or None) for the accuracy, per split; ``teacher``: what
    they came from (a JSON-able dict, "maps" optional (H, n) mean attention of the last layer)."""

    X_train: np.ndarray
    T_train: np.ndarray
    y_train: np.ndarray | None
    X_test: np.ndarray
    T_test: np.ndarray
    y_test: np.ndarray | None
    teacher: dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
        parser.add_argument("--steps", type=int, default=None, help="Adam steps per student")
        parser.add_argument("--beta-ratio", type=float, default=1e-2, help="beta / beta_max")
        parser.add_argument("--heads-lr", type=float, default=1e-2, help="Adam, simplex heads")
        parser.add_argument("--layer-lr", type=float, default=3e-3, help="Adam, 1-layer students")
        parser.add_argument("--tol", type=float, default=1e-6, help="relative duality gap")
        parser.add_argument("--bert-dir", type=Path, default=None, help="local BERT checkpoint")
        parser.add_argument("--bert-texts", type=Path, default=None, help="'label<TAB>text' lines")
        parser.add_argument("--bert-outputs", type=int, default=8, help="c of the projection")
        parser.add_argument(
            "--bert-max-length", type=int, default=64, help="tokens per text (n), padded"
        )

    args = _common.parse_args(__doc__.split("\n")[0], extra, argv)
    if not 0 < args.beta_ratio < 1:
        raise SystemExit(f"--beta-ratio must be in (0, 1), got {args.beta_ratio}")
    if (args.bert_dir is None) != (args.bert_texts is None):
        raise SystemExit("--bert-dir and --bert-texts go together")
    return args


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings: the size's defaults overridden by the command line."""
    cfg = dict(SIZES[args.size])
    for name in ("seeds", "steps"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    cfg |= {
        "size": args.size,
        "methods": list(args.methods),
        "beta_ratio": args.beta_ratio,
        "heads_lr": args.heads_lr,
        "layer_lr": args.layer_lr,
        "layer_batch": 256,
        "tol": args.tol,
        "pretrain_lr": 3e-3,
        "pretrain_weight_decay": 1e-2,
        "pretrain_batch": 128,
        "data": "digits" if args.bert_dir is None else f"bert:{args.bert_dir}",
        "bert_max_length": None if args.bert_dir is None else args.bert_max_length,
        "x64": True,
    }
    return cfg


# ------------------------------------------------------------------------------ the teacher


def mean_attention(maps: jax.Array) -> np.ndarray:
    """(H, n): attention (B, H, n, n) averaged over samples and query rows (mean pooling)."""
    return np.asarray(maps).mean(axis=(0, 2))


def digits_features(cfg: dict[str, Any], progress: bool) -> Features:
    """Pretrain the encoder on digits (the zoo's softmax transformer by AdamW, cross-entropy),
    freeze it, return its last layer's inputs and logits."""
    task = cx.tasks.load("digits", layout=cfg["layout"], seed=0)
    if cfg["subsample"] is not None:
        cut = {f"{a}_{split}": getattr(task, f"{a}_{split}")[: cfg["subsample"]]
               for a in ("X", "y") for split in ("train", "test")}  # fmt: skip
        task = dataclasses.replace(task, **cut)
    encoder = zoo.make(
        "softmax-transformer", width=cfg["width"], depth=cfg["depth"], heads=cfg["heads"],
        view="features", optimizer="adamw", learning_rate=cfg["pretrain_lr"],
        optimizer_options={"weight_decay": cfg["pretrain_weight_decay"]},
        steps=cfg["pretrain_steps"], batch_size=cfg["pretrain_batch"], log_every="log",
        progress=progress,
    ).fit(task)  # fmt: skip
    params, tcfg, report = encoder.params_, encoder.config_, encoder.report()

    @jax.jit
    def extract(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        logits, aux = transformer.apply(params, x, tcfg)
        return transformer.last_layer_inputs(params, x, tcfg), logits, aux["attention"][-1]

    X_tr, T_tr, _ = extract(jnp.asarray(task.X_train))
    X_te, T_te, maps = extract(jnp.asarray(task.X_test))
    teacher = {
        "source": f"digits ({task.metadata['embedding']}), pretrained softmax encoder",
        "encoder": {k: getattr(tcfg, k) for k in ("width", "depth", "heads", "norm", "pooling")},
        "pretrain_steps": report["details"]["steps"],
        "train_accuracy": report["train_metric"],
        "test_accuracy": report["test_metric"],
        "maps": mean_attention(maps).round(4).tolist(),
    }
    return Features(
        *(np.asarray(a) for a in (X_tr, T_tr)), np.asarray(task.y_train),
        *(np.asarray(a) for a in (X_te, T_te)), np.asarray(task.y_test), teacher,
    )  # fmt: skip


def bert_features(
    bert_dir: Path, texts: Path, outputs: int, max_length: int = 64, seed: int = 0
) -> Features:
    """Features from a LOCAL BERT checkpoint (optional ``torch`` + ``transformers``; no
    download): X = hidden states entering the last layer, T = the last layer's [CLS] output
    times a fixed Gaussian (d, outputs) / sqrt(d). ``texts``: one example per line, "label<TAB>
    text" (integer label, for the accuracy) or just text. Split 75 / 25 at random."""
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise SystemExit("--bert-dir needs the optional packages torch and transformers") from err
    lines = [line.rstrip("\n") for line in texts.read_text().splitlines() if line.strip()]
    parts = [line.split("\t", 1) for line in lines]
    labelled = all(len(p) == 2 and p[0].strip().lstrip("-").isdigit() for p in parts)
    sentences = [p[1] if labelled else "\t".join(p) for p in parts]
    tokenizer = AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    model = AutoModel.from_pretrained(bert_dir, local_files_only=True).eval()
    batch = tokenizer(
        sentences, padding="max_length", truncation=True, max_length=max_length,
        return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    X = hidden[-2].double().numpy()
    cls = hidden[-1][:, 0].double().numpy()
    rng = np.random.default_rng(seed)
    T = cls @ rng.normal(size=(cls.shape[1], outputs)) / np.sqrt(cls.shape[1])
    y = np.array([int(p[0]) for p in parts]) if labelled else None
    order = rng.permutation(len(X))
    cut = int(0.75 * len(X))
    tr, te = order[:cut], order[cut:]
    return Features(
        X[tr], T[tr], None if y is None else y[tr], X[te], T[te], None if y is None else y[te],
        {"source": f"BERT {bert_dir}, {len(X)} texts of {texts}", "outputs": outputs},
    )  # fmt: skip


# ------------------------------------------------------------------------------ the students


def metrics(predict: Callable[[Any], Any], F: Features) -> dict[str, float]:
    """Teacher-fit MSE (mean over samples and outputs) and label accuracy, train and test."""
    out = {}
    for split in ("train", "test"):
        pred = np.asarray(predict(getattr(F, f"X_{split}")))
        out[f"{split}_mse"] = float(np.mean((pred - getattr(F, f"T_{split}")) ** 2))
        labels = getattr(F, f"y_{split}")
        if labels is not None:
            out[f"{split}_accuracy"] = float(np.mean(pred.argmax(-1) == labels))
        teacher = getattr(F, f"T_{split}").argmax(-1)
        out[f"{split}_agreement"] = float(np.mean(pred.argmax(-1) == teacher))
    return out


def token_usage(heads: dict[str, Any]) -> np.ndarray:
    """(c, n): sum_j |a_jl| |w2_j| w1_jk, the weight output l puts on token k (equals |z_lk| for
    heads recovered from a convex solution)."""
    mass = np.abs(np.asarray(heads["a"])) * np.linalg.norm(np.asarray(heads["w2"]), axis=1)[:, None]
    return mass.T @ np.asarray(heads["w1"])


def as_task(F: Features) -> Task:
    """The student-teacher problem as a zoo task: regression of the teacher targets T on X."""
    return Task(
        name="frozen_encoder", problem="regression", X_train=F.X_train, X_test=F.X_test,
        y_train=F.T_train, y_test=F.T_test,
        metadata={"embedding": str(F.teacher.get("source", "frozen encoder features"))},
    )  # fmt: skip


def _history(report: dict[str, Any]) -> dict[str, list]:
    history = dict(report["history"])
    history["step"] = [int(s) for s in history["step"]]
    return history


def fit_convex(F: Features, task: Task, beta: float, cfg: dict[str, Any]) -> dict[str, Any]:
    """The zoo's FISTA on P2 with ``curve``: warm-started doubling budgets (1, 2, 4, ...
    iterations) until the certificate, the metrics after each (time = summed solve seconds);
    then the recovered network of reduced support (one one-hot head per active group)."""
    model = zoo.make(
        "convex-fista", kind="vector", beta=beta, tol=cfg["tol"], max_iter=cfg["fista_max_iter"],
        curve=True, reduce_support=True, record=functools.partial(metrics, F=F),
    ).fit(task)  # fmt: skip
    report, est = model.report(), model.estimator_
    recovered = cx.nonconvex_objective(
        est.heads_, F.X_train, F.T_train, beta, kind="vector", loss="squared"
    )
    norms = np.linalg.norm(est.coef_, axis=-1)
    history = _history(report)
    return {
        "method": "convex",
        "seed": None,
        "objective": est.objective_,
        "lower_bound": report["details"]["lower_bound"],
        "gap": est.gap_,
        "relative_gap": est.solve_result_.relative_gap,
        "status": est.status_,
        "certified": est.status_ == "optimal",
        "iterations": report["details"]["iterations"],
        "seconds": history["time"][-1],
        "recovered_objective": recovered,
        "heads": int(len(est.heads_["a"])),
        "active_tokens": est.active_tokens_.tolist(),
        "active_groups": int(np.count_nonzero(norms)),
        "token_usage": norms.round(6).tolist(),
        "final": metrics(model.predict, F),
        "history": history,
    }


def _student(method: str, seed: int, model: Any, F: Features, lr: float, batch: int | None):
    """The run record of a fitted zoo student."""
    report = model.report()
    return {
        "method": method,
        "seed": seed,
        "learning_rate": lr,
        "batch_size": batch,
        "seconds": report["details"]["train_seconds"],
        "objective": model.objective_,
        "final": metrics(model.predict, F),
        "history": _history(report),
    }


def fit_simplex_heads(
    F: Features, task: Task, beta: float, seed: int, cfg: dict[str, Any], progress: bool
) -> dict[str, Any]:
    """The zoo's simplex-adam on eq. 11 (h = c n heads, softmax-logit simplex rows, full batch)
    with the exact weight decay; its certificate is the convex fit's (the zoo's cache)."""
    _, n, _ = F.X_train.shape
    heads = F.T_train.shape[1] * n
    model = zoo.make(
        "simplex-adam", kind="vector", beta=beta, heads=heads, learning_rate=cfg["heads_lr"],
        steps=cfg["steps"], log_every="log", tol=cfg["tol"], max_iter=cfg["fista_max_iter"],
        seed=seed, record=functools.partial(metrics, F=F), progress=progress,
    ).fit(task)  # fmt: skip
    run = _student("simplex_heads", seed, model, F, cfg["heads_lr"], None)
    run["heads"] = heads
    run["token_usage"] = token_usage(model.heads_).round(6).tolist()
    return run


def fit_layer(
    F: Features, task: Task, mixer: str, seed: int, cfg: dict[str, Any], progress: bool
) -> dict[str, Any]:
    """The zoo's transformer as a 1-layer student with ``mixer`` ("simplex" or "softmax"), no
    FFN, no positions (X carries them), by Adam on minibatches of ``layer_batch``."""
    d = F.X_train.shape[2]
    model = zoo.make(
        "softmax-transformer", mixer=mixer, ffn=None, width=d,
        heads=cfg["heads"] if d % cfg["heads"] == 0 else 1, view="features", positions="none",
        learning_rate=cfg["layer_lr"], steps=cfg["steps"], batch_size=cfg["layer_batch"],
        log_every="log", seed=seed, record=functools.partial(metrics, F=F), progress=progress,
    ).fit(task)  # fmt: skip
    batch = min(cfg["layer_batch"], len(F.X_train))
    run = _student(f"{mixer}_layer", seed, model, F, cfg["layer_lr"], batch)
    maps = transformer.attention_maps(model.params_, jnp.asarray(F.X_test), model.config_)[0]
    run["maps"] = mean_attention(maps).round(4).tolist()
    return run


def compare(
    F: Features, cfg: dict[str, Any], progress: bool = False, done: dict | None = None,
    on_run: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every method of ``cfg["methods"]`` on one student-teacher problem ``F`` (any X, targets).

    done: runs of an earlier matching run, by (method, seed), to keep. on_run(runs): called after
    each run (incremental output).
    """
    done = done or {}
    probe = cx.convex_program(F.X_train, F.T_train, "vector", 1.0, "squared")
    beta_max = solvers.beta_max(probe.problem)
    beta = cfg["beta_ratio"] * beta_max
    runs: list[dict[str, Any]] = []
    task = as_task(F)
    convex = done.get(("convex", None)) or fit_convex(F, task, beta, cfg)
    runs.append(convex)
    if on_run:
        on_run(runs)
    for method in cfg["methods"]:
        if method == "convex":
            continue
        for seed in cfg["seeds"]:
            run = done.get((method, seed))
            if run is None:
                if method == "simplex_heads":
                    run = fit_simplex_heads(F, task, beta, seed, cfg, progress)
                    run["margin_above_bound"] = check_certified(
                        [run["objective"], *run["history"]["objective"]],
                        convex["lower_bound"], what=method,
                    )  # fmt: skip
                    optimum = convex["objective"]
                    run["relative_suboptimality"] = (run["objective"] - optimum) / abs(optimum)
                else:
                    run = fit_layer(F, task, method.split("_")[0], seed, cfg, progress)
            runs.append(run)
            if on_run:
                on_run(runs)
    return {"beta_max": beta_max, "beta": beta, "runs": runs}


# ------------------------------------------------------------------------------ output


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: final train/test MSE and accuracy, seconds, objective (one entry per seed)."""
    out: dict[str, Any] = {}
    for method in METHODS:
        group = [r for r in runs if r["method"] == method]
        if not group:
            continue
        entry = {"seeds": [r["seed"] for r in group], "seconds": [r["seconds"] for r in group]}
        for key in group[0]["final"]:
            entry[key] = [r["final"][key] for r in group]
        if method in ("convex", "simplex_heads"):
            entry["objective"] = [r["objective"] for r in group]
        out[method] = entry
    return out


COLORS = {
    "convex": "tab:red",
    "simplex_heads": "tab:orange",
    "simplex_layer": "tab:green",
    "softmax_layer": "tab:blue",
}


def plot(result: dict[str, Any], path: Path) -> Path:
    """Top: test MSE, test accuracy, train objective vs time. Bottom: attention / token maps."""
    runs = result["runs"]
    fig, axes = _common.figure(2, 3, size=(4.6, 3.4))
    for run in runs:
        h = run["history"]
        time = np.maximum(h["time"], 1e-5)
        label = run["method"] if run["seed"] in (None, result["config"]["seeds"][0]) else None
        color = COLORS[run["method"]]
        axes[0, 0].plot(time, h["test_mse"], color=color, label=label)
        axes[0, 0].plot(time, h["train_mse"], ":", color=color)
        if "test_accuracy" in h:
            axes[0, 1].plot(time, h["test_accuracy"], color=color, label=label)
        if run["method"] in ("convex", "simplex_heads"):
            axes[0, 2].plot(time, h["objective"], color=color, label=label)
    convex = next(r for r in runs if r["method"] == "convex")
    axes[0, 2].axhline(convex["lower_bound"], color="k", lw=0.6, label="certified lower bound")
    titles = ("teacher-fit MSE (solid test, dotted train)", "digits test accuracy",
              "objective (eq. 11 / P2)")  # fmt: skip
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    axes[0, 0].set_yscale("log")
    axes[0, 2].set_yscale("log")
    heads = next((r for r in runs if r["method"] == "simplex_heads"), None)
    softmax = next((r for r in runs if r["method"] == "softmax_layer"), None)
    panels = [
        ("convex token usage |z_lk|", convex["token_usage"], "token k", "output l"),
        ("Adam simplex heads token usage", heads and heads["token_usage"], "token k", "output l"),
        ("mean attention: teacher last layer (top) / softmax student",
         np.vstack([result["teacher"]["maps"], softmax["maps"]]) if softmax and
         "maps" in result["teacher"] else None, "token k", "head"),
    ]  # fmt: skip
    for ax, (title, values, xlabel, ylabel) in zip(axes[1], panels, strict=True):
        if values is None:
            ax.axis("off")
            continue
        image = ax.imshow(np.asarray(values), aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax)
        if ylabel == "head":  # teacher heads, then the student's
            teacher_heads = len(result["teacher"]["maps"])
            ax.axhline(teacher_heads - 0.5, color="white", lw=2)
            ax.set_yticks(range(len(values)))
            ax.set_yticklabels(
                [f"T{h}" for h in range(teacher_heads)]
                + [f"S{h}" for h in range(len(values) - teacher_heads)]
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return _common.save_plot(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # certified optima are compared to 1e-6
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    progress = not args.no_progress
    if args.bert_dir is not None:
        features = bert_features(
            args.bert_dir, args.bert_texts, args.bert_outputs, args.bert_max_length
        )
    else:
        features = digits_features(cfg, progress)
    done = {(r["method"], r["seed"]): r for r in _common.resumed(args, path, cfg, "runs")}
    N, n, d = features.X_train.shape
    result: dict[str, Any] = {
        "config": cfg,
        "teacher": features.teacher,
        "data": {"N_train": N, "N_test": len(features.X_test), "n": n, "d": d,
                 "c": features.T_train.shape[1]},
    }  # fmt: skip

    def on_run(runs: list[dict[str, Any]]) -> None:
        result["runs"] = runs
        result["summary"] = summarize(runs)
        _common.write_json(path, result)

    result |= compare(features, cfg, progress, done, on_run)
    result["summary"] = summarize(result["runs"])
    _common.write_json(path, result)
    plot(result, path)
    for method, entry in result["summary"].items():
        shown = {k: [round(v, 4) for v in vals] for k, vals in entry.items() if k != "seeds"}
        print(method, shown)
    return result


if __name__ == "__main__":
    main()
