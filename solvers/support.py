"""Support reduction (Caratheodory): an optimum with at most rank(A) + 1 active groups.

At an optimum x of ``L(Ax) + beta * sum_g lambda_g`` write ``x = sum_g lambda_g d_g`` with unit
directions ``d_g`` (Omega(d_g) = 1) on the active groups. Moving the weights lambda along a null
vector mu of the (m + 1, |S|) matrix ``[A d_g ; 1]`` keeps both the predictions and
``sum_g lambda_g`` (so the objective) unchanged; stepping until a weight hits zero removes a
group. Repeating leaves linearly independent columns: at most m + 1 groups, where m is the
number of predictions (N for a scalar output). The result is another optimum.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from solvers.problem import Problem


def active_groups(problem: Problem, x, rtol: float = 0.0) -> np.ndarray:
    """Indices of the groups of x whose size exceeds ``rtol`` times the largest."""
    norms = np.asarray(problem.penalty.group_norms(jnp.asarray(x)))
    return np.flatnonzero(norms > rtol * norms.max()) if norms.max() > 0 else np.array([], int)


def reduce_support(problem: Problem, x, rank_tol: float = 1e-9) -> np.ndarray:
    """Another optimum with the same predictions and penalty and linearly independent atoms."""
    x = np.array(x, dtype=np.float64)  # a writable copy
    groups = problem.penalty.group_indices(problem.shape)
    flat = x.ravel()
    weights = np.array(problem.penalty.group_norms(jnp.asarray(x)), dtype=np.float64)
    active = list(np.flatnonzero(weights > 0))
    directions = {g: flat[groups[g]] / weights[g] for g in active}

    def atom(g: int) -> np.ndarray:
        unit = np.zeros_like(flat)
        unit[groups[g]] = directions[g]
        return np.asarray(problem.predict(jnp.asarray(unit.reshape(problem.shape), problem.dtype)))

    atoms = {g: atom(g).ravel() for g in active}
    while len(active) > 1:
        matrix = np.vstack([np.column_stack([atoms[g] for g in active]), np.ones(len(active))])
        short = len(active) - matrix.shape[0]
        if short > 0:  # square it, so the thin SVD's vt spans the null space too
            matrix = np.vstack([matrix, np.zeros((short, len(active)))])
        _, singular, vt = np.linalg.svd(matrix, full_matrices=False)
        rank = int(np.sum(singular > rank_tol * singular[0]))
        if rank == len(active):
            break
        mu = vt[-1]
        if mu.max() <= 0:
            mu = -mu
        lam = weights[active]
        positive = mu > 0
        step = np.min(lam[positive] / mu[positive])
        lam = lam - step * mu
        lam[np.argmin(np.where(positive, lam, np.inf))] = 0.0
        for g, value in zip(active, lam, strict=True):
            weights[g] = max(value, 0.0)
        active = [g for g in active if weights[g] > 0]
    reduced = np.zeros_like(flat)
    for g in active:
        reduced[groups[g]] = weights[g] * directions[g]
    return reduced.reshape(problem.shape)
