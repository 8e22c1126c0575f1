"""Frozen encoder, last attention layer replaced: the paper's BERT student-teacher, offline.

The analogue of the paper's first experiment (paper-notes 7.1, 10.3) without a download: a small
softmax transformer encoder (``baselines.transformer``, pre-norm, learned positions, mean
pooling) is pretrained on scikit-learn's digits (``cx.tasks.load("digits")``: the 8 pixel rows of
an image as 8 tokens) and frozen. Its last attention layer's inputs, LN(h) of the residual stream
entering the last block (N, n, E), are the student's data X; the encoder's own class logits
(N, c = 10) are the teacher targets T. A student of ONE attention layer with a linear readout
X -> (N, c) replaces the last block and the head, and is fitted to T by squared loss
sum_i 1/2 |f(X_i) - T_i|^2 in four ways:

- ``convex``: the certified convex program P2 (``cx.ConvexAttention``, kind "vector", squared
  loss, FISTA; beta = ``beta_ratio`` x beta_max, the smallest beta with a zero solution). Its
  curve is a warm-started sequence of solves with doubling iteration budgets, to the certificate;
- ``simplex_heads``: the same architecture (eq. 11: h = c n simplex heads, ``baselines.heads``,
  enough for exact recovery) and the same objective, by Adam (full batch): its objective can
  never fall below the certified optimum (checked);
- ``simplex_layer`` / ``softmax_layer``: a one-layer ``baselines.transformer`` on X (input map,
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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.exceptions import ConvergenceWarning

import convextx as cx
import solvers
from baselines import heads as heads_module
from baselines import transformer
from baselines.optim import make_optimizer
from baselines.train import Trainer
from experiments import _common

NAME = "frozen_encoder"
METHODS = ("convex", "simplex_heads", "simplex_layer", "softmax_layer")
CERT_RTOL = 1e-6  # slack below the certified lower bound allowed to float rounding

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


def last_layer_inputs(params: Any, cfg: transformer.TransformerConfig, x: jax.Array) -> jax.Array:
    """(N, n, E): LN(h), the input of the last block's mixer of a pre-norm stack.

    The first depth - 1 blocks run as a token-output stack whose final norm is the last block's
    norm1 and whose head is the identity, so the numbers come from ``transformer.apply`` itself.
    """
    if cfg.norm != "pre" or cfg.depth < 2:
        raise ValueError("last_layer_inputs needs a pre-norm stack of depth >= 2")
    prefix_cfg = dataclasses.replace(
        cfg, depth=cfg.depth - 1, mixer=cfg.mixers[:-1], output="token", num_outputs=cfg.width
    )
    eye = jnp.eye(cfg.width, dtype=params["head"]["w"].dtype)
    prefix = {
        **params,
        "layers": params["layers"][:-1],
        "final_norm": params["layers"][-1]["norm1"],
        "head": {"w": eye, "b": jnp.zeros(cfg.width, eye.dtype)},
    }
    return transformer.apply(prefix, x, prefix_cfg)[0]


def squared_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Per-sample 1/2 |pred - target|^2 (MATH.md's squared loss), (B,)."""
    return 0.5 * jnp.sum((pred - target) ** 2, axis=-1)


def digits_features(cfg: dict[str, Any], progress: bool) -> Features:
    """Pretrain the encoder on digits (AdamW, cross-entropy), freeze it, return its last layer's
    inputs and logits."""
    task = cx.tasks.load("digits", layout=cfg["layout"], seed=0)
    X_train, y_train, X_test, y_test = task.X_train, task.y_train, task.X_test, task.y_test
    if cfg["subsample"] is not None:
        X_train, y_train = X_train[: cfg["subsample"]], y_train[: cfg["subsample"]]
        X_test, y_test = X_test[: cfg["subsample"]], y_test[: cfg["subsample"]]
    _, n, f = X_train.shape
    tcfg = transformer.TransformerConfig(
        width=cfg["width"], depth=cfg["depth"], heads=cfg["heads"], max_len=n, input_dim=f,
        num_outputs=task.num_classes, norm="pre", positions="learned", pooling="mean",
    )  # fmt: skip
    trainer = Trainer(
        transformer.objective(tcfg, optax.softmax_cross_entropy_with_integer_labels),
        make_optimizer(
            "adamw", cfg["pretrain_lr"], options={"weight_decay": cfg["pretrain_weight_decay"]}
        ),
        batch_size=min(cfg["pretrain_batch"], len(y_train)),
    )
    res = trainer.run(
        transformer.init(jax.random.key(0), tcfg),
        (jnp.asarray(X_train), jnp.asarray(y_train)),
        cfg["pretrain_steps"],
        test_data=(jnp.asarray(X_test), jnp.asarray(y_test)),
        progress=progress,
    )
    params = res.params

    @jax.jit
    def extract(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        logits, aux = transformer.apply(params, x, tcfg)
        return last_layer_inputs(params, tcfg, x), logits, aux["attention"][-1]

    X_tr, T_tr, _ = extract(jnp.asarray(X_train))
    X_te, T_te, maps = extract(jnp.asarray(X_test))
    teacher = {
        "source": f"digits ({task.metadata['embedding']}), pretrained softmax encoder",
        "encoder": {k: getattr(tcfg, k) for k in ("width", "depth", "heads", "norm", "pooling")},
        "pretrain_steps": res.steps,
        "train_accuracy": res.history["train_accuracy"][-1],
        "test_accuracy": res.history["test_accuracy"][-1],
        "maps": mean_attention(maps).round(4).tolist(),
    }
    return Features(
        *(np.asarray(a) for a in (X_tr, T_tr)), np.asarray(y_train),
        *(np.asarray(a) for a in (X_te, T_te)), np.asarray(y_test), teacher,
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


def fit_convex(F: Features, beta: float, cfg: dict[str, Any]) -> dict[str, Any]:
    """FISTA on P2, warm-started with doubling budgets (1, 2, 4, ... iterations) until the
    certificate; time = summed compiled-solve seconds."""
    params = dict(kind="vector", beta=beta, loss="squared", tol=cfg["tol"], warm_start=True)
    est = cx.ConvexAttention(**params, reduce_support=False)
    history: dict[str, list] = {}
    total, seconds, budget = 0, 0.0, 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cx.ConvexAttention(**params, max_iter=1).fit(F.X_train, F.T_train)  # compile
        while True:
            last = total + budget >= cfg["fista_max_iter"]
            est.set_params(max_iter=cfg["fista_max_iter"] - total if last else budget)
            est.fit(F.X_train, F.T_train)
            result = est.solve_result_
            total += result.iterations
            seconds += result.seconds
            entry = {
                "iteration": total,
                "time": seconds,
                "objective": result.objective,
                "gap": result.gap,
                **metrics(est.decision_function, F),
            }
            for k, v in entry.items():
                history.setdefault(k, []).append(v)
            if result.status == "optimal" or last:
                break
            budget *= 2
    # the recovered network: reduced support, one one-hot head per active (output, token) group
    est.set_params(reduce_support=True, max_iter=cfg["fista_max_iter"])
    est.fit(F.X_train, F.T_train)
    recovered = cx.nonconvex_objective(
        est.heads_, F.X_train, F.T_train, beta, kind="vector", loss="squared"
    )
    norms = np.linalg.norm(est.coef_, axis=-1)
    return {
        "method": "convex",
        "seed": None,
        "objective": est.objective_,
        "lower_bound": est.solve_result_.dual,
        "gap": est.gap_,
        "relative_gap": est.solve_result_.relative_gap,
        "status": est.status_,
        "certified": est.status_ == "optimal",
        "iterations": total,
        "seconds": seconds,
        "recovered_objective": recovered,
        "heads": int(len(est.heads_["a"])),
        "active_tokens": est.active_tokens_.tolist(),
        "active_groups": int(np.count_nonzero(norms)),
        "token_usage": norms.round(6).tolist(),
        "final": metrics(est.decision_function, F),
        "history": history,
    }


def _adam_run(
    method: str, seed: int, objective: Any, params: Any, predict: Callable, F: Features,
    lr: float, cfg: dict[str, Any], penalty: Callable | None, progress: bool,
    batch_size: int | None = None,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """Adam through a ``baselines.train.Trainer`` (full batch unless ``batch_size``), the metrics
    logged at log-spaced steps on the full train and test sets."""
    predict = jax.jit(predict)
    trainer = Trainer(
        objective,
        make_optimizer("adam", lr),
        penalty=penalty,
        batch_size=None if batch_size is None else min(batch_size, len(F.X_train)),
    )
    res = trainer.run(
        params,
        (jnp.asarray(F.X_train), jnp.asarray(F.T_train)),
        cfg["steps"],
        eval_fn=lambda p: metrics(functools.partial(predict, p), F),
        seed=seed,
        progress=progress,
    )
    history = {k: [float(v) for v in vals] for k, vals in res.history.items()}
    history["step"] = [int(s) for s in history["step"]]
    run = {
        "method": method,
        "seed": seed,
        "learning_rate": lr,
        "batch_size": batch_size,
        "seconds": res.seconds,
        "objective": history["objective"][-1],
        "final": metrics(functools.partial(predict, res.params), F),
        "history": history,
    }
    return run, res.params


def fit_simplex_heads(
    F: Features, beta: float, seed: int, cfg: dict[str, Any], progress: bool
) -> dict[str, Any]:
    """Adam on eq. 11 (h = c n heads, softmax-logit simplex rows) with the exact weight decay."""
    _, n, d = F.X_train.shape
    c = F.T_train.shape[1]
    params = heads_module.init_params(jax.random.key(seed), "vector", c * n, n, d, c)

    def predict(p: Any, X: jax.Array) -> jax.Array:
        return heads_module.forward("vector", heads_module.to_heads(p, "vector"), X)

    run, params = _adam_run(
        "simplex_heads", seed, heads_module.objective("vector", squared_loss), params, predict, F,
        cfg["heads_lr"], cfg, heads_module.WeightDecay("vector", beta), progress,
    )  # fmt: skip
    heads = {k: np.asarray(v) for k, v in heads_module.to_heads(params, "vector").items()}
    run["heads"] = c * n
    run["objective"] = cx.nonconvex_objective(
        heads, F.X_train, F.T_train, beta, kind="vector", loss="squared"
    )
    run["token_usage"] = token_usage(heads).round(6).tolist()
    return run


def fit_layer(
    F: Features, mixer: str, seed: int, cfg: dict[str, Any], progress: bool
) -> dict[str, Any]:
    """Adam (minibatches of ``layer_batch``) on a 1-layer transformer student with ``mixer``
    ("simplex" or "softmax")."""
    _, n, d = F.X_train.shape
    tcfg = transformer.TransformerConfig(
        width=d, heads=cfg["heads"] if d % cfg["heads"] == 0 else 1, max_len=n, input_dim=d,
        mixer=mixer, ffn=None, positions="none", output="regression",
        num_outputs=F.T_train.shape[1],
    )  # fmt: skip

    def predict(p: Any, X: jax.Array) -> jax.Array:
        return transformer.apply(p, X, tcfg)[0]

    run, params = _adam_run(
        f"{mixer}_layer", seed, transformer.objective(tcfg, squared_loss),
        transformer.init(jax.random.key(seed), tcfg), predict, F, cfg["layer_lr"], cfg, None,
        progress, cfg["layer_batch"],
    )  # fmt: skip
    maps = transformer.attention_maps(params, jnp.asarray(F.X_test), tcfg)[0]
    run["maps"] = mean_attention(maps).round(4).tolist()
    return run


def check_certified(run: dict[str, Any], convex: dict[str, Any]) -> float:
    """Margin of the run's objectives above the certified lower bound (AssertionError if below)."""
    bound = convex["lower_bound"]
    lowest = min(run["objective"], min(run["history"]["objective"]))
    assert lowest >= bound - CERT_RTOL * max(1.0, abs(bound)), (
        f"{run['method']} objective {lowest!r} is below the certified lower bound {bound!r}"
    )
    return lowest - bound


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
    convex = done.get(("convex", None)) or fit_convex(F, beta, cfg)
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
                    run = fit_simplex_heads(F, beta, seed, cfg, progress)
                else:
                    run = fit_layer(F, method.split("_")[0], seed, cfg, progress)
                if method == "simplex_heads":
                    run["margin_above_bound"] = check_certified(run, convex)
                    optimum = convex["objective"]
                    run["relative_suboptimality"] = (run["objective"] - optimum) / abs(optimum)
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
    previous = _common.read_json(path) if args.resume else None
    done = {}
    if previous is not None and previous.get("config") == _common.to_jsonable(cfg):
        done = {(r["method"], r["seed"]): r for r in previous["runs"]}
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
