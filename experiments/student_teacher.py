"""Student-teacher: the certified convex program vs Adam/SGD on the same network vs softmax attention.

Data: ``cx.tasks.load("student_teacher", ...)`` with a "convex" teacher (sparse one-hot heads,
inside the model class) or a "softmax" teacher (random softmax attention, outside it), as
"regression" (one output, squared loss: P1 / eq. 8) or "classification" (c = 2 classes, softmax
cross-entropy: P2 / eq. 11). beta = ``beta_ratio`` x beta_max (the smallest beta with a zero
solution). Objectives are SUMS over samples plus the exact weight decay (``convextx.families``), so every
number below is on one scale.

Methods, per (teacher, problem, data seed), all ``convextx.zoo`` entries:

- convex: "convex-fista" (the certified optimum p* and its dual lower bound) and "convex-cvxpy"
  (an independent route to the same value);
- the same architecture (h = n c heads, enough for exact recovery) by "simplex-adam" and
  "simplex-sgd" (full batch), with both simplex parameterizations ("softmax" logits,
  "projection"), from several random starts; objective = sum loss + exact weight decay, scored
  by ``cx.nonconvex_objective`` and compared with p* (the convex fit's certificate, shared
  through the zoo's certificate cache): it may never fall below the certified lower bound
  (asserted by ``convextx.zoo.certificates.check_certified``);
- a 1-layer "softmax-transformer" (no FFN) trained by Adam with weight decay on its weight
  matrices: another model class, so only its test error is comparable;
- ``cx.path``: active tokens and heads along a beta path.

    python -m experiments.student_teacher            # CPU default, a few minutes
    python -m experiments.student_teacher --quick    # seconds (tests)
    python -m experiments.student_teacher --full     # paper scale (N=1000, n=16, d=32), GPU

Writes experiments/results/student_teacher[_quick|_full].json after every (setting, seed) unit
(``--resume`` keeps the units of a matching earlier run) and a PNG of the curves plus a PNG of
the attention maps next to it. Times are measured, never spread: FISTA's at the end of each
compiled chunk of iterations (compilation excluded), the trainers' at each logged step
(compilation and evaluation excluded); cvxpy's is the whole fit. "Time to 1e-3" is the first logged point with (F - p*) / |p*| <= 1e-3
(logged log-spaced, about 10 points per decade of steps), None if never.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

import convextx as cx
import solvers
from baselines import transformer
from convextx import zoo
from convextx.zoo.certificates import CERT_RTOL, check_certified
from experiments import _common
from solvers.fista import HISTORY_LENGTH

NAME = "student_teacher"
TEACHERS = ("convex", "softmax")
PROBLEMS = ("regression", "classification")
PARAMETERIZATIONS = ("softmax", "projection")
OPTIMIZERS = ("adam", "sgd")
THRESHOLD = 1e-3  # relative suboptimality for "time to reach"

SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(N_train=24, N_test=24, n=4, d=3, teacher_heads=2, steps=150, restarts=1,
                  seeds=[0], path_num=3, width=6, attn_heads=2, adam_lrs=[3e-2], sgd_lrs=[0.5],
                  softmax_restarts=1),
    "default": dict(N_train=200, N_test=200, n=8, d=8, teacher_heads=2, steps=2000, restarts=2,
                    seeds=[0, 1], path_num=8, width=16, attn_heads=2, adam_lrs=[3e-2],
                    sgd_lrs=[1.5], softmax_restarts=1),
    "full": dict(N_train=1000, N_test=1000, n=16, d=32, teacher_heads=4, steps=10000,
                 restarts=2, seeds=[0, 1, 2], path_num=15, width=64, attn_heads=4,
                 adam_lrs=[1e-2, 3e-2, 1e-1], sgd_lrs=[0.5, 1.5, 4.5], softmax_restarts=3),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--teachers", nargs="+", choices=TEACHERS, default=list(TEACHERS))
        parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS))
        parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
        parser.add_argument(
            "--parameterizations", nargs="+", choices=PARAMETERIZATIONS,
            default=list(PARAMETERIZATIONS),
        )  # fmt: skip
        parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run")
        parser.add_argument("--restarts", type=int, default=None, help="random starts per method")
        parser.add_argument("--beta-ratio", type=float, default=0.05, help="beta / beta_max")
        parser.add_argument("--noise", type=float, default=0.1, help="teacher output noise")
        parser.add_argument("--adam-lrs", type=float, nargs="+", default=None, help="grid")
        parser.add_argument(
            "--sgd-lrs", type=float, nargs="+", default=None,
            help="grid of SGD step x N (the objective is a sum over N samples)",
        )  # fmt: skip
        parser.add_argument("--softmax-lr", type=float, default=1e-2, help="Adam, transformer")
        parser.add_argument(
            "--softmax-restarts", type=int, default=None, help="transformer starts (0: none)"
        )

    args = _common.parse_args(__doc__.split("\n")[0], extra, argv)
    if not 0 < args.beta_ratio < 1:
        raise SystemExit(f"--beta-ratio must be in (0, 1), got {args.beta_ratio}")
    return args


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings: the size's defaults overridden by the command line."""
    cfg = dict(SIZES[args.size])
    for name in ("seeds", "steps", "restarts", "adam_lrs", "sgd_lrs", "softmax_restarts"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    cfg |= {
        "size": args.size,
        "teachers": list(args.teachers),
        "problems": list(args.problems),
        "optimizers": list(args.optimizers),
        "parameterizations": list(args.parameterizations),
        "beta_ratio": args.beta_ratio,
        "noise": args.noise,
        "softmax_lr": args.softmax_lr,
        "x64": bool(jax.config.jax_enable_x64),
    }
    return cfg


# ---------------------------------------------------------------------------------- metrics


def _round(values: Any, digits: int = 7) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=float).ravel()]


def error(metric: float | None) -> float:
    """The zoo's test metric as an error: 1 - accuracy (classification), 1 - R^2 = the
    normalized MSE mean (pred - y)^2 / var(y) (regression); nan for None (a diverged model)."""
    return float("nan") if metric is None else 1.0 - float(metric)


def row_entropy(weights: Any, mass: Any = None) -> float:
    """Mean entropy of the simplex rows of ``weights`` (..., n) in units of log n (0 = one-hot,
    1 = uniform), weighted by ``mass`` (one weight per row) when given."""
    w = np.asarray(weights, dtype=float).reshape(-1, np.shape(weights)[-1])
    ent = -np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0), axis=1)
    ent = ent / np.log(w.shape[1])
    mass = np.ones(len(w)) if mass is None else np.asarray(mass, dtype=float).ravel()
    return float(np.sum(ent * mass) / np.sum(mass)) if mass.sum() > 0 else float("nan")


def head_mass(heads: dict) -> np.ndarray:
    """|a_j|_1 |w2_j|: how much each head contributes (0 for an unused head)."""
    a = np.abs(np.asarray(heads["a"])).reshape(len(heads["a"]), -1).sum(1)
    return a * np.linalg.norm(np.asarray(heads["w2"]), axis=1)


def reach(curve: dict[str, list[float]], optimum: float, key: str = "time") -> float | None:
    """The first ``key`` value at which the objective is within THRESHOLD (relative) of p*."""
    rel = (np.asarray(curve["objective"]) - optimum) / abs(optimum)
    hit = np.flatnonzero(rel <= THRESHOLD)
    return float(curve[key][hit[0]]) if hit.size else None


# ------------------------------------------------------------------------------ the methods


def setting(problem: str) -> tuple[str, str, int]:
    """(kind, loss, c) of the convex program / head model for ``problem``."""
    return ("scalar", "squared", 1) if problem == "regression" else ("vector", "cross_entropy", 2)


def fit_convex(task: Any, kind: str, beta: float) -> dict[str, Any]:
    """The zoo's FISTA (certified optimum, its measured timeline) and cvxpy on one program."""
    settings = dict(kind=kind, beta=beta, tol=1e-10, max_iter=HISTORY_LENGTH)  # every iteration
    with warnings.catch_warnings():  # statuses are recorded (and checked) below
        warnings.simplefilter("ignore", ConvergenceWarning)
        fista = zoo.make("convex-fista", **settings).fit(task)
        if fista.report()["status"] != "optimal":  # a longer solve
            fista = zoo.make("convex-fista", **settings | {"max_iter": 400_000}).fit(task)
        exact = zoo.make("convex-cvxpy", **settings | {"tol": 1e-8}).fit(task)
    report, cvxpy, est = fista.report(), exact.report(), fista.estimator_
    recovered = cx.nonconvex_objective(
        est.heads_, task.X_train, task.y_train, beta, kind=kind, loss=est.loss_
    )
    history = report["history"]
    return {
        "objective": est.objective_,
        "lower_bound": report["details"]["lower_bound"],
        "gap": est.gap_,
        "status": est.status_,
        "iterations": report["details"]["iterations"],
        "seconds": report["details"]["solve_seconds"],
        "recovered_objective": recovered,
        "heads": int(len(est.heads_["a"])),
        "active_tokens": est.active_tokens_.tolist(),
        "attention": est.attention_.tolist(),
        "attention_entropy": row_entropy(est.attention_, head_mass(est.heads_)),
        "attention_entropy_all_heads": row_entropy(est.attention_),
        "test_error": error(report["test_metric"]),
        "train_error": error(report["train_metric"]),
        "curve": {
            "step": [int(i) for i in history["step"]],
            "time": _round(history["time"], 4),
            "objective": _round(history["objective"], 12),
        },
        "cvxpy": {
            "objective": cvxpy["objective"],
            "gap": cvxpy["gap"],
            "status": cvxpy["status"],
            "seconds": cvxpy["wall_seconds"],
            "method": cvxpy["details"]["solver"],
        },
    }


def _curve(report: dict[str, Any], objective: bool = True) -> dict[str, list]:
    """step, time, objective and test error of a zoo report's history."""
    history = report["history"]
    curve = {"step": [int(s) for s in history["step"]], "time": _round(history["time"])}
    if objective:
        curve["objective"] = _round(history["objective"], 10)
    curve["test_error"] = _round([error(m) for m in history["test_metric"]])
    return curve


def train_heads(
    task: Any, kind: str, beta: float, parameterization: str, optimizer: str, rate: float,
    start: int, cfg: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The zoo's simplex-adam / simplex-sgd (full batch) on eq. 8 / 11 with h = n c heads from
    random start ``start``; rate: Adam's learning rate, or SGD's times N. Its certificate is the
    convex fit's (the zoo's certificate cache: same task, kind, beta and tol)."""
    N, n, _ = task.X_train.shape
    h = n * setting(task.problem)[2]
    lr = rate if optimizer == "adam" else rate / N
    model = zoo.make(
        f"simplex-{optimizer}", kind=kind, beta=beta, heads=h, learning_rate=lr,
        steps=cfg["steps"], parameterization=parameterization, log_every="log", tol=1e-10,
        max_iter=400_000, seed=start,
    ).fit(task)  # fmt: skip
    report, heads = model.report(), model.heads_
    return {
        "parameterization": parameterization,
        "optimizer": optimizer,
        "start": start,
        "learning_rate": lr,
        "heads": h,
        "objective": model.objective_,
        "seconds": report["details"]["train_seconds"],
        "steps": report["details"]["steps"],
        "attention": np.round(heads["w1"], 4).tolist() if start % 1000 == 0 else None,
        "attention_entropy": row_entropy(heads["w1"], head_mass(heads)),
        "attention_entropy_all_heads": row_entropy(heads["w1"]),
        "test_error": error(report["test_metric"]),
        "curve": _curve(report),
    }


def train_softmax(task: Any, start: int, beta: float, cfg: dict[str, Any]) -> dict[str, Any]:
    """The zoo's softmax transformer: 1 layer, no FFN, learned positions, mean pool, by Adam
    (full batch) with weight decay beta / 2 |W|^2 on its weight matrices."""
    model = zoo.make(
        "softmax-transformer", ffn=None, width=cfg["width"], heads=cfg["attn_heads"],
        view="features", learning_rate=cfg["softmax_lr"], steps=cfg["steps"], batch_size=None,
        log_every="log", weight_decay=beta, seed=start,
    ).fit(task)  # fmt: skip
    report = model.report()
    X_test = jnp.asarray(task.X_test)
    maps = np.asarray(transformer.attention_maps(model.params_, X_test, model.config_)[0])
    return {
        "start": start,
        "objective_own": model.objective_,
        "seconds": report["details"]["train_seconds"],
        "attention": np.round(maps[0, 0], 4).tolist(),  # test sample 0, head 0: (L, L)
        "attention_entropy": row_entropy(maps),
        "test_error": error(report["test_metric"]),
        "curve": _curve(report, objective=False),
    }


def beta_path(task: Any, kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cx.path`` (reduce_support) from beta_max down to beta_max / 100."""
    bp = cx.path(
        task.X_train, task.y_train, X_test=task.X_test, y_test=task.y_test,
        num=cfg["path_num"], min_ratio=1e-2, kind=kind, tol=1e-8, max_iter=100_000,
    )  # fmt: skip
    keys = ("beta", "objective", "gap", "status", "active_tokens", "heads", "test_score")
    return {"beta_max": bp.beta_max, "records": [{k: r[k] for k in keys} for r in bp.records]}


def run_unit(teacher: str, problem: str, seed: int, cfg: dict, progress: bool) -> dict[str, Any]:
    """Every method on one (teacher, problem, data seed)."""
    task = cx.tasks.load(
        "student_teacher", N_train=cfg["N_train"], N_test=cfg["N_test"], n=cfg["n"], d=cfg["d"],
        heads=cfg["teacher_heads"], teacher=teacher, problem=problem, noise=cfg["noise"],
        seed=seed,
    )  # fmt: skip
    kind, loss, _ = setting(problem)
    probe = cx.convex_program(task.X_train, task.y_train, kind, 1.0, loss)
    beta_max = solvers.beta_max(probe.problem)
    beta = cfg["beta_ratio"] * beta_max
    convex = fit_convex(task, kind, beta)
    optimum = convex["objective"]
    runs = []
    starts = [1000 * seed + r for r in range(cfg["restarts"])]
    grid = [
        (parameterization, optimizer, rate, start)
        for parameterization in cfg["parameterizations"]
        for optimizer in cfg["optimizers"]
        for rate in cfg[f"{optimizer}_lrs"]
        for start in starts
    ]
    for parameterization, optimizer, rate, start in grid:
        run = train_heads(task, kind, beta, parameterization, optimizer, rate, start, cfg)
        run["margin_above_bound"] = check_certified(
            [run["objective"], *run["curve"]["objective"]], convex["lower_bound"], CERT_RTOL,
            f"{optimizer}/{parameterization} start {start}",
        )  # fmt: skip
        run["relative_suboptimality"] = (run["objective"] - optimum) / abs(optimum)
        run["time_to_threshold"] = reach(run["curve"], optimum, "time")
        run["steps_to_threshold"] = reach(run["curve"], optimum, "step")
        runs.append(run)
    softmax = [train_softmax(task, start, beta, cfg) for start in starts[: cfg["softmax_restarts"]]]
    convex["time_to_threshold"] = reach(convex["curve"], optimum, "time")
    convex["steps_to_threshold"] = reach(convex["curve"], optimum, "step")
    return {
        "key": f"{teacher}/{problem}/{seed}",
        "teacher": teacher,
        "problem": problem,
        "seed": seed,
        "kind": kind,
        "loss": loss,
        "beta_max": beta_max,
        "beta": beta,
        "convex": convex,
        "nonconvex": runs,
        "softmax_attention": softmax,
        "path": beta_path(task, kind, cfg) if seed == cfg["seeds"][0] else None,
    }


# ------------------------------------------------------------------------------ summary


def summarize(units: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (teacher, problem) and method: suboptimality, time to 1e-3, test error; the minimum
    margin above the certified lower bound over every nonconvex run."""
    out: dict[str, Any] = {}
    for key in sorted({f"{u['teacher']}/{u['problem']}" for u in units}):
        group = [u for u in units if f"{u['teacher']}/{u['problem']}" == key]
        convex = [u["convex"] for u in group]
        entry: dict[str, Any] = {
            "convex_fista": {
                "seconds": _stats([c["seconds"] for c in convex]),
                "iterations": _stats([c["iterations"] for c in convex]),
                "max_relative_gap": max(c["gap"] / abs(c["objective"]) for c in convex),
                "max_recovery_error": max(
                    abs(c["recovered_objective"] - c["objective"]) / abs(c["objective"])
                    for c in convex
                ),
                "test_error": _stats([c["test_error"] for c in convex]),
                "attention_entropy": _stats([c["attention_entropy"] for c in convex]),
            },
            "convex_cvxpy": {
                "seconds": _stats([c["cvxpy"]["seconds"] for c in convex]),
                "max_relative_difference": max(
                    abs(c["cvxpy"]["objective"] - c["objective"]) / abs(c["objective"])
                    for c in convex
                ),
            },
        }
        for parameterization in PARAMETERIZATIONS:
            for optimizer in OPTIMIZERS:
                runs = [
                    r
                    for u in group
                    for r in u["nonconvex"]
                    if r["parameterization"] == parameterization and r["optimizer"] == optimizer
                ]
                if runs:
                    entry[f"{optimizer}/{parameterization}"] = _method_summary(runs)
        softmax = [s for u in group for s in u["softmax_attention"]]
        if softmax:
            entry["adam/softmax_attention"] = {
                "runs": len(softmax),
                "test_error": _stats([s["test_error"] for s in softmax]),
                "seconds": _stats([s["seconds"] for s in softmax]),
                "attention_entropy": _stats([s["attention_entropy"] for s in softmax]),
            }
        out[key] = entry
    runs = [r for u in units for r in u["nonconvex"]]
    margins = [r["margin_above_bound"] for r in runs if r["margin_above_bound"] is not None]
    out["nonconvex_runs"] = len(runs)
    out["diverged_runs"] = len(runs) - len(margins)
    out["all_nonconvex_above_certified_bound"] = bool(margins) and min(margins) >= -CERT_RTOL
    out["min_margin_above_bound"] = min(margins) if margins else None
    return out


def _method_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Statistics over the finite runs of one method (all seeds, starts and learning rates)."""
    finite = [r for r in runs if r["margin_above_bound"] is not None]
    reached = [r["time_to_threshold"] for r in finite if r["time_to_threshold"] is not None]
    out: dict[str, Any] = {"runs": len(runs), "diverged": len(runs) - len(finite)}
    if finite:
        out |= {
            "relative_suboptimality": _stats([r["relative_suboptimality"] for r in finite]),
            "reached_threshold": len(reached),
            "time_to_threshold": _stats(reached) if reached else None,
            "seconds": _stats([r["seconds"] for r in finite]),
            "test_error": _stats([r["test_error"] for r in finite]),
            "attention_entropy": _stats([r["attention_entropy"] for r in finite]),
            "attention_entropy_all_heads": _stats(
                [r["attention_entropy_all_heads"] for r in finite]
            ),
            "min_margin_above_bound": min(r["margin_above_bound"] for r in finite),
        }
    return out


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {
        "median": float(np.median(v)),
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


# --------------------------------------------------------------------------------- plots

COLORS = {
    "adam/softmax": "tab:blue",
    "adam/projection": "tab:cyan",
    "sgd/softmax": "tab:red",
    "sgd/projection": "tab:orange",
    "fista": "black",
    "softmax attention": "tab:green",
}


def plot(results: dict[str, Any], path: Any) -> list[Any]:
    """Curves (objective vs time and steps with p*, suboptimality, test error, active tokens vs
    beta) per setting for the first seed, and the attention maps; returns the PNG paths."""
    units = [u for u in results["units"] if u["seed"] == results["config"]["seeds"][0]]
    if not units:
        return []
    fig, axes = _common.figure(len(units), 5)
    for row, unit in zip(axes, units, strict=True):
        _plot_unit(row, unit)
    paths = [_common.save_plot(fig, path)]
    fig, axes = _common.figure(len(units), 3, size=(3.2, 2.8))
    for row, unit in zip(axes, units, strict=True):
        _plot_maps(row, unit)
    paths.append(_common.save_plot(fig, str(path).removesuffix(".json") + "_attention.png"))
    return paths


def _plot_unit(row: Any, unit: dict[str, Any]) -> None:
    optimum = unit["convex"]["objective"]
    title = f"{unit['teacher']} teacher, {unit['problem']}"
    fista = unit["convex"]["curve"]
    for ax, x in ((row[0], "time"), (row[1], "step")):
        xs = np.maximum(fista[x], 1e-4 if x == "time" else 1)
        ax.plot(xs, fista["objective"], color=COLORS["fista"], label="convex (FISTA)")
        for run in unit["nonconvex"]:
            name = f"{run['optimizer']}/{run['parameterization']}"
            xs = np.maximum(run["curve"][x], 1e-4 if x == "time" else 1)
            ys = np.asarray(run["curve"]["objective"], dtype=float)  # None (diverged): a gap
            ax.plot(xs, ys, color=COLORS[name], lw=0.8, alpha=0.8)
        ax.axhline(optimum, color="k", ls="--", lw=0.8, label="certified optimum p*")
        if x == "time":
            cv = unit["convex"]["cvxpy"]
            ax.plot([cv["seconds"]], [cv["objective"]], "k*", ms=9, label="convex (cvxpy)")
        ax.set(xscale="log", yscale="log", xlabel="seconds" if x == "time" else "iterations",
               ylabel="training objective", title=title)  # fmt: skip
    ax = row[2]
    for run in unit["nonconvex"]:
        name = f"{run['optimizer']}/{run['parameterization']}"
        sub = (np.asarray(run["curve"]["objective"], dtype=float) - optimum) / abs(optimum)
        ax.plot(np.maximum(run["curve"]["time"], 1e-4), np.maximum(sub, 1e-12),
                color=COLORS[name], lw=0.8, label=name)  # fmt: skip
    sub = (np.asarray(fista["objective"]) - optimum) / abs(optimum)
    ax.plot(np.maximum(fista["time"], 1e-4), np.maximum(sub, 1e-12), color="k", label="FISTA")
    ax.axhline(THRESHOLD, color="gray", ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="seconds", ylabel="(F - p*) / p*")
    _dedupe_legend(ax)
    ax = row[3]
    for run in unit["nonconvex"]:
        name = f"{run['optimizer']}/{run['parameterization']}"
        errors = np.asarray(run["curve"]["test_error"], dtype=float)
        ax.plot(np.maximum(run["curve"]["step"], 1), errors, color=COLORS[name], lw=0.8)
    for run in unit["softmax_attention"]:
        ax.plot(np.maximum(run["curve"]["step"], 1), run["curve"]["test_error"],
                color=COLORS["softmax attention"], lw=1, label="softmax attention (Adam)")  # fmt: skip
    ax.axhline(unit["convex"]["test_error"], color="k", ls="--", lw=0.8, label="convex")
    ylabel = "test error rate" if unit["problem"] == "classification" else "test NMSE"
    ax.set(xscale="log", xlabel="iterations", ylabel=ylabel)
    _dedupe_legend(ax)
    row[0].legend(fontsize=7)
    ax = row[4]
    if unit["path"] is not None:
        records = unit["path"]["records"]
        betas = [r["beta"] for r in records]
        ax.plot(betas, [r["active_tokens"] for r in records], "o-", label="active tokens")
        ax.plot(betas, [r["heads"] for r in records], "s--", label="heads (reduced)")
        ax.axvline(unit["beta"], color="gray", ls=":", lw=0.8)
        ax.set(xscale="log", xlabel="beta", ylabel="count", title="cx.path")
        ax.legend(fontsize=7)
    else:
        ax.axis("off")


def _dedupe_legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7)


def _plot_maps(row: Any, unit: dict[str, Any]) -> None:
    runs = unit["nonconvex"]
    shown = [r for r in runs if r["attention"] is not None]  # the first start of each method
    adam = next((r for r in shown if r["optimizer"] == "adam"), shown[0])
    softmax = unit["softmax_attention"][0] if unit["softmax_attention"] else None
    maps = [
        ("convex (recovered heads)", unit["convex"]),
        (f"{adam['optimizer']}, {adam['parameterization']} simplex", adam),
        ("softmax attention, head 0, sample 0", softmax),
    ]
    row[2].axis("off")
    for ax, (title, run) in zip(row, maps[: 2 if softmax is None else 3], strict=False):
        ax.axis("on")
        w = np.asarray(run["attention"])
        ax.imshow(w, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        entropy = f"entropy {run['attention_entropy']:.2f}"
        if "attention_entropy_all_heads" in run:
            entropy += f" (used heads), {run['attention_entropy_all_heads']:.2f} (all)"
        ax.set(
            title=f"{title}\n{entropy}",
            xlabel="token",
            ylabel="head" if run is not softmax else "row",
        )
        ax.title.set_fontsize(8)
    row[0].set_ylabel(f"{unit['teacher']}/{unit['problem']}: head")


# ---------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) every unit, writing the JSON after each; then the summary and plots."""
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    units = _common.resumed(args, path, cfg, "units")
    done = {u["key"] for u in units}
    todo = [
        (t, p, s)
        for t in cfg["teachers"]
        for p in cfg["problems"]
        for s in cfg["seeds"]
        if f"{t}/{p}/{s}" not in done
    ]
    results = {"config": cfg, "summary": summarize(units) if units else None, "units": units}
    bar = tqdm(todo, desc=NAME, disable=args.no_progress)
    for teacher, problem, seed in bar:
        bar.set_postfix_str(f"{teacher}/{problem}/seed {seed}")
        units.append(run_unit(teacher, problem, seed, cfg, progress=False))
        results["summary"] = summarize(units)
        _common.write_json(path, results, indent=None)
    results["summary"] = summarize(units)
    results = _common.to_jsonable(results)
    _common.write_json(path, results, indent=None)
    results["plots"] = [str(p) for p in plot(results, path)]
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    jax.config.update("jax_enable_x64", True)  # certified optima are compared to 1e-6
    args = parse_args(argv)
    results = run(args)
    summary = results["summary"]
    print(f"wrote {_common.out_path(args, NAME)} and {results['plots']}")
    print(f"every nonconvex run above the certified bound: "
          f"{summary['all_nonconvex_above_certified_bound']} "
          f"(min margin {summary['min_margin_above_bound']:.3g})")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
