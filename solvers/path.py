"""Regularization paths: solve for decreasing beta with warm starts from beta_max."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from solvers import checks
from solvers.polish import polishable
from solvers.problem import Problem
from solvers.result import SolveResult
from solvers.solve import WARM_STARTS, solve

# Default grids start a hair above beta_max so that rounding cannot activate a group there.
BETA_MAX_MARGIN = 1.0 + 1e-9


def beta_max(problem: Problem) -> float:
    """The smallest beta for which x = 0 is optimal: ``Omega°(-A^T grad L(0))`` (closed form).

    x = 0 is optimal iff 0 is in grad L(0) composed with A plus beta * dOmega(0), i.e. iff
    the dual norm of -A^T grad L(0) is at most beta.
    """
    zero = problem.zeros()
    grad = problem.adjoint(problem.loss.grad(problem.predict(zero)))
    # Homogeneous in grad: normalize first, so that norms of data at any scale (1e-160) neither
    # under- nor overflow when squared.
    magnitude = jnp.max(jnp.abs(grad))
    unit = grad / jnp.where(magnitude > 0, magnitude, 1.0)
    return float(problem.penalty.dual_norm(-unit)) * float(magnitude)


@dataclasses.dataclass(frozen=True)
class PathResult:
    """betas (decreasing) and the certified result at each."""

    betas: np.ndarray
    results: list[SolveResult]

    @property
    def objectives(self) -> np.ndarray:
        return np.array([r.objective for r in self.results])

    @property
    def gaps(self) -> np.ndarray:
        return np.array([r.gap for r in self.results])


def regularization_path(
    problem: Problem,
    betas: Any = None,
    num: int = 10,
    min_ratio: float = 1e-3,
    method: str = "fista",
    polish: bool | None = None,
    **solve_options: Any,
) -> PathResult:
    """Solve ``problem`` for each beta, largest first, warm-starting each solve from the last
    solution and its step size (``SolveResult.lipschitz``; methods "fista" and "working_set").

    betas: explicit values (sorted decreasing before solving), or None for ``num`` values
      log-spaced from beta_max (times BETA_MAX_MARGIN) down to ``min_ratio * beta_max``.
    polish: the Newton polish of the warm-started methods (``solvers.polish``); None turns it
      on where it applies (a float64 group lasso). It is what makes a warm start pay: each
      solve first takes Newton steps on the previous solution's support at the new beta (the
      predictor), so the first-order steps start with the new beta's gradients; on 400 digits
      (P2, 10 betas, tol 1e-6) the path took 755 FISTA iterations against 2091 for cold
      solves, where without the polish it took 3523 against 4018.
    """
    if betas is None:
        num = checks.integer("num", num, 1)
        min_ratio = checks.tolerance("min_ratio", min_ratio)
        top = beta_max(problem)
        if top <= 0:
            raise ValueError(
                "beta_max is 0: x = 0 is optimal for every beta (the targets are fit by 0)"
            )
        betas = np.geomspace(top * BETA_MAX_MARGIN, top * min_ratio, num)
    betas = np.sort(np.asarray(betas, dtype=float).ravel())[::-1]
    if betas.size == 0 or np.any(~np.isfinite(betas)) or np.any(betas <= 0):
        raise ValueError(f"betas must be finite and > 0; got {betas}")
    warm = method in WARM_STARTS
    if warm:
        solve_options["polish"] = polishable(problem) if polish is None else polish
    elif polish is not None:
        raise ValueError(f"polish applies to methods {WARM_STARTS}; got method {method!r}")
    results, x, lipschitz = [], None, solve_options.pop("lipschitz", None)
    for beta in betas:
        options = solve_options if lipschitz is None else {**solve_options, "lipschitz": lipschitz}
        result = solve(problem.with_beta(beta), method=method, x0=x, **options)
        results.append(result)
        if warm:  # the next solve starts from this solution and this step size
            x, lipschitz = jnp.asarray(result.x), result.lipschitz
    return PathResult(betas=betas, results=results)
