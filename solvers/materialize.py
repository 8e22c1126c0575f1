"""The dense matrix of a problem's linear map (for the exact cvxpy route and exact norms)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from solvers.problem import Problem

MAX_ENTRIES = 50_000_000


def check_size(problem: Problem, what: str = "the cvxpy backend") -> None:
    """ValueError if the problem's matrix would have more than ``MAX_ENTRIES`` entries."""
    m = int(np.prod(problem.prediction_shape))
    if m * problem.size > MAX_ENTRIES:
        raise ValueError(
            f"problem too large for {what}: its matrix has {m} x {problem.size} entries "
            f"(limit {MAX_ENTRIES}); use method='fista'"
        )


def materialize(problem: Problem, chunk: int = 4096) -> np.ndarray:
    """The matrix A (m, p) with predict(x).ravel() == A @ x.ravel(), in float64.

    Generic: one ``predict`` per basis vector, batched with ``vmap`` (a convex program family
    that knows a closed form passes its own matrix to the cvxpy route instead)."""
    p = problem.size
    columns = []
    predict = jax.jit(jax.vmap(lambda e: problem.predict(e.reshape(problem.shape)).ravel()))
    for start in range(0, p, chunk):
        stop = min(p, start + chunk)
        basis = jnp.zeros((stop - start, p), problem.dtype)
        basis = basis.at[jnp.arange(stop - start), jnp.arange(start, stop)].set(1.0)
        columns.append(np.asarray(predict(basis), dtype=np.float64))
    return np.concatenate(columns, axis=0).T


def check_matrix(problem: Problem, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` as float64 (m, p), if it is the problem's map on a random point."""
    matrix = np.asarray(matrix, dtype=np.float64)
    m = int(np.prod(problem.prediction_shape))
    if matrix.shape != (m, problem.size):
        raise ValueError(f"matrix must have shape ({m}, {problem.size}); got {matrix.shape}")
    x = np.random.default_rng(0).standard_normal(problem.shape)
    expected = np.asarray(problem.predict(jnp.asarray(x, problem.dtype)), dtype=float).ravel()
    error = np.max(np.abs(matrix @ x.ravel() - expected)) / max(1.0, np.max(np.abs(expected)))
    if error > 1e3 * float(jnp.finfo(problem.dtype).eps):
        raise ValueError(
            f"matrix disagrees with the problem's predict (relative error {error:.2g})"
        )
    return matrix
