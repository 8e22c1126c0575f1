"""Token sparsity of the convex optimum: active tokens vs beta and vs N, against min(n, N + 1).

The group penalty of P1/P2 (one group per token, per output) makes most token rows of Z exactly
zero; support reduction (Caratheodory, ``solvers.reduce_support``) gives an optimum whose atoms
are linearly independent, hence at most N + 1 groups per output and so at most min(n, N + 1)
active tokens per output (paper-notes section 5; MATH.md section 6). Every recovered head is
one-hot on a token.

For kinds "scalar" (P1, one output) and "vector" (P2, c outputs), squared loss, on
student-teacher data with a softmax teacher (every token carries signal, so sparsity comes from
the penalty, not from the data):

- vs beta: ``cx.path`` from beta_max down to ``min_ratio`` beta_max at N = n / 2 (the bound
  N + 1 < n binds) and at N = 4 n (the bound is n);
- vs N: ``ConvexAttention(reduce_support=True)`` at beta = ``beta_ratio`` beta_max for each N.

Recorded per fit: active tokens of the solver's solution (``active_tokens_``), heads and active
tokens after support reduction (``heads_``; the largest count over outputs and their union),
the bound min(n, N + 1), and whether every recovered head is one-hot (asserted).

    python -m experiments.sparsity            # CPU default, about a minute
    python -m experiments.sparsity --quick    # seconds (tests)
    python -m experiments.sparsity --full     # larger n, d, N and more seeds

Writes experiments/results/sparsity[_quick|_full].json after every fit (``--resume`` keeps the
fits of a matching earlier run) and a PNG next to it.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

import convextx as cx
import solvers
from experiments import _common

NAME = "sparsity"
KINDS = ("scalar", "vector")

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


def load(kind: str, N: int, seed: int, cfg: dict[str, Any]) -> Any:
    """Student-teacher regression data, softmax teacher, c outputs for "vector" (y (N, c))."""
    return cx.tasks.load(
        "student_teacher", N_train=N, N_test=1, n=cfg["n"], d=cfg["d"],
        c=1 if kind == "scalar" else cfg["c"], teacher="softmax", problem="regression",
        noise=0.1, seed=seed,
    )  # fmt: skip


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
        "active_tokens": int(est.active_tokens_.size),
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
    task = load(kind, N, seed, cfg)
    bp = cx.path(
        task.X_train, task.y_train, num=cfg["path_num"], min_ratio=cfg["min_ratio"],
        kind=kind, loss="squared", tol=1e-8, max_iter=200_000, reduce_support=True,
    )  # fmt: skip
    return [record(est, kind, N, seed, "beta", bp.beta_max, cfg["n"]) for est in bp.estimators]


def n_point(kind: str, N: int, seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    task = load(kind, N, seed, cfg)
    probe = cx.convex_program(task.X_train, task.y_train, kind, 1.0, "squared")
    beta_max = solvers.beta_max(probe.problem)
    est = cx.ConvexAttention(
        kind=kind, beta=cfg["beta_ratio"] * beta_max, loss="squared", tol=1e-8,
        max_iter=200_000, reduce_support=True,
    ).fit(task.X_train, task.y_train)  # fmt: skip
    return record(est, kind, N, seed, "N", beta_max, cfg["n"])


def units(cfg: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(sweep, kind, N, seed) in run order."""
    n = cfg["n"]
    out = [("beta", k, N, s) for k in cfg["kinds"] for N in (n // 2, 4 * n) for s in cfg["seeds"]]
    return out + [("N", k, N, s) for k in cfg["kinds"] for N in cfg["Ns"] for s in cfg["seeds"]]


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
            "unreduced_above_bound": sum(r["active_tokens"] > r["bound"] for r in rs),
            "reduction_removed_tokens": sum(r["reduced_tokens"] < r["active_tokens"] for r in rs),
            "max_relative_gap": max(r["relative_gap"] for r in rs),
        }  # fmt: skip
    return out


def plot(results: dict[str, Any], path: Any) -> Any:
    """Per kind: tokens vs beta / beta_max (two N), and tokens vs N with min(n, N + 1)."""
    cfg = results["config"]
    kinds = [k for k in cfg["kinds"] if any(r["kind"] == k for r in results["records"])]
    fig, axes = _common.figure(max(len(kinds), 1), 2)
    for row, kind in zip(axes, kinds, strict=False):
        rs = [r for r in results["records"] if r["kind"] == kind]
        ax = row[0]
        for N, color in zip(sorted({r["N"] for r in rs if r["sweep"] == "beta"}), ("C0", "C3"),
                            strict=False):  # fmt: skip
            for s in cfg["seeds"]:
                line = [r for r in rs if r["sweep"] == "beta" and r["N"] == N and r["seed"] == s]
                x = [r["beta_ratio"] for r in line]
                label = f"N={N}" if s == cfg["seeds"][0] else None
                ax.plot(
                    x,
                    [r["active_tokens"] for r in line],
                    "o-",
                    color=color,
                    ms=3,
                    alpha=0.7,
                    label=None if label is None else f"{label}: solver",
                )
                ax.plot(
                    x,
                    [r["reduced_tokens_per_output"] for r in line],
                    "x--",
                    color=color,
                    ms=4,
                    alpha=0.7,
                    label=None if label is None else f"{label}: reduced",
                )
            ax.axhline(min(cfg["n"], N + 1), color=color, ls=":", lw=1)  # fmt: skip
        ax.set(xscale="log", xlabel="beta / beta_max", ylabel="active tokens",
               title=f"{kind}: n={cfg['n']}, d={cfg['d']}")  # fmt: skip
        ax.legend(fontsize=7)
        ax = row[1]
        rs_n = [r for r in rs if r["sweep"] == "N"]
        Ns = np.array(sorted({r["N"] for r in rs_n}))
        for key, marker, label in (
            ("active_tokens", "o", "solver (union over outputs)"),
            ("reduced_tokens_per_output", "x", "reduced, max per output"),
        ):
            ax.scatter([r["N"] for r in rs_n], [r[key] for r in rs_n], marker=marker, label=label)
        ax.plot(Ns, np.minimum(cfg["n"], Ns + 1), "k--", label="min(n, N + 1)")
        ax.set(xscale="log", xlabel="N (samples)", ylabel="active tokens",
               title=f"beta = {cfg['beta_ratio']:g} beta_max")  # fmt: skip
        ax.legend(fontsize=7)
    return _common.save_plot(fig, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    previous = _common.read_json(path) if args.resume else None
    same = previous is not None and previous.get("config") == _common.to_jsonable(cfg)
    records: list[dict[str, Any]] = previous["records"] if same else []
    done = {(r["sweep"], r["kind"], r["N"], r["seed"]) for r in records}
    results = {"config": cfg, "records": records}
    bar = tqdm([u for u in units(cfg) if u not in done], desc=NAME, disable=args.no_progress)
    for sweep, kind, N, seed in bar:
        bar.set_postfix_str(f"{sweep} {kind} N={N} seed {seed}")
        new = beta_sweep(kind, N, seed, cfg) if sweep == "beta" else [n_point(kind, N, seed, cfg)]
        records.extend(new)
        results["summary"] = summarize(records)
        _common.write_json(path, results)
    results = _common.to_jsonable(results | {"summary": summarize(records)})
    _common.write_json(path, results)
    results["plot"] = str(plot(results, path))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    jax.config.update("jax_enable_x64", True)
    args = parse_args(argv)
    results = run(args)
    print(f"wrote {_common.out_path(args, NAME)} and {results['plot']}")
    for kind in args.kinds:
        print(kind, results["summary"].get(kind))
    return results


if __name__ == "__main__":
    main()
