"""Duality-gap certificates for ``min_x L(Ax) + beta * Omega(x)``.

Fenchel duality with a gauge penalty gives the dual problem

    max_u  -L*(u)   subject to   Omega°(-A^T u) <= beta,

so every dual-feasible u certifies ``primal(x) - (-L*(u)) >= primal(x) - optimum >= 0``.
At the optimum ``u* = grad L(A x*)``; away from it we take ``u = theta * grad L(A x)`` with
``theta = min(1, beta / Omega°(-A^T grad L(Ax)))``, which is feasible by construction. The gap
therefore bounds the suboptimality of x, for any x, and vanishes exactly at the optimum.

What a result reports (``certify``) is computed in float64, whatever the solve's dtype, and
the gap is never smaller than the rounding error of the two sums it subtracts
(``ROUNDING_ULPS`` units in the last place of ``|primal| + |dual|``): a float32 iterate cannot
certify 1e-8 by cancellation. ``status`` is the one rule that turns a certificate into a
status string, for every solve method.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from solvers.compile import problem_jit
from solvers.problem import Problem

Array = jax.Array

STATUSES = ("optimal", "max_iter", "time_limit", "inaccurate", "diverged")
LIMITS = ("max_iter", "time_limit")
ROUNDING_ULPS = 32.0


class Certificate(NamedTuple):
    """primal: objective at x;  dual: a dual objective value (<= optimum);  gap = primal - dual."""

    primal: Array
    dual: Array
    gap: Array


def dual_value(
    problem: Problem, loss_grad: Array, adjoint_grad: Array, dual_norm: Array | None = None
) -> Array:
    """Dual objective at the scaled point theta * loss_grad.

    loss_grad: grad L at some predictions, prediction shape.
    adjoint_grad: A^T loss_grad, variable shape.
    dual_norm: ``Omega°(-adjoint_grad)`` if already computed (e.g. as the largest group score).
    """
    beta = problem.penalty.beta
    if dual_norm is None:
        dual_norm = problem.penalty.dual_norm(-adjoint_grad)
    theta = jnp.minimum(1.0, beta / jnp.maximum(dual_norm, jnp.finfo(adjoint_grad.dtype).tiny))
    return -problem.loss.conjugate(theta * loss_grad)


def duality_gap(problem: Problem, x: Array) -> Certificate:
    """Certificate for the point ``x`` in the problem's dtype (traceable)."""
    x = jnp.asarray(x, problem.dtype)
    pred = problem.predict(x)
    grad = problem.loss.grad(pred)
    primal = problem.loss.value(pred) + problem.penalty.value(x)
    dual = dual_value(problem, grad, problem.adjoint(grad))
    return Certificate(primal, dual, primal - dual)


_duality_gap = problem_jit(duality_gap)


def rounding_floor(primal: float, dual: float) -> float:
    """The least gap float64 arithmetic can resolve between ``primal`` and ``dual``."""
    return ROUNDING_ULPS * float(np.finfo(np.float64).eps) * (abs(primal) + abs(dual))


def honest(primal: float, dual: float) -> Certificate:
    """(primal, dual, gap) as floats, the gap raised to ``rounding_floor`` if below it."""
    primal, dual = float(primal), float(dual)
    gap = primal - dual if np.isfinite(primal) and np.isfinite(dual) else np.inf
    return Certificate(primal, dual, max(gap, rounding_floor(primal, dual)))


def certify(problem: Problem, x: Array, dual: float = -np.inf) -> Certificate:
    """The certificate a solve reports at ``x``: computed in float64 (problems of a narrower
    dtype are cast, inside ``jax.enable_x64``), with the best of its own dual value and
    ``dual`` (a lower bound found earlier, e.g. FISTA's best), floored by ``rounding_floor``."""
    with jax.enable_x64(True):
        wide = problem if problem.dtype == jnp.float64 else problem.astype(jnp.float64)
        cert = _duality_gap(wide, jnp.asarray(x, jnp.float64))
        return honest(float(cert.primal), max(float(cert.dual), float(dual)))


def is_solved(primal: Array | float, gap: Array | float, tol: float) -> Array | bool:
    """The project-wide definition of solved: ``gap <= tol * max(1, |primal|)``.

    Written with operators alone, so that it runs traced inside a compiled loop and on host
    floats without a device op (each one costs a compilation in a fresh process)."""
    return (gap <= tol) | (gap <= tol * abs(primal))


def status(objective: float, gap: float, tol: float, limit: str | None = None) -> str:
    """The status of a solve that stopped at ``objective`` with certified ``gap``.

    "diverged" (non-finite objective), "optimal" (``is_solved``), else ``limit`` (the budget
    that stopped it: "max_iter" or "time_limit"), or "inaccurate" (it stopped on its own
    without reaching tol, e.g. an external solver or a stalled iteration).
    """
    if not np.isfinite(objective):
        return "diverged"
    if bool(is_solved(objective, gap, tol)):
        return "optimal"
    if limit is not None and limit not in LIMITS:
        raise ValueError(f"limit must be None or one of {LIMITS}; got {limit!r}")
    return limit or "inaccurate"
