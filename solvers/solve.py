"""``solve(problem, method=...)``: one entry point, one certified result type."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from solvers.certificate import duality_gap, is_solved
from solvers.cvxpy_backend import CVXPY_SOLVERS, solve_cvxpy
from solvers.fista import FISTA
from solvers.problem import Problem

METHODS = ("fista", "cvxpy")
STATUSES = ("optimal", "max_iter", "inaccurate", "diverged")


@dataclasses.dataclass(frozen=True)
class SolveResult:
    """A solution with its certificate.

    x: solution (problem.shape).   objective: primal value at x.   dual: a certified lower bound.
    gap: objective - dual >= 0, an upper bound on the suboptimality of x.
    status: "optimal" (gap <= tol * max(1, |objective|)), "max_iter" (budget exhausted, gap
      reported), "inaccurate" (an external solver stopped without the certificate reaching
      tol), or "diverged" (non-finite objective).
    iterations: iterations used.   seconds: wall time including compilation.
    history: {"iteration", "objective", "gap"} arrays: per iteration, or every
      ceil(max_iter / 4096) iterations for long runs (FISTA); the final values (cvxpy).
    method: "fista" or "cvxpy/<SOLVER>".   tol: the requested tolerance.
    lipschitz: FISTA's final Lipschitz estimate (1 / step size); pass it as the ``lipschitz``
      option of a related solve (next beta, larger working set) to skip the power method.
      None for cvxpy.
    """

    x: jax.Array
    objective: float
    dual: float
    gap: float
    status: str
    iterations: int
    seconds: float
    history: dict[str, np.ndarray]
    method: str
    tol: float
    lipschitz: float | None = None

    @property
    def relative_gap(self) -> float:
        return self.gap / max(1.0, abs(self.objective))

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    def __repr__(self) -> str:
        return (
            f"SolveResult(status={self.status!r}, objective={self.objective:.10g}, "
            f"gap={self.gap:.3g}, iterations={self.iterations}, seconds={self.seconds:.3g}, "
            f"method={self.method!r})"
        )


def _check_x0(problem: Problem, x0: Any) -> jax.Array:
    if x0 is None:
        return problem.zeros()
    x0 = jnp.asarray(x0, problem.dtype)
    if x0.shape != problem.shape:
        raise ValueError(f"x0 must have the problem shape {problem.shape}; got {x0.shape}")
    if not bool(_all_finite(x0)):
        raise ValueError("x0 contains NaN or inf")
    return x0


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(x))  # one compiled check per shape (eager: one per primitive)


def _status(objective: float, gap: float, tol: float, budget_hit: bool) -> str:
    if not np.isfinite(objective):
        return "diverged"
    if bool(is_solved(objective, gap, tol)):
        return "optimal"
    return "max_iter" if budget_hit else "inaccurate"


def _solve_fista(problem, x0, tol, max_iter, verbose, options) -> SolveResult:
    solver = FISTA(tol=tol, max_iter=max_iter, **options)
    start = time.perf_counter()
    state = jax.block_until_ready(solver.run(problem, x0))
    seconds = time.perf_counter() - start
    k = int(state.iteration)
    history = np.asarray(state.history)
    history = history[~np.isnan(history[:, 0])]
    objective, gap = float(state.primal), float(state.gap)
    return SolveResult(
        x=state.x,
        objective=objective,
        dual=float(state.dual),
        gap=gap,
        status=_status(objective, gap, tol, budget_hit=k >= max_iter),
        iterations=k,
        seconds=seconds,
        history={
            "iteration": history[:, 0].astype(int),
            "objective": history[:, 1],
            "gap": history[:, 2],
        },
        method="fista",
        tol=tol,
        lipschitz=float(state.lipschitz),
    )


def _solve_cvxpy(problem, tol, max_iter, verbose, options) -> SolveResult:
    solver = options.pop("solver", "CLARABEL")
    if options:
        raise TypeError(f"unexpected options for method='cvxpy': {sorted(options)}")
    start = time.perf_counter()
    x, cvx_status, iterations = solve_cvxpy(problem, tol, max_iter, solver, verbose)
    certificate = duality_gap(problem, jnp.asarray(x, problem.dtype))
    seconds = time.perf_counter() - start
    objective, gap = float(certificate.primal), float(certificate.gap)
    status = _status(objective, gap, tol, budget_hit=False)
    if cvx_status != "optimal" and status == "optimal":
        status = "inaccurate"
    return SolveResult(
        x=jnp.asarray(x, problem.dtype),
        objective=objective,
        dual=float(certificate.dual),
        gap=gap,
        status=status,
        iterations=int(iterations or 0),
        seconds=seconds,
        history={
            "iteration": np.array([int(iterations or 0)]),
            "objective": np.array([objective]),
            "gap": np.array([gap]),
        },
        method=f"cvxpy/{solver.upper()}",
        tol=tol,
    )


def solve(
    problem: Problem,
    method: str = "fista",
    tol: float = 1e-8,
    max_iter: int = 10_000,
    x0: Any = None,
    verbose: bool = False,
    **options: Any,
) -> SolveResult:
    """Solve ``problem`` to a certified relative duality gap ``tol``.

    method: "fista" (JAX, any device; options: step_size, restart, power_iterations,
      lipschitz_decay, lipschitz) or "cvxpy" (exact interior point on the materialized problem;
      option solver in ("CLARABEL", "SCS")).
    x0: warm start (FISTA only; ignored by cvxpy).   verbose: print a one-line summary.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a solvers.Problem; got {type(problem).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if not (isinstance(tol, float | int) and tol > 0):
        raise ValueError(f"tol must be a number > 0; got {tol!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an int >= 1; got {max_iter!r}")
    if method == "fista":
        result = _solve_fista(problem, _check_x0(problem, x0), tol, max_iter, verbose, options)
    else:
        result = _solve_cvxpy(problem, tol, max_iter, verbose, dict(options))
    if verbose:
        print(result)
    return result


__all__ = ["solve", "SolveResult", "METHODS", "STATUSES", "CVXPY_SOLVERS"]
