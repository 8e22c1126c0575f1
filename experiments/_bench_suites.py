"""The suites of ``bench_solvers``: each measures its problems side by side and stores one row
per measurement (skipped when the store already has it, so a killed run resumes)."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from tqdm.auto import tqdm

import solvers
from experiments import _bench_sharded
from experiments._bench_plans import Plan
from experiments._bench_programs import (
    Spec,
    build,
)
from experiments._bench_report import Store
from experiments._bench_timing import (
    gemm_gflops,
    map_flops,
    map_vs_iteration,
    median_seconds,
    time_cvxpy,
    time_fista,
    time_nonconvex,
    time_working_set,
)

CVXPY = ("CLARABEL", "SCS")


def _spec_fields(spec: Spec) -> dict:
    return {"spec": dataclasses.asdict(spec), "label": spec.label, "variables": spec.variables}


def _measure(store: Store, key: str, suite: str, spec: Spec | None, fn) -> dict:
    """The stored row ``key``, measuring it with ``fn()`` first if absent."""
    if not store.has(key):
        start = time.perf_counter()
        row = {"suite": suite, **(_spec_fields(spec) if spec else {}), **fn()}
        store.put(key, {**row, "measured_in_s": time.perf_counter() - start})
    return store.get(key)


def run_epsilon(plan: Plan, store: Store, progress: bool = True) -> None:
    """Per problem: FISTA and working-set FISTA (cold, warm), then Clarabel, SCS, Adam and SGD
    (given FISTA's warm time to 1e-8, or the working-set solver's) on the same problem."""
    for row in tqdm(plan.epsilon, "epsilon", disable=not progress):
        spec = row.spec
        key = f"epsilon|{spec.label}|beta={spec.beta_ratio}"
        timers = {
            "fista": lambda spec=spec: time_fista(build(spec)[0].problem, 1e-8, plan.max_iter),
            "fista/working_set": lambda spec=spec: time_working_set(
                build(spec)[0], 1e-8, plan.max_iter
            ),
        }
        runs = {"fista": row.plain, "fista/working_set": row.working_set}
        solved = [
            _measure(store, f"{key}|{method}", "epsilon", spec, timer)
            for method, timer in timers.items()
            if runs[method]
        ]
        for solver in CVXPY if row.cvxpy else ():
            _measure(
                store,
                f"{key}|cvxpy/{solver}",
                "epsilon",
                spec,
                lambda solver=solver, spec=spec: time_cvxpy(
                    spec, solver, plan.cvxpy_tols, plan.cvxpy_timeout
                ),
            )
        if not (row.nonconvex and solved):
            continue
        best = solved[0]
        budget = max(plan.min_budget, best["t_1e-08"] or best["seconds_warm"])
        grids = {"adam": plan.adam_lrs, "sgd": tuple(lr / spec.N for lr in plan.sgd_lrs)}
        for optimizer, rates in grids.items():
            for lr in rates:
                _measure(
                    store,
                    f"{key}|{optimizer}|lr={lr:.3g}",
                    "epsilon",
                    spec,
                    lambda optimizer=optimizer, lr=lr, spec=spec, budget=budget, best=best: {
                        "budget_s": budget,
                        **time_nonconvex(spec, optimizer, lr, budget, best["objective"]),
                    },
                )


def run_scaling(plan: Plan, store: Store, progress: bool = True) -> None:
    """FISTA (warm) on P3 varying one of N, n, d, P at a time around the base problem."""
    jobs = [(a, v) for a, values in plan.scaling_axes.items() for v in values]
    for axis, value in tqdm(jobs, "scaling", disable=not progress):
        spec = dataclasses.replace(plan.scaling_base, **{axis: value})

        def fista(spec=spec, axis=axis, value=value):
            row = time_fista(build(spec)[0].problem, 1e-6, plan.max_iter, cold=False)
            return {"axis": axis, "value": value, **{k: v for k, v in row.items() if k != "curve"}}

        _measure(store, f"scaling|{axis}|{spec.label}", "scaling", spec, fista)


def run_matmul(plan: Plan, store: Store, progress: bool = True) -> None:
    """Machine GEMM throughput, then per problem FISTA per iteration vs its two maps."""
    iterations = 20 if plan.repeats == 1 else 100

    def gemm():
        return {dtype: gemm_gflops(1024, dtype, plan.repeats) for dtype in ("float64", "float32")}

    peak = _measure(store, "matmul|gemm", "matmul", None, gemm)
    for spec in tqdm(plan.matmul, "matmul", disable=not progress):

        def maps(spec=spec):
            row = map_vs_iteration(build(spec)[0].problem, iterations, max(plan.repeats, 1))
            gflops = 2 * map_flops(spec) / row["maps_s"] / 1e9
            return {**row, "maps_gflops": gflops, "maps_over_gemm": gflops / peak["float64"]}

        _measure(store, f"matmul|{spec.label}", "matmul", spec, maps)


def run_dtype(plan: Plan, store: Store, progress: bool = True) -> None:
    """FISTA in float64 then float32 on the same data, to relative gap 1e-6 (float32 is capped
    at 3x the float64 iterations: it may stall above 1e-6)."""
    for spec in tqdm(plan.dtype, "dtype", disable=not progress):
        cap = plan.max_iter
        for dtype in ("float64", "float32"):

            def fista(spec=spec, dtype=dtype, cap=cap):
                row = time_fista(build(spec, dtype)[0].problem, 1e-6, cap, cold=False)
                return {"dtype": dtype, **row}

            row = _measure(store, f"dtype|{spec.label}|{dtype}", "dtype", spec, fista)
            cap = min(plan.max_iter, 3 * row["iterations"])


def run_sharded(plan: Plan, store: Store, progress: bool = True) -> None:
    """One problem on 1 device and sharded over 4 forced host devices (subprocess)."""
    if plan.sharded is None:
        return
    spec = plan.sharded
    _measure(
        store,
        f"sharded|{spec.label}",
        "sharded",
        spec,
        lambda: _bench_sharded.run(spec, 4, 1e-8, max(plan.repeats, 1), timeout=1800),
    )


def _mean_width(history: dict) -> float:
    """Groups per restricted iteration, averaged over the inner iterations of all rounds."""
    steps = np.diff(history["iteration"])
    widths = history["working_set"][1:]
    return float(np.sum(steps * widths) / max(np.sum(steps), 1))


def _plain_vs_working_set(program, tol: float, max_iter: int, repeats: int) -> dict:
    """Cold solves (jit caches cleared: compile included) of plain FISTA and the working-set
    solver, then ``repeats`` warm solves of each, interleaved (medians reported)."""
    problem = program.problem
    jax.clear_caches()
    plain = solvers.solve(problem, tol=tol, max_iter=max_iter)
    jax.clear_caches()

    results: list[solvers.SolveResult] = []

    def working_set() -> solvers.SolveResult:
        results.append(program.solve(method="working_set", tol=tol, max_iter=max_iter))
        return results[-1]

    ws = working_set()
    cold = {"plain": plain.seconds, "working_set": ws.seconds}
    warm = median_seconds(
        {
            "plain": lambda: solvers.solve(problem, tol=tol, max_iter=max_iter).x,
            "working_set": lambda: working_set().x,
        },
        repeats,
    )
    inner_seconds = float(results[-1].history["inner_seconds"][-1])  # of the last warm solve
    groups = np.asarray(problem.penalty.group_norms(plain.x))
    row = {
        "tol": tol,
        "groups": int(groups.size),
        "active_groups": int(np.sum(groups > 0)),
        "objective_plain": plain.objective,
        "objective_working_set": ws.objective,
        "relative_gap_plain": plain.relative_gap,
        "relative_gap_working_set": ws.relative_gap,
        "status": [plain.status, ws.status],
        "iterations_plain": plain.iterations,
        "iterations_working_set": ws.iterations,
        "rounds": len(ws.history["iteration"]) - 1,
        "working_set_sizes": ws.history["working_set"].tolist(),
        "mean_working_set": _mean_width(ws.history),
        "screened": ws.history["screened"].tolist(),
        "repeats": repeats,
        "per_iteration_plain_s": warm["plain"] / max(plain.iterations, 1),
        "per_iteration_working_set_s": warm["working_set"] / max(ws.iterations, 1),
        # Inside the restricted FISTA solves only (no certificates, restrictions, rounds).
        "inner_per_iteration_working_set_s": inner_seconds / max(ws.iterations, 1),
    }
    for name in ("plain", "working_set"):
        row[f"seconds_{name}_cold"] = cold[name]
        row[f"seconds_{name}_warm"] = warm[name]
    row["speedup_warm"] = warm["plain"] / warm["working_set"]
    row["speedup_cold"] = cold["plain"] / cold["working_set"]
    row["per_iteration_speedup"] = row["per_iteration_plain_s"] / row["per_iteration_working_set_s"]
    row["inner_per_iteration_speedup"] = (
        row["per_iteration_plain_s"] / row["inner_per_iteration_working_set_s"]
    )
    return row


def run_working_set(plan: Plan, store: Store, progress: bool = True) -> None:
    """Plain FISTA vs working sets on one problem at growing beta (sparser solutions)."""
    base, ratios = plan.working_set
    for ratio in tqdm(ratios, "working_set", disable=not progress):
        spec = dataclasses.replace(base, beta_ratio=ratio)

        def compare(spec=spec):
            program, X, _ = build(spec)
            row = _plain_vs_working_set(program, 1e-6, plan.max_iter, plan.repeats)
            return {"beta_ratio": spec.beta_ratio, **row}

        _measure(store, f"working_set|{spec.label}|beta={ratio}", "working_set", spec, compare)


def run_targets(plan: Plan, store: Store, progress: bool = True) -> None:
    """T1: plain and working-set FISTA (cold = compile included, and warm) vs cvxpy+Clarabel to
    1e-6; T2: the same FISTA runs in float64 and float32; T5: working sets to 1e-4 on 1e8
    variables, on a GPU only. T3, T4: the matmul and working_set suites."""
    if plan.t5 is not None and (plan.t5_on_cpu or jax.default_backend() == "gpu"):
        _measure(
            store,
            f"targets|T5|{plan.t5.label}|{jax.default_backend()}",
            "targets",
            plan.t5,
            lambda: {
                "target": "T5",
                "device": jax.devices()[0].device_kind,
                **time_working_set(build(plan.t5)[0], 1e-4, plan.max_iter),
            },
        )
    jobs = [("T1", plan.t1), ("T2", plan.t2)]
    for name, spec in tqdm([j for j in jobs if j[1]], "targets", disable=not progress):
        key = f"targets|{name}|{spec.label}"
        for dtype in ("float64",) if name == "T1" else ("float64", "float32"):

            def compare(spec=spec, dtype=dtype, name=name):
                program, X, _ = build(spec, dtype)
                row = _plain_vs_working_set(
                    program,
                    1e-6,
                    plan.max_iter,
                    plan.repeats,
                )
                return {"target": name, "dtype": dtype, **row}

            _measure(store, f"{key}|{dtype}", "targets", spec, compare)
        if name == "T1":
            _measure(
                store,
                f"{key}|cvxpy/CLARABEL",
                "targets",
                spec,
                lambda spec=spec, name=name: {
                    "target": name,
                    **time_cvxpy(spec, "CLARABEL", (1e-6,), plan.cvxpy_timeout),
                },
            )
