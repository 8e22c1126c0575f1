"""The linear-attention program (P5, nuclear norm): FISTA against cvxpy, and how large d gets.

1. Small random instances (N samples of n Gaussian tokens of d features, c outputs; squared and
   cross-entropy losses; beta = 0.1 beta_max): seconds to a TRUE relative suboptimality of
   1e-6, ``(F(x) - F*) / |F*|`` with F* from FISTA at tol 1e-11, for this package's FISTA
   (float64, warm: the same shapes solved once before, so no compilation) and cvxpy with SCS
   and Clarabel (``method="cvxpy"``: |Z|_* as a semidefinite program; the time includes
   cvxpy's canonicalization). Each solver's tol is swept and the fastest run that reaches
   1e-6 is reported (a solver's tol means something else in each), medians of ``--repeats``
   interleaved runs. FISTA's time to CERTIFY 1e-6 (tol = 1e-6) is reported beside it.
2. The largest d whose FISTA solve certifies a 1e-6 relative gap within 60 s, cold
   (compilation included) and warm, on N = 256 samples of n = 8 Gaussian tokens, c = 4
   (full-rank data: Z is (d^2, d c)), squared loss, beta = 0.1 beta_max.

    python -m experiments.bench_linear            # a few minutes on 2 CPU cores
    python -m experiments.bench_linear --quick    # seconds (tests)

Writes experiments/results/bench_linear.json. Times are wall-clock seconds on whatever else
the machine runs: only ratios of runs made side by side are comparable.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import convextx as cx
import solvers
from experiments import _common

TARGET = 1e-6
FISTA_TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6)
CVXPY_TOLS = (1e-2, 1e-3, 1e-4, 1e-5)  # the backend asks its solver for tol**2
SIZES = {
    "quick": dict(small=[(32, 4, 3, 2)], d_ladder=[4, 8], repeats=1, limit=60.0),
    "default": dict(
        small=[(64, 4, 3, 3), (128, 6, 5, 3), (256, 8, 8, 4)],
        d_ladder=[8, 16, 24, 32, 48, 64, 96],
        repeats=3,
        limit=60.0,
    ),
}


def program(N: int, n: int, d: int, c: int, loss: str, seed: int = 0) -> cx.ConvexProgram:
    """The linear program of a random instance at beta = 0.1 beta_max."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    y = rng.integers(0, c, N) if loss == "cross_entropy" else rng.standard_normal((N, c))
    probe = cx.convex_program(X, y, "linear", 1.0, loss)
    return probe.with_beta(0.1 * solvers.beta_max(probe.problem))


def true_suboptimality(prog: cx.ConvexProgram, x: Any, optimum: float) -> float:
    """(F(x) - F*) / |F*|, F by this package's objective."""
    return (float(prog.problem.objective(x)) - optimum) / abs(optimum)


def fastest(
    solve: Callable[[float], solvers.SolveResult], tols: tuple[float, ...], score, repeats: int
) -> dict[str, Any]:
    """The loosest tol whose solution reaches TARGET (tols are tried loosest first), with the
    median seconds of ``repeats`` solves at that tol."""
    for tol in tols:
        result = solve(tol)
        reached = score(result.x)
        if reached <= TARGET:
            seconds = [result.seconds] + [solve(tol).seconds for _ in range(repeats - 1)]
            return {"tol": tol, "seconds": statistics.median(seconds), "suboptimality": reached}
    return {"tol": None, "seconds": None, "suboptimality": reached}


def small_instance(N: int, n: int, d: int, c: int, loss: str, repeats: int) -> dict[str, Any]:
    """Seconds to a true 1e-6 for FISTA and cvxpy (SCS, Clarabel) on one instance."""
    prog = program(N, n, d, c, loss)
    reference = prog.solve(tol=1e-11, max_iter=200_000)
    optimum = reference.objective

    def score(x):
        return true_suboptimality(prog, x, optimum)

    prog.solve(tol=1e-3, max_iter=200_000)  # compiles: FISTA is timed warm
    row: dict[str, Any] = {"N": N, "n": n, "d": d, "c": c, "loss": loss, "shape": prog.shape}
    row["reference_gap"] = reference.relative_gap
    row["fista"] = fastest(
        lambda t: prog.solve(tol=t, max_iter=200_000), FISTA_TOLS, score, repeats
    )
    certified = prog.solve(tol=TARGET, max_iter=200_000)
    row["fista_certified"] = {"seconds": certified.seconds, "status": certified.status}
    for solver in ("SCS", "CLARABEL"):
        row[solver.lower()] = fastest(
            lambda t, s=solver: prog.solve(method="cvxpy", solver=s, tol=t, max_iter=100_000),
            CVXPY_TOLS,
            score,
            repeats,
        )
    return row


def largest_d(ladder: list[int], limit: float) -> list[dict[str, Any]]:
    """FISTA cold and warm seconds to certify TARGET as d grows, until a cold solve passes
    ``limit`` seconds (or the ladder ends)."""
    rows = []
    for d in ladder:
        prog = program(256, 8, d, 4, "squared", seed=d)
        tic = time.perf_counter()
        cold = prog.solve(tol=TARGET, max_iter=100_000, time_limit=limit)
        cold_seconds = time.perf_counter() - tic
        row = {"d": d, "shape": prog.shape, "cold_seconds": cold_seconds, "status": cold.status}
        row["iterations"] = cold.iterations
        if cold.status == "optimal" and cold_seconds <= limit:
            row["warm_seconds"] = prog.solve(tol=TARGET, max_iter=100_000).seconds
        rows.append(row)
        print(f"d={d:4d} Z {prog.shape}: {cold.status} in {cold_seconds:.1f} s cold", flush=True)
        if cold_seconds > limit or cold.status != "optimal":
            break
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _common.parse_args(__doc__.split("\n")[0], argv=argv)
    if args.size == "full":
        raise SystemExit("bench_linear has no --full size")
    jax.config.update("jax_enable_x64", True)
    cfg = SIZES[args.size]
    rows = []
    for N, n, d, c in cfg["small"]:
        for loss in ("squared", "cross_entropy"):
            rows.append(small_instance(N, n, d, c, loss, cfg["repeats"]))
            r = rows[-1]
            print(
                f"N={N} n={n} d={d} c={c} {loss:13s} Z {tuple(r['shape'])}: seconds to 1e-6 "
                f"FISTA {r['fista']['seconds']} (certified {r['fista_certified']['seconds']:.3g}), "
                f"SCS {r['scs']['seconds']}, Clarabel {r['clarabel']['seconds']}",
                flush=True,
            )
    ladder = largest_d(cfg["d_ladder"], cfg["limit"])
    results = {"target": TARGET, "small": rows, "largest_d": ladder}
    path = _common.write_json(_common.out_path(args, "bench_linear"), results)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
