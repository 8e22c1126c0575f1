"""The exact route: the same problem modelled in cvxpy and solved by an interior-point method.

The linear map is a dense matrix (a family's closed form passed as ``matrix``, or
``solvers.materialize``), so this backend is for small problems; it refuses ones whose matrix
would exceed ``materialize.MAX_ENTRIES``. Clarabel is the default solver, SCS an option.

An interior-point point is only approximately feasible and approximately sparse, so before it
is certified it is **projected onto the penalty's domain** (``penalty.project``: e.g. the
cone of nonnegative matrices with equal row sums of ``StochasticGauge``, where Clarabel returns
entries of -1e-8) and, for group penalties, its groups that the **gap-safe rule** certifies zero
at every optimum are set to 0 (``screening.zero_screened_groups``; a fixed cut such as 1e-9
would keep groups the certificate already rules out). Whatever cvxpy reports, the result is
then certified by the same duality gap as FISTA's (``certificate.certify``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from solvers import checks
from solvers.certificate import certify, status
from solvers.materialize import check_matrix, check_size, materialize
from solvers.penalties import GroupL2
from solvers.problem import Problem
from solvers.result import SolveResult, single_row
from solvers.screening import group_operator_norms, zero_screened_groups

CVXPY_SOLVERS = ("CLARABEL", "SCS")


class SolverError(RuntimeError):
    """An external solver failed to return a solution."""


def _solver_options(solver: str, tol: float, max_iter: int) -> dict:
    # The certificate's dual is built from the primal point, so a relative gap tol needs a
    # primal error of about tol**2 (the gap of a near-optimal point is ~ sqrt(suboptimality)).
    eps = max(tol**2, 1e-12)
    if solver == "CLARABEL":
        return {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "max_iter": max_iter}
    return {"eps_abs": eps, "eps_rel": eps, "max_iters": max_iter}


def interior_point(
    problem: Problem, matrix: np.ndarray, tol: float, max_iter: int, solver: str, verbose: bool
) -> tuple[np.ndarray, int]:
    """cvxpy's raw solution: (x of problem.shape, solver iterations). cvxpy's own status is
    not returned: the duality-gap certificate of the projected point decides the status.
    cvxpy is imported here, not with the package (about 1 s)."""
    import cvxpy as cp

    failed = (cp.INFEASIBLE, cp.UNBOUNDED, cp.INFEASIBLE_INACCURATE, cp.UNBOUNDED_INACCURATE)
    x = cp.Variable(problem.size)
    loss = problem.loss.cvxpy(matrix @ x, problem.prediction_shape)
    penalty, constraints = problem.penalty.cvxpy(x, problem.shape)
    model = cp.Problem(cp.Minimize(loss + penalty), constraints)
    try:
        with warnings.catch_warnings():  # "may be inaccurate": the certificate decides
            warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
            model.solve(solver=solver, verbose=verbose, **_solver_options(solver, tol, max_iter))
    except cp.error.SolverError as err:
        raise SolverError(f"cvxpy/{solver} failed: {err}") from err
    if x.value is None or model.status in failed:
        raise SolverError(f"cvxpy/{solver} returned no solution (status {model.status!r})")
    iterations = model.solver_stats.num_iters if model.solver_stats else None
    return np.asarray(x.value).reshape(problem.shape), int(iterations or 0)


def feasible_point(problem: Problem, x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """x projected onto the penalty's domain, with its certified-zero groups set to 0."""
    x = np.asarray(problem.penalty.project(jnp.asarray(x, problem.dtype)), dtype=float)
    if isinstance(problem.penalty, GroupL2):
        x = zero_screened_groups(problem, x, group_operator_norms(problem, matrix))
    return x


def solve_cvxpy(
    problem: Problem,
    *,
    tol: float,
    max_iter: int,
    x0: Any = None,
    solver: str = "CLARABEL",
    matrix: Any = None,
    verbose: bool = False,
) -> SolveResult:
    """Solve with cvxpy, project (``feasible_point``, module docstring) and certify.

    solver: "CLARABEL" or "SCS".  matrix: the (m, p) matrix of the map if known in closed form
    (checked against ``predict`` on a random point); None materializes it.
    x0: must be None (an interior-point method takes no warm start).
    """
    if x0 is not None:
        raise TypeError("x0 is not used by method 'cvxpy' (interior-point methods start cold)")
    solver = checks.choice("cvxpy solver", str(solver).upper(), CVXPY_SOLVERS)
    check_size(problem)
    start = time.perf_counter()
    matrix = materialize(problem) if matrix is None else check_matrix(problem, matrix)
    began = time.perf_counter()
    # Solve in z = s x with the map A / s and penalty beta / s (s = ||A||_F): the same
    # optimum, but an interior-point method sees unit-scale data (it fails at 1e8 otherwise).
    scale = float(np.linalg.norm(matrix)) or 1.0
    unit = problem._replace(penalty=problem.penalty.scaled(1.0 / scale))
    raw, iterations = interior_point(unit, matrix / scale, tol, max_iter, solver, verbose)
    x = feasible_point(problem, raw / scale, matrix)
    cert = certify(problem, x)
    limit = "max_iter" if iterations >= max_iter else None
    result_status = status(cert.primal, cert.gap, tol, limit)
    seconds = time.perf_counter() - start
    rows = single_row(iterations, cert.primal, cert.gap, seconds - (began - start))
    return SolveResult(
        x=jnp.asarray(x, problem.dtype),
        objective=cert.primal,
        dual=cert.dual,
        gap=cert.gap,
        status=result_status,
        iterations=iterations,
        seconds=seconds,
        history={k: v for k, v in rows.items() if k != "seconds"},
        method=f"cvxpy/{solver}",
        tol=tol,
        setup_seconds=began - start,
        timeline=rows,
    )
