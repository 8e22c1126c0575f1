"""``solve(problem, method=...)``: one entry point, one registry of methods, one result type.

=============  =====================================================================  =========
method         what                                                                   options
=============  =====================================================================  =========
"fista"        accelerated proximal gradient in JAX, any device (``solvers.fista``)   step_size, restart, power_iterations,
                                                                                      lipschitz_decay, lipschitz, time_limit,
                                                                                      progress
"working_set"  FISTA on growing working sets of groups, gap-safe screening            restrict, operator_norms, initial_size,
               (``solvers.working_set``; GroupL2 / L1 penalties)                      max_outer, check_restriction, FISTA's
"cvxpy"        interior point on the dense problem (``solvers.cvxpy_backend``)         solver ("CLARABEL" | "SCS"), matrix
=============  =====================================================================  =========

Every method returns a ``SolveResult`` certified by the same duality gap, and its status follows
one rule (``solvers.certificate.status``). ``devices=`` splits the samples over several devices
for the JAX methods ("fista", "working_set"; ``solvers.sharding``, also for several hosts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from solvers import checks, sharding
from solvers.compile import collection_paused
from solvers.cvxpy_backend import CVXPY_SOLVERS, solve_cvxpy
from solvers.fista import solve_fista
from solvers.problem import Problem, device_array
from solvers.result import SolveResult
from solvers.working_set import solve_working_set

Method = Callable[..., SolveResult]
METHODS: dict[str, Method] = {
    "fista": solve_fista,
    "working_set": solve_working_set,
    "cvxpy": solve_cvxpy,
}
WARM_STARTS = ("fista", "working_set")  # the methods that take an x0


def check_x0(problem: Problem, x0: Any) -> jax.Array:
    """x0 (None: zeros) as a finite array of the problem's shape and dtype."""
    if x0 is None:
        return problem.zeros()
    x0 = device_array(checks.real_array("x0", x0), problem.dtype)
    if x0.shape != problem.shape:
        raise ValueError(f"x0 must have the problem shape {problem.shape}; got {x0.shape}")
    return x0


def solve(
    problem: Problem,
    method: str = "fista",
    tol: float = 1e-8,
    max_iter: int = 10_000,
    x0: Any = None,
    verbose: bool = False,
    devices: Any = None,
    **options: Any,
) -> SolveResult:
    """Solve ``problem`` to a certified relative duality gap ``tol`` (a finite real in (0, 1)).

    method: a name in ``METHODS`` (module table; options go to it).
    max_iter: iteration budget, an int in [1, 2**31 - 1].
    x0: warm start (methods "fista" and "working_set").   verbose: print a one-line summary.
    devices: None (where the problem's arrays already are), "all", a count or a list of
      ``jax.Device``: the samples are split over them (``solvers.sharding.shard_samples``;
      the number of samples must be a multiple of the count). JAX methods only.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a solvers.Problem; got {type(problem).__name__}")
    checks.choice("method", method, METHODS)
    tol = checks.tolerance("tol", tol)
    max_iter = checks.integer("max_iter", max_iter, 1, checks.INT32_MAX)
    checks.boolean("verbose", verbose)
    if devices is not None:
        if method not in WARM_STARTS:
            raise ValueError(
                f"devices: method {method!r} runs on the host; use one of {WARM_STARTS}"
            )
        problem = sharding.shard_samples(problem, devices)
    if method in WARM_STARTS:  # the JAX methods: no garbage collection while they trace
        with collection_paused():
            x0 = check_x0(problem, x0)
            result = METHODS[method](problem, tol=tol, max_iter=max_iter, x0=x0, **options)
    else:
        result = METHODS[method](problem, tol=tol, max_iter=max_iter, x0=x0, **options)
    if verbose:
        print(result)
    return result


__all__ = ["CVXPY_SOLVERS", "METHODS", "SolveResult", "check_x0", "solve"]
