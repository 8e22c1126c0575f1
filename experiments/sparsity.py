"""Token sparsity of the convex optimum: active tokens vs beta and vs N, against min(n, N + 1).

The group penalty of P1/P2 (one group per token, per output) makes most token rows of Z exactly
zero; support reduction (Caratheodory, ``solvers.reduce_support``) gives an optimum whose atoms
are linearly independent, hence at most N + 1 groups per output and so at most min(n, N + 1)
active tokens per output. Every recovered head is one-hot on a token.

For kinds "scalar" (P1, one output) and "vector" (P2, c outputs), squared loss, on
student-teacher data with a softmax teacher (every token carries signal, so sparsity comes from
the penalty, not from the data):

- vs beta: ``cx.path`` from beta_max down to ``min_ratio`` beta_max at N = n / 2 (the bound
  N + 1 < n binds) and at N = 4 n (the bound is n);
- vs N: ``ConvexAttention(reduce_support=True)`` at beta = ``beta_ratio`` beta_max for each N;
- vs N on degenerate data ("N_duplicated"): every token appears twice (n / 2 distinct tokens),
  so optima are not unique and the solver may spread weight over both copies; the reduction
  then has something to remove.

Recorded per fit: active tokens of the solver's solution (``coef_``: the union over
outputs, and the largest count for one output), heads and active tokens after support
reduction (``heads_``; largest count over outputs and the union), the bound min(n, N + 1), and
whether every recovered head is one-hot (asserted).

    python -m experiments.sparsity            # CPU default, about a minute
    python -m experiments.sparsity --quick    # seconds (tests)
    python -m experiments.sparsity --full     # larger n, d, N and more seeds

Writes experiments/results/sparsity[_quick|_full].json after every fit (``--resume`` keeps the
fits of a matching earlier run) and a PNG next to it.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import convextx as cx
import solvers
from experiments import _common

NAME = "sparsity"
KINDS = ("scalar", "vector")
SWEEPS = ("beta", "N", "N_duplicated")

SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(n=6, d=3, c=2, Ns=[3, 24], seeds=[0], path_num=4),  # the beta sweep's N
    "default": dict(n=16, d=8, c=3, Ns=[2, 4, 8, 16, 32, 64], seeds=[0, 1, 2], path_num=10),
    "full": dict(n=32, d=32, c=4, Ns=[2, 4, 8, 16, 32, 64, 128, 256, 512], seeds=[0, 1, 2, 3, 4],
                 path_num=20),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
        parser.add_argument("--beta-ratio", type=float, default=1e-3, help="beta / beta_max vs N")
        parser.add_argument("--min-ratio", type=float, default=1e-3, help="path end / beta_max")

    args = _common.parse_args(__doc__.split("\n")[0], extra, argv)
    for name in ("beta_ratio", "min_ratio"):
        if not 0 < getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be in (0, 1)")
    return args


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(SIZES[args.size])
    if args.seeds is not None:
        cfg["seeds"] = args.seeds
    return cfg | {
        "size": args.size,
        "kinds": list(args.kinds),
        "beta_ratio": args.beta_ratio,
        "min_ratio": args.min_ratio,
    }


def load(kind: str, N: int, seed: int, cfg: dict[str, Any], duplicated: bool = False) -> tuple:
    """(X (N, n, d), y): student-teacher regression data, softmax teacher, y (N,) for "scalar"
    and (N, c) for "vector". duplicated: n / 2 tokens, each appearing twice."""
    task = cx.tasks.load(
        "student_teacher", N_train=N, N_test=1, n=cfg["n"] // 2 if duplicated else cfg["n"],
        d=cfg["d"], c=1 if kind == "scalar" else cfg["c"], teacher="softmax",
        problem="regression", noise=0.1, seed=seed,
    )  # fmt: skip
    X = np.concatenate([task.X_train] * 2, axis=1) if duplicated else task.X_train
    return X, task.y_train


def reduced_tokens(est: cx.ConvexAttention) -> tuple[list[int], int]:
    """Tokens used by the recovered (support-reduced) heads: their union, and the largest count
    for a single output. Asserts every used head attends to exactly one token."""
    heads = est.heads_
    a = np.asarray(heads["a"]).reshape(len(heads["a"]), -1)
    used = np.abs(a).sum(1) > 0
    w1 = np.asarray(heads["w1"])[used]
    assert np.all(np.count_nonzero(w1, axis=1) == 1) and np.allclose(w1.max(1), 1.0), (
        "a recovered head is not one-hot"
    )
    token = w1.argmax(1)
    output = np.abs(a[used]).argmax(1)
    per_output = [np.unique(token[output == l]).size for l in range(a.shape[1])]
    return sorted(np.unique(token).tolist()), max(per_output, default=0)


def record(est: cx.ConvexAttention, kind: str, N: int, seed: int, sweep: str, beta_max: float,
           n: int) -> dict[str, Any]:  # fmt: skip
    """One fit's counts, checked against the Caratheodory bounds."""
    union, per_output = reduced_tokens(est)
    outputs = 1 if kind == "scalar" else est.program_.outputs
    row_norms = np.linalg.norm(np.asarray(est.coef_).reshape(outputs, n, -1), axis=-1)
    bound = min(n, N + 1)
    heads = int(np.count_nonzero(np.abs(np.asarray(est.heads_["a"])).reshape(-1, outputs).sum(1)))
    entry = {
        "kind": kind,
        "sweep": sweep,
        "N": N,
        "seed": seed,
        "beta": float(est.beta),
        "beta_ratio": float(est.beta) / beta_max,
        "objective": est.objective_,
        "relative_gap": est.solve_result_.relative_gap,
        "status": est.status_,
        "active_tokens": int(est.program_.active_tokens(est.coef_).size),
        "active_tokens_per_output": int(np.count_nonzero(row_norms, axis=1).max()),
        "heads": heads,
        "reduced_tokens": len(union),
        "reduced_tokens_per_output": per_output,
        "bound": bound,
        "heads_bound": N * outputs + 1,
    }
    entry["within_bound"] = per_output <= bound and heads <= entry["heads_bound"]
    assert entry["within_bound"], f"Caratheodory bound violated: {entry}"
    return entry


def beta_sweep(kind: str, N: int, seed: int, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    X, y = load(kind, N, seed, cfg)
    bp = cx.path(
        X, y, num=cfg["path_num"], min_ratio=cfg["min_ratio"],
        kind=kind, loss="squared", tol=1e-8, max_iter=200_000, reduce_support=True,
    )  # fmt: skip
    return [record(est, kind, N, seed, "beta", bp.beta_max, cfg["n"]) for est in bp.estimators]


def n_point(kind: str, N: int, seed: int, cfg: dict[str, Any], sweep: str) -> dict[str, Any]:
    X, y = load(kind, N, seed, cfg, duplicated=sweep == "N_duplicated")
    probe = cx.convex_program(X, y, kind, 1.0, "squared")
    beta_max = solvers.beta_max(probe.problem)
    est = cx.ConvexAttention(
        kind=kind, beta=cfg["beta_ratio"] * beta_max, loss="squared", tol=1e-8,
        max_iter=200_000, reduce_support=True,
    ).fit(X, y)  # fmt: skip
    return record(est, kind, N, seed, sweep, beta_max, cfg["n"])


def units(cfg: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(sweep, kind, N, seed) in run order."""
    n = cfg["n"]
    out = [("beta", k, N, s) for k in cfg["kinds"] for N in (n // 2, 4 * n) for s in cfg["seeds"]]
    return out + [
        (sweep, k, N, s)
        for sweep in ("N", "N_duplicated")
        for k in cfg["kinds"]
        for N in cfg["Ns"]
        for s in cfg["seeds"]
    ]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether every fit met the bounds; how often the solver's own solution exceeded min(n, N+1)
    (i.e. needed the reduction) and the largest token count relative to the bound."""
    out: dict[str, Any] = {"fits": len(records)}
    for kind in sorted({r["kind"] for r in records}):
        rs = [r for r in records if r["kind"] == kind]
        out[kind] = {
            "fits": len(rs),
            "all_within_bound": all(r["within_bound"] for r in rs),
            "max_reduced_tokens_over_bound": max(r["reduced_tokens_per_output"] / r["bound"]
                                                 for r in rs),
            "unreduced_above_bound": {
                sweep: sum(r["active_tokens_per_output"] > r["bound"] for r in rs if r["sweep"] == sweep)
                for sweep in SWEEPS
            },
            "reduction_removed_tokens": {
                sweep: sum(r["reduced_tokens"] < r["active_tokens"] for r in rs if r["sweep"] == sweep)
                for sweep in SWEEPS
            },
            "max_relative_gap": max(r["relative_gap"] for r in rs),
        }  # fmt: skip
    return out


def plot(results: dict[str, Any], path: Any) -> Any:
    """Per kind: tokens vs beta / beta_max (two N), and tokens vs N (generic and duplicated
    tokens) with the bound min(n, N + 1); all counts per output (max over outputs)."""
    cfg = results["config"]
    kinds = [k for k in cfg["kinds"] if any(r["kind"] == k for r in results["records"])]
    fig, axes = _common.figure(max(len(kinds), 1), 3, size=(4.6, 3.4))
    for row, kind in zip(axes, kinds, strict=False):
        rs = [r for r in results["records"] if r["kind"] == kind]
        _plot_beta(row[0], [r for r in rs if r["sweep"] == "beta"], cfg, kind)
        for ax, sweep in zip(row[1:], ("N", "N_duplicated"), strict=True):
            _plot_n(ax, [r for r in rs if r["sweep"] == sweep], cfg, sweep)
    return _common.save_plot(fig, path)


def _plot_beta(ax: Any, rs: list[dict[str, Any]], cfg: dict[str, Any], kind: str) -> None:
    for N, color in zip(sorted({r["N"] for r in rs}), ("C0", "C3"), strict=False):
        for s in cfg["seeds"]:
            line = [r for r in rs if r["N"] == N and r["seed"] == s]
            x = [r["beta_ratio"] for r in line]
            first = s == cfg["seeds"][0]
            ax.plot(x, [r["active_tokens_per_output"] for r in line], "o-", color=color, ms=3,
                    alpha=0.6, label=f"N={N}: solver" if first else None)  # fmt: skip
            ax.plot(x, [r["reduced_tokens_per_output"] for r in line], "x--", color=color,
                    ms=5, alpha=0.6, label=f"N={N}: reduced" if first else None)  # fmt: skip
        ax.axhline(min(cfg["n"], N + 1), color=color, ls=":", lw=1)
    ax.set(xscale="log", xlabel="beta / beta_max", ylabel="active tokens (per output)",
           title=f"{kind}: n={cfg['n']}, d={cfg['d']}; dotted: min(n, N+1)")  # fmt: skip
    ax.legend(fontsize=7)


def _plot_n(ax: Any, rs: list[dict[str, Any]], cfg: dict[str, Any], sweep: str) -> None:
    Ns = np.array(sorted({r["N"] for r in rs}))
    for key, marker, shift, label in (
        ("active_tokens_per_output", "o", 0.95, "solver"),
        ("reduced_tokens_per_output", "x", 1.05, "after support reduction"),
    ):  # shift: side by side on the log axis
        ax.scatter([r["N"] * shift for r in rs], [r[key] for r in rs], marker=marker, label=label)
    ax.plot(Ns, np.minimum(cfg["n"], Ns + 1), "k--", label="min(n, N + 1)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ns, [str(N) for N in Ns])
    title = f"beta = {cfg['beta_ratio']:g} beta_max"
    if sweep == "N_duplicated":
        title += ", every token twice"
    ax.set(xlabel="N (samples)", ylabel="active tokens (per output)", title=title)
    ax.legend(fontsize=7)


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    records: list[dict[str, Any]] = _common.resumed(args, path, cfg, "records")
    done = {(r["sweep"], r["kind"], r["N"], r["seed"]) for r in records}
    results = {"config": cfg, "records": records}
    bar = tqdm([u for u in units(cfg) if u not in done], desc=NAME, disable=args.no_progress)
    for sweep, kind, N, seed in bar:
        bar.set_postfix_str(f"{sweep} {kind} N={N} seed {seed}")
        if sweep == "beta":
            new = beta_sweep(kind, N, seed, cfg)
        else:
            new = [n_point(kind, N, seed, cfg, sweep)]
        records.extend(new)
        _common.save_progress(path, results, records, summarize)
    return _common.finish(path, results, records, summarize, plot)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, results = _common.run_experiment(argv, parse_args, run, NAME)
    for kind in args.kinds:
        print(kind, results["summary"].get(kind))
    return results


if __name__ == "__main__":
    main()
