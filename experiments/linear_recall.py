"""Content-based retrieval: the convex linear-attention family against the zoo, by length.

Tasks (``context="pairs"``: a FIXED first layer appends each token's predecessor to it, so one
attention layer can match a key stored next to its value):

- ``associative_recall`` with m key-value pairs (length 2 m + 1; keys >= m distinct, 8 values,
  so chance is 1/8): m = 4, 8, 16, 32, 64, i.e. lengths 9, 17, 33, 65, 129;
- ``needle`` of length 8, 32 and 128 (8 symbols; chance 1/8).

Models: the convex linear family (P5, certified, ``ConvexAttention`` defaults: tol 1e-6 in
float64, 10,000 iterations), its Adam twin (the same heads network and objective), the
simplex convex family (P2) and its Adam twin, a 2-layer softmax transformer, GSS and MoE. The
trained models get a fixed number of steps (``TRAINED_STEPS``) rather than a time budget, so
that what they reach does not depend on the machine's load, and every run is capped at
``--budget`` seconds of wall time (which binds the convex solves too: they stop with status
"time_limit"). Two size limits, each reported as "too large" rather than run:

- the convex linear program's variable Z is (r_q r_s, r_s c) (see ``convextx.families.linear``);
  one of more than ``--max-entries`` entries is not built, for the Adam twin either (its
  certificate works on Z). At 32 pairs Z is (5499, 1128), 6.2e6 entries; at 128 tokens of
  needle (2304, 1152), 2.7e6;
- the Adam twin has as many heads h as Z's largest possible rank (min(r_q r_s, r_s c)), and its
  full-batch steps hold (N, h, max(n, d)) arrays: it is not trained when that is more than
  ``--max-twin-entries`` (needle at 128 tokens: h = 1152, 1.3e9 entries, 10 GB in float64).

Reported per (task, length, model): test accuracy, train objective, status, relative gap where
certified (for the Adam twins: those of the certified solve they are measured against; the
linear twin's "certificate" names its source), the linear twin's certified excess, steps, wall
seconds (for the twins, training plus the untimed certificate).

    python -m experiments.linear_recall            # under an hour on 2 CPU cores
    python -m experiments.linear_recall --quick    # seconds (tests)
    python -m experiments.linear_recall --cells associative_recall:16 --models convex-linear \
        --budget 600 --out DIR/recall16.json         # some cells of the grid, a longer budget
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import numpy as np

import convextx as cx
from convextx import bench
from convextx.families import linear as linear_family
from experiments import _common

TRAINED_STEPS = 4000
# The models under the size limits (module docstring).
LINEAR_MODELS = ("convex-linear", "linear-adam")
TRANSFORMER = {"width": 64, "depth": 2, "heads": 4, "pooling": "last"}
MODELS: dict[str, dict[str, Any]] = {
    "convex-linear": {},
    "linear-adam": {"steps": TRAINED_STEPS},
    "convex-fista": {},
    "simplex-adam": {"steps": TRAINED_STEPS},
    "softmax-transformer": TRANSFORMER | {"steps": TRAINED_STEPS},
    "gss": TRANSFORMER | {"steps": TRAINED_STEPS},
    "moe": TRANSFORMER | {"steps": TRAINED_STEPS},
}
MODEL_ORDER = {name: i for i, name in enumerate(MODELS)}
SIZES = {
    "quick": dict(
        grid=[("needle", 4)], N_train=64, N_test=32, steps=20, budget=30.0,
        models=["convex-linear", "linear-adam"],
    ),
    "default": dict(
        grid=[("associative_recall", m) for m in (4, 8, 16, 32, 64)]
        + [("needle", L) for L in (8, 32, 128)],
        N_train=4096, N_test=1024, steps=TRAINED_STEPS, budget=90.0, models=list(MODELS),
    ),
}  # fmt: skip


def task_settings(task: str, size: int, N_train: int, N_test: int) -> dict[str, Any]:
    """``cx.tasks.load`` settings: ``size`` is the number of pairs (recall) or the length."""
    common = {"N_train": N_train, "N_test": N_test, "context": "pairs"}
    if task == "associative_recall":
        return common | {"num_pairs": size, "num_keys": max(8, size), "num_values": 8}
    return common | {"length": size, "num_symbols": 8}


def linear_variable_shape(X: np.ndarray, c: int) -> tuple[int, int]:
    """(r_q r_s, r_s c) of the linear family's reduced variable Z on training features X
    (N, n, d) with c outputs (query = the last token), without building the program."""
    Qq, Qs = linear_family.bases(X, -1)
    rq, rs = Qq.shape[1], Qs.shape[1]
    return rq * rs, rs * c


def too_large(model: str, X: np.ndarray, shape: tuple[int, int], args: Any) -> bool:
    """Whether ``model`` is over a size limit (module docstring) on features X (N, n, d)."""
    if model not in LINEAR_MODELS:
        return False
    if shape[0] * shape[1] > args.max_entries:
        return True
    N, n, d = X.shape
    return model == "linear-adam" and N * min(shape) * max(n, d) > args.max_twin_entries


def run_cell(task: cx.tasks.Task, model: str, cfg: dict[str, Any], budget: float) -> dict:
    """One (task, model) run as a compact record (bench.run_one, then the columns we report)."""
    tic = time.perf_counter()
    row = bench.run_one(task, model, 0, cfg, budget_seconds=budget)
    if "error" in row:
        return {"model": model, "error": row["error"], "wall_seconds": time.perf_counter() - tic}
    details = row["details"]
    steps = row["history"].get("step")
    gap = row["gap"]
    return {
        "model": model,
        "test_accuracy": row["test_metric"],
        "train_accuracy": row["train_metric"],
        "objective": row["objective"],
        "status": row["status"],
        "relative_gap": None if gap is None else gap / max(1.0, abs(row["certified_optimum"])),
        "certified_excess": details.get("certified_excess"),
        "certificate": details.get("certificate"),
        "steps": None if steps is None else int(max(steps)),
        "wall_seconds": row["wall_seconds"],
        "settings": cfg,
    }


def main(argv: list[str] | None = None) -> None:
    args = _common.parse_args(
        __doc__.split("\n")[0],
        lambda p: (
            p.add_argument("--budget", type=float, default=None, help="seconds per run"),
            p.add_argument("--max-entries", type=int, default=3_000_000),
            p.add_argument("--max-twin-entries", type=int, default=500_000_000),
            p.add_argument("--cells", nargs="+", type=_cell, default=None, help="TASK:SIZE"),
            p.add_argument("--models", nargs="+", choices=list(MODELS), default=None),
        ),
        argv,
    )
    if args.size == "full":
        raise SystemExit("linear_recall has no --full size; the default is the full grid")
    jax.config.update("jax_enable_x64", True)
    size = SIZES[args.size]
    if args.cells is not None:
        size = size | {"grid": args.cells}
    if args.models is not None:
        size = size | {"models": args.models}
    budget = args.budget or size["budget"]
    path = _common.out_path(args, "linear_recall")
    done = _common.read_json(path)["cells"] if args.resume and path.exists() else []
    finished = {(c["task"], c["size"], c["model"]) for c in done if "error" not in c}
    cells = [c for c in done if (c["task"], c["size"], c["model"]) in finished]
    for task_name, task_size in size["grid"]:
        settings = task_settings(task_name, task_size, size["N_train"], size["N_test"])
        task = cx.tasks.load(task_name, **settings)
        shape = linear_variable_shape(task.X_train, task.output_dim)
        for model in size["models"]:
            if (task_name, task_size, model) in finished:
                continue
            key = {"task": task_name, "size": task_size, "length": task.n_tokens}
            cfg = dict(MODELS[model])
            if "steps" in cfg:
                cfg["steps"] = size["steps"]
            if too_large(model, task.X_train, shape, args):
                record = {"model": model, "status": "too large", "variable": shape}
            else:
                record = run_cell(task, model, cfg, budget)
            cells.append(key | record | {"variable": shape})
            print(_line(cells[-1]), flush=True)
            _common.write_json(path, {"budget_seconds": budget, "cells": cells})
    order = {(task, size): i for i, (task, size) in enumerate(size["grid"])}
    cells.sort(
        key=lambda c: (order.get((c["task"], c["size"]), len(order)), MODEL_ORDER[c["model"]])
    )
    _common.write_json(path, {"budget_seconds": budget, "cells": cells})
    print(table(cells))


def _cell(text: str) -> tuple[str, int]:
    """``--cells`` TASK:SIZE as (task, size), e.g. associative_recall:16 (pairs) or needle:32."""
    task, _, size = text.partition(":")
    if task not in ("associative_recall", "needle") or not size.isdigit() or int(size) < 1:
        raise argparse.ArgumentTypeError(
            f"a cell is associative_recall:PAIRS or needle:LENGTH (a positive int); got {text!r}"
        )
    return task, int(size)


def _line(cell: dict) -> str:
    accuracy = cell.get("test_accuracy")
    return (
        f"{cell['task']:>18} L={cell['length']:<4} {cell['model']:<20} "
        f"test {'-' if accuracy is None else f'{accuracy:.3f}'}  {cell.get('status', cell.get('error'))}"
        f"  {cell.get('wall_seconds', 0):.0f} s"
    )


def table(cells: list[dict]) -> str:
    """A Markdown table: one row per (task, length), one column per model (test accuracy)."""
    models = list(dict.fromkeys(c["model"] for c in cells))
    keys = list(dict.fromkeys((c["task"], c["length"]) for c in cells))
    lines = ["| task | length | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for task, length in keys:
        row = {c["model"]: c for c in cells if (c["task"], c["length"]) == (task, length)}
        entries = [_entry(row.get(m)) for m in models]
        lines.append(f"| {task} | {length} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def _entry(cell: dict | None) -> str:
    if cell is None:
        return ""
    if "error" in cell:
        return "error"
    if cell.get("status") == "too large":
        return "too large"
    text = f"{cell['test_accuracy']:.3f}"
    if cell.get("status") not in (None, "optimal", "bound", "diverged"):
        text += f" ({cell['status']})"
    return text


if __name__ == "__main__":
    main()
