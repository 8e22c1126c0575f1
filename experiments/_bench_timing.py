"""Timed runs for ``bench_solvers``: FISTA (cold and warm), cvxpy (in a subprocess with a time
limit), Adam/SGD on the nonconvex twin, the linear map as matmuls, machine GEMM throughput.

Every function returns a plain dict (a JSON row). Times are wall-clock seconds on whatever else
the machine runs: only ratios of runs made side by side in one process are comparable.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import queue
import statistics
import time
import traceback
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import solvers
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.programs import ConvexProgram
from convextx.recovery import nonconvex_setup
from experiments._bench_programs import Spec, build

EPSILONS = (1e-4, 1e-6, 1e-8)


def relative_gaps(result: solvers.SolveResult) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, relative gaps gap / max(1, |objective|)) of a result's history, ending with
    the final iterate (FISTA records every ceil(max_iter / 4096)-th iteration only)."""
    history = result.history
    it = np.append(np.asarray(history["iteration"], dtype=float), result.iterations)
    rel = np.asarray(history["gap"], float) / np.maximum(1.0, np.abs(history["objective"]))
    return it, np.append(rel, result.relative_gap)


def first_reach(x: np.ndarray, values: np.ndarray, eps: float) -> float | None:
    """x at the first entry with values <= eps (None if never)."""
    hit = np.flatnonzero(values <= eps)
    return float(x[hit[0]]) if hit.size else None


def _curve(x: np.ndarray, y: np.ndarray, points: int = 200) -> list[list[float]]:
    """At most ``points`` (x, y) pairs, log-spaced in the index, for plots."""
    if x.size == 0:
        return []
    idx = np.unique(np.geomspace(1, x.size, min(points, x.size)).astype(int) - 1)
    return [[float(x[i]), float(y[i])] for i in idx]


def _solution_fields(problem: solvers.Problem, result: solvers.SolveResult) -> dict:
    norms = np.asarray(problem.penalty.group_norms(result.x))
    fields = {k: v for k, v in result.summary().items() if k not in ("seconds", "method")}
    return fields | {"active_groups": int(np.sum(norms > 0)), "groups": int(norms.size)}


def _epsilon_fields(seconds: np.ndarray, rel: np.ndarray, compile_s: float | None) -> dict:
    """``t_<eps>``: warm seconds at the first relative gap <= eps (None: not reached);
    ``t_cold_<eps>``: the same plus the compile overhead (None without a cold run)."""
    row = {"compile_s": compile_s, "curve": _curve(seconds, rel)}
    for eps in EPSILONS:
        t = first_reach(seconds, rel, eps)
        row[f"t_{eps:.0e}"] = t
        row[f"t_cold_{eps:.0e}"] = None if t is None or compile_s is None else t + compile_s
    return row


def _cold_and_warm(solve: Callable[[], solvers.SolveResult], cold: bool):
    """(first, second) result of ``solve()``, jit caches cleared before the first if ``cold``,
    and the first call's overhead (first - second seconds; None if not cold)."""
    if cold:
        jax.clear_caches()
    first, warm = solve(), solve()
    return first, warm, (max(first.seconds - warm.seconds, 0.0) if cold else None)


def time_fista(
    problem: solvers.Problem, tol: float, max_iter: int, cold: bool = True, **options
) -> dict:
    """FISTA to ``tol``: cold (jit caches cleared: compile included) then warm (same compiled
    solver). Time to each epsilon = warm seconds per iteration x iterations to reach it, plus
    the compile overhead (cold - warm) for the "cold" numbers."""
    first, warm, compile_s = _cold_and_warm(
        lambda: solvers.solve(problem, tol=tol, max_iter=max_iter, **options), cold
    )
    it, rel = relative_gaps(warm)
    per_iter = warm.seconds / max(warm.iterations, 1)
    return {
        "method": "fista",
        **_solution_fields(problem, warm),
        "seconds_cold": first.seconds if cold else None,
        "seconds_warm": warm.seconds,
        "per_iteration_s": per_iter,
        **_epsilon_fields(it * per_iter, rel, compile_s),
    }


def time_working_set(program: ConvexProgram, tol: float, max_iter: int) -> dict:
    """``program.solve(method="working_set")`` to ``tol``, cold then warm as ``time_fista``.
    Time to each epsilon: the wall time at the first round whose FULL certificate reaches it
    (history "seconds"), plus the first call's overhead (compiles) for the "cold" numbers."""
    first, warm, compile_s = _cold_and_warm(
        lambda: program.solve(method="working_set", tol=tol, max_iter=max_iter), True
    )
    history = warm.history
    rel = np.asarray(history["gap"]) / np.maximum(1.0, np.abs(history["objective"]))
    return {
        "method": "fista/working_set",
        **_solution_fields(program.problem, warm),
        "seconds_cold": first.seconds,
        "seconds_warm": warm.seconds,
        "per_iteration_s": warm.seconds / max(warm.iterations, 1),
        "rounds": len(history["iteration"]) - 1,
        "working_set_sizes": history["working_set"].tolist(),
        **_epsilon_fields(np.asarray(history["seconds"]), rel, compile_s),
    }


def _cvxpy_worker(spec: Spec, solver: str, tols: Sequence[float], out) -> None:
    """Process body: solve ``spec`` by cvxpy at each tol, one message per result, then None.
    Data generation is untimed; building the matrix (the family's closed form) and cvxpy's
    work are timed."""
    try:
        jax.config.update("jax_enable_x64", True)
        program, X, _ = build(spec)
        start = time.perf_counter()
        program.family.dense_matrix(program)
        out.put({"materialize_s": time.perf_counter() - start})
        for tol in tols:
            start = time.perf_counter()
            result = program.solve(method="cvxpy", tol=tol, solver=solver, max_iter=10_000)
            out.put(
                {
                    "tol": tol,
                    "seconds": time.perf_counter() - start,
                    "objective": result.objective,
                    "relative_gap": result.relative_gap,
                    "status": result.status,
                    "iterations": result.iterations,
                }
            )
    except Exception as err:  # noqa: BLE001 - reported in the row, the benchmark goes on
        out.put({"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-800:]})
    out.put(None)


def _drain(out, deadline: float | None) -> tuple[list[dict], str | None, bool]:
    """(results, error, timed_out) from a worker's messages, up to its None or the deadline."""
    results: list[dict] = []
    while True:
        wait = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
        try:
            message = out.get(timeout=wait)
        except queue.Empty:
            return results, None, True
        if message is None:
            return results, None, False
        if "error" in message:
            return results, message["error"], False
        results.append(message)


def time_cvxpy(spec: Spec, solver: str, tols: Sequence[float], timeout: float | None) -> dict:
    """cvxpy + ``solver`` at each tol; in a fresh process killed after ``timeout`` seconds
    overall, or in this process when ``timeout`` is None (micro sizes, which cannot hang).

    The problem reaches cvxpy as its family's closed-form dense matrix (what
    ``program.solve(method="cvxpy")`` uses). Time per tol includes building the matrix,
    canonicalization, the solve, the polish and the certificate. A solve counts for epsilon
    only if the certificate (computed by ``solvers``) reaches it. ``t_<eps>``: the package path;
    ``t_solver_<eps>``: the same minus building the matrix (timed once on its own)."""
    if timeout is None:
        out: queue.Queue = queue.Queue()
        _cvxpy_worker(spec, solver, tols, out)
        results, error, timed_out = _drain(out, None)
    else:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=_cvxpy_worker, args=(spec, solver, list(tols), out), daemon=True)
        proc.start()
        results, error, timed_out = _drain(out, time.perf_counter() + timeout)
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
    materialize = next((r["materialize_s"] for r in results if "materialize_s" in r), None)
    runs = [r for r in results if "tol" in r]
    row = {"method": f"cvxpy/{solver}", "runs": runs, "timed_out": timed_out, "error": error}
    row |= {"timeout_s": timeout, "materialize_s": materialize}
    for eps in EPSILONS:
        run = next((r for r in runs if r["tol"] == eps), None)
        reached = run is not None and run["relative_gap"] <= eps
        row[f"t_{eps:.0e}"] = run["seconds"] if reached else None
        row[f"t_solver_{eps:.0e}"] = run["seconds"] - (materialize or 0.0) if reached else None
        row[f"gap_at_{eps:.0e}"] = None if run is None else run["relative_gap"]
    return row


def time_nonconvex(
    spec: Spec,
    optimizer: str,
    learning_rate: float,
    budget_s: float,
    optimum: float,
    batch_size: int | None = None,
    max_steps: int = 1_000_000,
) -> dict:
    """``optimizer`` on the nonconvex twin for about ``budget_s`` seconds of optimizer steps
    (stopped at the first log-spaced evaluation past the budget); objective = sum loss + exact
    weight decay, compared with the certified optimum as a relative suboptimality."""
    program, X, y = build(spec)
    objective, penalty, init, data = nonconvex_setup(program, X, y)
    trainer = Trainer(
        objective, make_optimizer(optimizer, learning_rate), penalty=penalty, batch_size=batch_size
    )
    result = trainer.run(
        init(jax.random.key(spec.seed)),
        data,
        max_steps,
        log_every="log",
        early_stop=lambda entry: entry["time"] >= budget_s,
        progress=False,
        seed=spec.seed,
    )
    times = np.asarray(result.history["time"], float)
    values = np.asarray(result.history["objective"], float)
    sub = (values - optimum) / max(1.0, abs(optimum))
    finite = np.isfinite(sub)
    row = {
        "method": optimizer,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "steps": result.steps,
        "seconds": result.seconds,
        "per_step_s": result.seconds / max(result.steps, 1),
        "final_objective": float(values[-1]),
        "final_suboptimality": float(sub[-1]) if finite[-1] else None,
        "best_suboptimality": float(np.min(sub[finite])) if finite.any() else None,
        "curve": [[float(t), float(s)] for t, s in zip(times, sub, strict=True) if np.isfinite(s)],
    }
    for eps in EPSILONS:
        row[f"t_{eps:.0e}"] = first_reach(times[finite], sub[finite], eps)
    return row


def median_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, interleaved repeat by repeat (same machine load)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            tic = time.perf_counter()
            jax.block_until_ready(run())
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(t) for name, t in times.items()}


@functools.partial(jax.jit, static_argnums=2)
def _map_pairs(problem: solvers.Problem, x: jax.Array, steps: int) -> jax.Array:
    """``steps`` rounds of x <- A^T A x / |A^T A x| in one compiled loop (no dispatch cost)."""

    def body(_, v):
        w = problem.adjoint(problem.predict(v))
        return w / jnp.linalg.norm(w)

    return jax.lax.fori_loop(0, steps, body, x)


def map_flops(spec: Spec) -> float:
    """Multiply-adds x 2 of one application of the P1-P3 map: 2 N n d c P."""
    return 2.0 * spec.N * spec.n * spec.d * spec.c * (spec.P if spec.kind == "gated" else 1)


def map_vs_iteration(problem: solvers.Problem, iterations: int, repeats: int) -> dict:
    """Per-iteration time of FISTA vs one forward + one adjoint of the linear map, both inside
    one compiled loop of ``iterations`` steps, timed interleaved. FISTA needs exactly these two
    maps per iteration (plus O(p) vector work and any backtracking trials)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal(problem.shape), problem.dtype)
    jax.block_until_ready(_map_pairs(problem, x, iterations))
    first = solvers.solve(problem, tol=1e-300, max_iter=iterations)  # compile
    seconds = median_seconds(
        {
            "maps": lambda: _map_pairs(problem, x, iterations),
            "fista": lambda: solvers.solve(problem, tol=1e-300, max_iter=iterations).x,
        },
        repeats,
    )
    per_iter = seconds["fista"] / first.iterations
    maps = seconds["maps"] / iterations
    return {
        "maps_s": maps,
        "per_iteration_s": per_iter,
        "iteration_over_maps": per_iter / maps,
        "iterations": first.iterations,
    }


def gemm_gflops(size: int, dtype: str, repeats: int = 5) -> float:
    """Measured GFLOP/s of a (size x size) @ (size x size) matmul: the machine's throughput."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((size, size)), dtype)
    b = jnp.asarray(rng.standard_normal((size, size)), dtype)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    seconds = median_seconds({"gemm": lambda: matmul(a, b)}, repeats)["gemm"]
    return 2 * size**3 / seconds / 1e9
