"""Warm-started regularization path vs cold solves: iterations and seconds, side by side.

P2 (vector, cross-entropy) on 400 digits, 10 betas log-spaced from beta_max to 1e-2 beta_max,
tol 1e-6. The path warm-starts each solve from the previous solution and its step size
(``ConvexProgram.path``); the cold solves start every beta from 0. Both with and without the
Newton polish on the support (``solvers.polish``, on by default along a path), for plain FISTA
and working sets. Seconds are medians of ``--repeats`` interleaved runs after an untimed one.

    python -m experiments.bench_path            # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import convextx as cx
import solvers


def measure(program, betas: np.ndarray, method: str, polish: bool, tol: float, repeats: int):
    """Total iterations of the warm path and of cold solves at every beta, and the median
    seconds of each over ``repeats`` interleaved runs after one untimed run (compilation)."""
    options = dict(method=method, tol=tol, max_iter=100_000, polish=polish)

    def warm():
        return program.path(betas, **options).results

    def cold():
        return [program.with_beta(b).solve(**options) for b in betas]

    runs = {"warm": warm(), "cold": cold()}
    seconds = {"warm": [], "cold": []}
    for _ in range(repeats):
        for name, run in (("warm", warm), ("cold", cold)):
            tic = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - tic)
    statuses = {r.status for r in runs["warm"] + runs["cold"]}
    return {
        "method": method,
        "polish": polish,
        "warm_iterations": sum(r.iterations for r in runs["warm"]),
        "cold_iterations": sum(r.iterations for r in runs["cold"]),
        "warm_seconds": float(np.median(seconds["warm"])),
        "cold_seconds": float(np.median(seconds["cold"])),
        "all_optimal": statuses == {"optimal"},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    task = cx.tasks.load("digits")
    X, y = task.X_train[: args.samples], task.y_train[: args.samples]
    probe = cx.convex_program(X, y, "vector", 1.0, "cross_entropy")
    top = solvers.beta_max(probe.problem)
    betas = np.geomspace(top, 1e-2 * top, 10)
    print("method       polish  warm its  cold its  cold/warm  warm s  cold s  all optimal")
    for polish in (False, True):
        for method in ("fista", "working_set"):
            r = measure(probe, betas, method, polish, args.tol, args.repeats)
            print(
                f"{method:12s} {str(polish):6s} {r['warm_iterations']:9d} {r['cold_iterations']:9d}"
                f" {r['cold_iterations'] / r['warm_iterations']:10.2f} {r['warm_seconds']:7.2f}"
                f" {r['cold_seconds']:7.2f}  {r['all_optimal']}"
            )


if __name__ == "__main__":
    main()
