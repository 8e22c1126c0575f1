"""Duality-gap certificates for ``min_x L(Ax) + beta * Omega(x)`` (MATH.md section 7).

Fenchel duality with a gauge penalty gives the dual problem

    max_u  -L*(u)   subject to   Omega°(-A^T u) <= beta,

so every dual-feasible u certifies ``primal(x) - (-L*(u)) >= primal(x) - optimum >= 0``.
At the optimum ``u* = grad L(A x*)``; away from it we take ``u = theta * grad L(A x)`` with
``theta = min(1, beta / Omega°(-A^T grad L(Ax)))``, which is feasible by construction. The gap
therefore bounds the suboptimality of x, for any x, and vanishes exactly at the optimum.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from solvers.problem import Problem

Array = jax.Array


class Certificate(NamedTuple):
    """primal: objective at x;  dual: a dual objective value (<= optimum);  gap = primal - dual."""

    primal: Array
    dual: Array
    gap: Array


def dual_value(problem: Problem, loss_grad: Array, adjoint_grad: Array) -> Array:
    """Dual objective at the scaled point theta * loss_grad.

    loss_grad: grad L at some predictions, prediction shape.
    adjoint_grad: A^T loss_grad, variable shape.
    """
    beta = problem.penalty.beta
    dual_norm = problem.penalty.dual_norm(-adjoint_grad)
    theta = jnp.minimum(1.0, beta / jnp.maximum(dual_norm, jnp.finfo(adjoint_grad.dtype).tiny))
    return -problem.loss.conjugate(theta * loss_grad)


def duality_gap(problem: Problem, x: Array) -> Certificate:
    """Certificate for the point ``x``: primal value, a dual value and their difference."""
    x = jnp.asarray(x, problem.dtype)
    pred = problem.predict(x)
    grad = problem.loss.grad(pred)
    primal = problem.loss.value(pred) + problem.penalty.value(x)
    dual = dual_value(problem, grad, problem.adjoint(grad))
    return Certificate(primal, dual, primal - dual)


def is_solved(primal: Array, gap: Array, tol: float) -> Array:
    """The project-wide definition of solved: ``gap <= tol * max(1, |primal|)``."""
    return gap <= tol * jnp.maximum(1.0, jnp.abs(primal))
