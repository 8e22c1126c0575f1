"""The exact route: the same problem modelled in cvxpy and solved by an interior-point method.

The linear map is materialized as a dense matrix (one ``predict`` per basis vector, batched with
``vmap``), so this backend is for small problems; it refuses ones whose matrix would exceed
``max_entries``. Clarabel is the default solver, SCS an option. Whatever cvxpy reports, the
returned point is certified by the same duality gap as FISTA's (``certificate.py``).
"""

from __future__ import annotations

import math

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np

from solvers.problem import Problem

CVXPY_SOLVERS = ("CLARABEL", "SCS")
MAX_ENTRIES = 50_000_000


class SolverError(RuntimeError):
    """An external solver failed to return a solution."""


def materialize(problem: Problem, chunk: int = 4096) -> np.ndarray:
    """The matrix A (m, p) with predict(x).ravel() == A @ x.ravel(), in float64."""
    p = problem.size
    columns = []
    predict = jax.jit(jax.vmap(lambda e: problem.predict(e.reshape(problem.shape)).ravel()))
    for start in range(0, p, chunk):
        stop = min(p, start + chunk)
        basis = jnp.zeros((stop - start, p), problem.dtype)
        basis = basis.at[jnp.arange(stop - start), jnp.arange(start, stop)].set(1.0)
        columns.append(np.asarray(predict(basis), dtype=np.float64))
    return np.concatenate(columns, axis=0).T


def _solver_options(solver: str, tol: float, max_iter: int) -> dict:
    if solver == "CLARABEL":
        eps = max(tol, 1e-12)
        return {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "max_iter": max_iter}
    return {"eps_abs": max(tol, 1e-12), "eps_rel": max(tol, 1e-12), "max_iters": max_iter}


def solve_cvxpy(
    problem: Problem, tol: float, max_iter: int, solver: str = "CLARABEL", verbose: bool = False
) -> tuple[np.ndarray, str, int | None]:
    """Solve with cvxpy; returns (x of problem.shape, cvxpy status, solver iterations)."""
    solver = solver.upper()
    if solver not in CVXPY_SOLVERS:
        raise ValueError(f"cvxpy solver must be one of {CVXPY_SOLVERS}; got {solver!r}")
    m = math.prod(problem.prediction_shape)
    if m * problem.size > MAX_ENTRIES:
        raise ValueError(
            f"problem too large for the cvxpy backend: its matrix has {m} x {problem.size} entries "
            f"(limit {MAX_ENTRIES}); use method='fista'"
        )
    matrix = materialize(problem)
    x = cp.Variable(problem.size)
    pred = matrix @ x
    loss = problem.loss.cvxpy(pred, problem.prediction_shape)
    penalty, constraints = problem.penalty.cvxpy(x, problem.shape)
    model = cp.Problem(cp.Minimize(loss + penalty), constraints)
    try:
        model.solve(solver=solver, verbose=verbose, **_solver_options(solver, tol, max_iter))
    except cp.error.SolverError as err:
        raise SolverError(f"cvxpy/{solver} failed: {err}") from err
    if x.value is None or model.status in (
        cp.INFEASIBLE,
        cp.UNBOUNDED,
        cp.INFEASIBLE_INACCURATE,
        cp.UNBOUNDED_INACCURATE,
    ):
        raise SolverError(f"cvxpy/{solver} returned no solution (status {model.status!r})")
    iterations = model.solver_stats.num_iters if model.solver_stats else None
    return np.asarray(x.value).reshape(problem.shape), model.status, iterations
