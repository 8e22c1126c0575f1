"""Length generalization: per-length accuracy of every zoo model on ``parity`` and ``addition``,
trained on short inputs and tested on longer ones (after Anil et al. 2022, arXiv 2207.04901).

Each task is drawn once (its own seed): the train split has the short lengths, the test split
the longer ones (``convextx.tasks``: parity of bit strings of length L, sum digits of D-digit
additions). The last ``N_heldout`` samples of the train split are held out (same lengths, never
fitted; fresh draws, so for the shortest lengths they may repeat a fitted string), so every
model gets an accuracy at every length: in distribution up to L_train / D_train, beyond it the
length generalization. Every zoo model (``convextx.zoo.names()``) is fitted on the rest of the
train split with a wall-clock ``budget`` per fit and the small settings of ``MODEL_SETTINGS``
(CPU budgets: these are not tuned models). Features are the tasks' "random" embedding (token +
absolute position vectors, dimension 16), so that the linear-attention program stays small;
the transformers read the tokens (learned absolute positions). The reference row "majority"
predicts the most frequent fitted label. The CPU default skips convex-cvxpy on addition
(``CVXPY_SKIPPED``; the JSON's "skipped" says so). On addition the test accuracy is also split
by the query: a sum digit at a position marked in training (q <= D_train), a sum digit at a new
position, or the carry out (q = D, a 0/1 label).

    python -m experiments.length_generalization            # CPU default, about 5 minutes
    python -m experiments.length_generalization --quick    # seconds (tests; 2 models)
    python -m experiments.length_generalization --full     # larger sets and budgets

Writes experiments/results/length_generalization[_quick|_full].json after every fit
(``--resume`` keeps the fits of a matching earlier run) and a PNG of the accuracy tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from convextx import tasks, zoo
from convextx.tasks import Task
from experiments import _common

NAME = "length_generalization"
TASKS = ("parity", "addition")
EMBEDDING = dict(embedding="random", embedding_dim=16)

#: small CPU settings per zoo model (everything else: the model's defaults)
TRANSFORMER = dict(steps=3000, batch_size=128, log_every=250)
MODEL_SETTINGS: dict[str, dict[str, Any]] = {
    "convex-fista": dict(max_iter=5000),
    "convex-cvxpy": {},
    "convex-gated": dict(max_iter=5000),
    "convex-linear": dict(max_iter=5000),
    "linear-adam": dict(steps=1000, tol=1e-4, max_iter=2000),
    "simplex-adam": dict(steps=1000, tol=1e-4, max_iter=2000),
    "simplex-sgd": dict(steps=1000, tol=1e-4, max_iter=2000),
    "softmax-transformer": TRANSFORMER,
    "gss": TRANSFORMER,
    "moe": TRANSFORMER,
    "repair-merged": dict(steps=1000),
}

CVXPY_SKIPPED = (
    "the program of convex-fista (both solve it to optimality, so their tables agree, as on "
    "parity); its cvxpy solve took 110 s of the CPU default's budget (run it with --full)"
)
SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(models=["convex-fista", "softmax-transformer"], N_fit=64, N_heldout=32,
                  N_test=64, budget=2.0, steps=30,
                  parity=dict(L_min=1, L_train=3, L_test=5),
                  addition=dict(D_min=1, D_train=2, D_test=3, base=4)),
    "default": dict(models=None, N_fit=1000, N_heldout=400, N_test=800, budget=12.0, steps=None,
                    parity=dict(L_min=1, L_train=8, L_test=16),
                    addition=dict(D_min=1, D_train=3, D_test=6, base=10),
                    skip={"addition": {"convex-cvxpy": CVXPY_SKIPPED}}),
    "full": dict(models=None, N_fit=10_000, N_heldout=2000, N_test=4000, budget=300.0,
                 steps=None, parity=dict(L_min=1, L_train=16, L_test=40),
                 addition=dict(D_min=1, D_train=5, D_test=12, base=10)),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--models", nargs="+", choices=zoo.names(), default=None)

    return _common.parse_args(__doc__.split("\n")[0], extra, argv)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(SIZES[args.size], size=args.size)
    cfg["models"] = args.models or cfg["models"] or zoo.names()
    cfg["seed"] = 0 if args.seeds is None else args.seeds[0]
    return cfg


def lengths_of(task: Task, split: str) -> np.ndarray:
    """(N,) the length of every sample of ``split``: parity's bit count, addition's D."""
    if task.name == "parity":
        return task.metadata[f"mask_{split}"].sum(axis=1)
    return np.asarray(task.metadata[f"lengths_{split}"])


def load_split(name: str, cfg: dict[str, Any]) -> tuple[Task, Task, np.ndarray, np.ndarray]:
    """(fitted task, held-out task, held-out lengths, test lengths): ``name`` drawn with
    N_fit + N_heldout train samples, the last N_heldout moved to the held-out task's train split
    (the same embedding tables, since it is one draw; per-sample metadata "*_train" sliced
    alike)."""
    full = tasks.load(name, N_train=cfg["N_fit"] + cfg["N_heldout"], N_test=cfg["N_test"],
                      seed=cfg["seed"], **cfg[name], **EMBEDDING)  # fmt: skip
    lengths = lengths_of(full, "train")
    cut = cfg["N_fit"]

    def part(rows: slice) -> Task:
        per_sample = {k: v[rows] for k, v in full.metadata.items() if k.endswith("_train")}
        return dataclasses.replace(
            full,
            X_train=full.X_train[rows],
            y_train=full.y_train[rows],
            tokens_train=full.tokens_train[rows],
            metadata={**full.metadata, **per_sample, "rows_of_the_draw": [rows.start, rows.stop]},
        )

    fitted, heldout = part(slice(0, cut)), part(slice(cut, None))
    return fitted, heldout, lengths[cut:], lengths_of(full, "test")


def per_length(correct: np.ndarray, lengths: np.ndarray) -> dict[int, float]:
    """{length: accuracy} over the samples of each length."""
    return {int(L): float(correct[lengths == L].mean()) for L in np.unique(lengths)}


def counts(*lengths: np.ndarray) -> dict[int, int]:
    """{length: number of scored samples} over the held-out and test lengths."""
    values, number = np.unique(np.concatenate(lengths), return_counts=True)
    return {int(L): int(c) for L, c in zip(values, number, strict=True)}


def fit_unit(name: str, model_name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    fitted, heldout, heldout_lengths, test_lengths = load_split(name, cfg)
    settings = dict(MODEL_SETTINGS[model_name], seed=cfg["seed"])
    if cfg["steps"] is not None and "steps" in zoo.settings(model_name):
        settings["steps"] = cfg["steps"]
    model = zoo.make(model_name, **settings)
    tic = time.perf_counter()
    model.fit(fitted, budget_seconds=cfg["budget"])
    seconds = time.perf_counter() - tic
    accuracy = {}
    for split, task, lengths in (("heldout", heldout, heldout_lengths),
                                 ("test", fitted, test_lengths)):  # fmt: skip
        where = "train" if split == "heldout" else "test"
        correct = model.predict(model.inputs(task, where)) == getattr(task, f"y_{where}")
        accuracy |= per_length(correct, lengths)
    report = model.report()
    record = {"task": name, "model": model_name, "settings": settings, "seconds": seconds,
              "train_accuracy": report["train_metric"], "test_accuracy": report["test_metric"],
              "status": report["status"], "accuracy_by_length": accuracy,
              "count_by_length": counts(heldout_lengths, test_lengths),
              "train_lengths": [int(L) for L in np.unique(lengths_of(fitted, "train"))]}  # fmt: skip
    if name == "addition":
        record["test_accuracy_by_query"] = by_query(correct, fitted, test_lengths, cfg)
    return record


def by_query(correct: np.ndarray, task: Task, lengths: np.ndarray, cfg: dict[str, Any]) -> dict:
    """Addition test accuracy by query q: a sum digit at a position marked in training
    (q <= D_train), a sum digit at a new position, or the carry out (q = D); None for a group
    without samples."""
    q = task.metadata["queries_test"]
    carry, seen = q == lengths, q <= cfg["addition"]["D_train"]
    groups = {"digit_at_trained_position": seen & ~carry, "digit_at_new_position": ~seen & ~carry,
              "carry_out": carry}  # fmt: skip
    return {k: float(correct[rows].mean()) if rows.any() else None for k, rows in groups.items()}


def majority_unit(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The reference row: the most frequent fitted label, scored like a model."""
    fitted, heldout, heldout_lengths, test_lengths = load_split(name, cfg)
    label = np.bincount(fitted.y_train).argmax()
    accuracy = per_length(heldout.y_train == label, heldout_lengths)
    accuracy |= per_length(fitted.y_test == label, test_lengths)
    record = {"task": name, "model": "majority", "seconds": 0.0, "accuracy_by_length": accuracy,
              "count_by_length": counts(heldout_lengths, test_lengths),
              "train_lengths": [int(L) for L in np.unique(lengths_of(fitted, "train"))]}  # fmt: skip
    if name == "addition":
        record["test_accuracy_by_query"] = by_query(
            fitted.y_test == label, fitted, test_lengths, cfg
        )
    return record


def table(records: list[dict[str, Any]], name: str) -> str:
    """Markdown table of accuracy by length (columns) and model (rows) for task ``name``."""
    rows = [r for r in records if r["task"] == name]
    if not rows:
        return ""
    lengths = sorted({int(L) for r in rows for L in r["accuracy_by_length"]})
    trained = set(rows[0]["train_lengths"])
    head = [f"{L}{'' if L in trained else '*'}" for L in lengths]
    lines = [f"| model | {' | '.join(head)} |", "|---" * (len(lengths) + 1) + "|"]
    for r in rows:
        acc = {int(k): v for k, v in r["accuracy_by_length"].items()}
        lines.append(f"| {r['model']} | " + " | ".join(f"{acc[L]:.2f}" for L in lengths) + " |")
    return "\n".join(lines)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: mean accuracy over the trained and over the longer lengths, per model, and the
    markdown tables (a * marks lengths longer than any fitted one)."""
    out: dict[str, Any] = {}
    for name in TASKS:
        rows = [r for r in records if r["task"] == name]
        if not rows:
            continue
        trained = set(rows[0]["train_lengths"])
        means = {}
        for r in rows:
            acc = {int(k): v for k, v in r["accuracy_by_length"].items()}
            means[r["model"]] = {
                "trained_lengths": float(np.mean([v for L, v in acc.items() if L in trained])),
                "longer_lengths": float(np.mean([v for L, v in acc.items() if L not in trained])),
            }
        out[name] = {"mean_accuracy": means, "table": table(records, name)}
    return out


def skipped(cfg: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{task: {model: why}} of the size's ``skip`` among the models run."""
    return {name: {m: why for m, why in models.items() if m in cfg["models"]}
            for name, models in cfg.get("skip", {}).items()}  # fmt: skip


def plot(results: dict[str, Any], path: Any) -> Any:
    records = results["records"]
    names = [n for n in TASKS if any(r["task"] == n for r in records)]
    fig, axes = _common.figure(1, len(names), size=(8.0, 5.0))
    for ax, name in zip(axes[0], names, strict=True):
        rows = [r for r in records if r["task"] == name]
        lengths = sorted({int(L) for r in rows for L in r["accuracy_by_length"]})
        grid = np.array(
            [[r["accuracy_by_length"][str(L)] for L in lengths] for r in rows], dtype=float
        )  # fmt: skip
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5,
                    color="k" if value > 0.6 else "w")  # fmt: skip
        ax.set_xticks(range(len(lengths)), [str(L) for L in lengths], fontsize=7)
        ax.set_yticks(range(len(rows)), [r["model"] for r in rows], fontsize=7)
        longest = max(rows[0]["train_lengths"])
        ax.axvline(lengths.index(longest) + 0.5, color="w", lw=2)
        ax.set(xlabel="length (right of the line: longer than trained)", title=name)
        fig.colorbar(image, ax=ax, label="accuracy")
    return _common.save_plot(fig, path)


def units(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """(task, model) pairs to fit: "majority" and every model not in the size's ``skip``."""
    skip = cfg.get("skip", {})
    return [(name, model) for name in TASKS for model in ["majority", *cfg["models"]]
            if model not in skip.get(name, {})]  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    records: list[dict[str, Any]] = _common.resumed(args, path, cfg, "records")
    done = {(r["task"], r["model"]) for r in records}
    results = {"config": cfg, "records": records, "skipped": skipped(cfg)}
    bar = tqdm([u for u in units(cfg) if u not in done], desc=NAME, disable=args.no_progress)
    for name, model in bar:
        bar.set_postfix_str(f"{name} {model}")
        unit = majority_unit(name, cfg) if model == "majority" else fit_unit(name, model, cfg)
        records.append(_common.to_jsonable(unit))
        _common.save_progress(path, results, records, summarize)
    return _common.finish(path, results, records, summarize, plot)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, results = _common.run_experiment(argv, parse_args, run, NAME)
    for name, entry in results["summary"].items():
        print(f"\n{name} (accuracy by length; * longer than trained)\n{entry['table']}")
    return results


if __name__ == "__main__":
    main()
