"""``SolveResult``: what every solve method returns, a solution with its certificate."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class SolveResult:
    """A solution with its certificate.

    x: solution (problem.shape).   objective: primal value at x.   dual: a certified lower bound
      on the optimum.   gap: objective - dual >= 0, an upper bound on the suboptimality of x
      (computed in float64 and never below float64 rounding; ``solvers.certificate``).
    status: "optimal" (gap <= tol * max(1, |objective|)), "max_iter" / "time_limit" (a budget
      ran out; gap reported), "inaccurate" (the method stopped on its own without the
      certificate reaching tol, e.g. an external solver), or "diverged" (non-finite objective).
    iterations: iterations used.   seconds: wall time of the whole call, compilation included.
    setup_seconds: the part of ``seconds`` before the first iteration (tracing, compilation,
      step-size estimate, building a cvxpy model).
    history: {"iteration", "objective", "gap"} arrays: per iteration, or every
      ceil(max_iter / 4096) iterations for long runs (FISTA); one row per round (working sets,
      with more columns); the final values (cvxpy).
    timeline: {"iteration", "objective", "gap", "seconds"} measured at the end of each compiled
      chunk of iterations (FISTA), each round (working sets) or once (cvxpy); seconds count
      from the first iteration, so ``setup_seconds`` is not in them. Plot time axes from this,
      never from ``history`` (which has no clock).
    method: "fista", "fista/working_set" or "cvxpy/<SOLVER>".   tol: the requested tolerance.
    lipschitz: FISTA's final Lipschitz estimate (1 / step size) in the problem's units; pass it
      as the ``lipschitz`` option of a related solve (next beta, larger working set) to skip the
      power method. None for cvxpy, and at scales where a step size would under- or overflow.
    prediction: ``predict(x)`` when the method computed it along the way (FISTA), else None;
      a caller that needs A x (working sets, a path) saves a map and, in a new process, a
      compilation.
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
    setup_seconds: float = 0.0
    timeline: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    prediction: jax.Array | None = None

    @property
    def relative_gap(self) -> float:
        return self.gap / max(1.0, abs(self.objective))

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    def summary(self) -> dict[str, Any]:
        """The scalar fields as a JSON-ready dict: objective, dual, relative_gap, status,
        iterations, seconds, method."""
        return {
            "objective": float(self.objective),
            "dual": float(self.dual),
            "relative_gap": float(self.relative_gap),
            "status": self.status,
            "iterations": int(self.iterations),
            "seconds": float(self.seconds),
            "method": self.method,
        }

    def __repr__(self) -> str:
        return (
            f"SolveResult(status={self.status!r}, objective={self.objective:.10g}, "
            f"gap={self.gap:.3g}, iterations={self.iterations}, seconds={self.seconds:.3g}, "
            f"method={self.method!r})"
        )


def usable_lipschitz(value: float, dtype: Any) -> float | None:
    """``value`` if a later solve in ``dtype`` can start from it unscaled: between the square
    roots of the dtype's smallest normal and largest numbers, so that neither it nor the step
    ``1 / value`` under- or overflows (else None: that solve runs its power method)."""
    value, info = float(value), np.finfo(dtype)
    inside = math.sqrt(float(info.tiny)) <= value <= math.sqrt(float(info.max))
    return value if math.isfinite(value) and inside else None


def single_row(iterations: int, objective: float, gap: float, seconds: float) -> dict:
    """A one-row history / timeline (a method without intermediate certificates)."""
    return {
        "iteration": np.array([int(iterations)]),
        "objective": np.array([objective]),
        "gap": np.array([gap]),
        "seconds": np.array([seconds]),
    }
