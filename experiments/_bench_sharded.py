"""Sharded FISTA over forced host devices, run as its own process (the device count is fixed at
JAX start-up):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m experiments._bench_sharded SPEC

Solves the program of SPEC (a JSON ``Spec``) on one device and with its samples split over all
devices (``solvers.sharding.shard_samples``, what ``solve(..., devices="all")`` does),
warm runs interleaved; prints one JSON line: both optima, their relative difference, the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax

from experiments._bench_programs import Spec

MARKER = "SHARDED_JSON "


def _measure(spec: Spec, tol: float, repeats: int) -> dict:
    jax.config.update("jax_enable_x64", True)
    import solvers
    from experiments._bench_programs import build
    from experiments._bench_timing import median_seconds
    from solvers import sharding

    program, _, _ = build(spec)
    problem = program.problem
    sharded = sharding.shard_samples(problem, "all")
    single = solvers.solve(problem, tol=tol, max_iter=50_000)
    spread = solvers.solve(sharded, tol=tol, max_iter=50_000)
    seconds = median_seconds(
        {
            "single": lambda: solvers.solve(problem, tol=tol, max_iter=50_000).x,
            "sharded": lambda: solvers.solve(sharded, tol=tol, max_iter=50_000).x,
        },
        repeats,
    )
    return {
        "devices": len(jax.devices()),
        "devices_used": len(sharding.devices_of(sharded)),
        "objective_single": single.objective,
        "objective_sharded": spread.objective,
        "relative_difference": abs(single.objective - spread.objective)
        / max(1.0, abs(single.objective)),
        "status": [single.status, spread.status],
        "iterations": [single.iterations, spread.iterations],
        "seconds_single": seconds["single"],
        "seconds_sharded": seconds["sharded"],
        "sharded_over_single": seconds["sharded"] / seconds["single"],
    }


def run(spec: Spec, devices: int, tol: float, repeats: int, timeout: float) -> dict:
    """This module in a subprocess with ``devices`` forced host devices; its JSON row."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    arg = json.dumps({**spec.__dict__, "tol": tol, "repeats": repeats})
    try:
        out = subprocess.run(
            [sys.executable, "-m", "experiments._bench_sharded", arg],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARKER)]
    if out.returncode != 0 or not lines:
        return {"error": out.stderr[-1500:]}
    return json.loads(lines[-1][len(MARKER) :])


if __name__ == "__main__":
    options = json.loads(sys.argv[1])
    tol, repeats = options.pop("tol"), options.pop("repeats")
    print(MARKER + json.dumps(_measure(Spec(**options), tol, repeats)))
