"""Working-set restrictions of the convex programs P1-P3 (``solvers.screening``).

The groups of P1-P3 are rows ``z_{..., k}`` (length d) of the variable: one per token k (and
per output l, P2/P3, and per gate j, P3). ``restriction(program)`` restricts the DATA to the
groups a working set asks for (the tokens, and for P3 the gates, that they touch), so a
restricted FISTA iteration costs in proportion to the groups it keeps: a (N, n'd) x (n'd, P'c)
matmul instead of (N, nd) x (nd, Pc). ``operator_norm_bounds(program)`` bounds each group's
operator norm from the data, which turns on gap-safe screening and the Celer priority.
P4 (kind "sequence") has a stochastic-gauge penalty without groups: no working sets.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import solvers
from convextx.programs import (
    ConvexProgram,
    _first_output,
    predict_gated,
    predict_scalar,
    predict_vector,
)
from solvers import screening
from solvers.screening import Restrict, Restriction

KINDS = ("scalar", "vector", "gated")


def _check_kind(program: ConvexProgram) -> None:
    if program.kind not in KINDS:
        raise ValueError(
            f"working sets need a group-lasso program (kind in {KINDS}); got {program.kind!r}"
        )


def _padded(chosen: np.ndarray, total: int) -> np.ndarray:
    """``chosen`` (sorted, distinct) plus the lowest unused indices up to the next power of
    two (capped at ``total``): few distinct sizes, so the restricted solver compiles rarely."""
    size = min(total, 1 << max(0, math.ceil(math.log2(max(chosen.size, 1)))))
    if chosen.size >= size:
        return chosen
    unused = np.setdiff1d(np.arange(total), chosen)[: size - chosen.size]
    return np.sort(np.concatenate([chosen, unused]))


def _host_data(program: ConvexProgram) -> tuple[np.ndarray, np.ndarray | None]:
    """(X (N, n, d), gate patterns D (N, P) or None) as host arrays: restrictions slice them
    with NumPy (no compiled gather per working-set size) and move only the slice to the device."""
    _check_kind(program)
    X = np.asarray(program.X)
    D = np.asarray(program.gates.patterns(program.X)) if program.kind == "gated" else None
    return X, D


def restriction(program: ConvexProgram) -> Restrict:
    """``groups -> solvers.screening.Restriction`` for program (kind scalar, vector or gated):
    keeps every group of the tokens (and, for P3, of the gates) that the requested groups touch.
    Group indices are flat over ``program.shape[:-1]``."""
    return _restriction(program, *_host_data(program))


def _restriction(program: ConvexProgram, X: np.ndarray, D: np.ndarray | None) -> Restrict:
    kind, shape, problem = program.kind, program.shape, program.problem
    flat = np.arange(problem.size).reshape(shape)
    penalty = solvers.GroupL2(problem.penalty.beta, axis=-1)

    def restrict(groups: np.ndarray) -> Restriction:
        rows = np.unravel_index(np.asarray(groups, dtype=int), shape[:-1])
        tokens = _padded(np.unique(rows[-1]), shape[-2])
        X_kept = jnp.asarray(X[:, tokens])
        if kind == "gated":
            gates = _padded(np.unique(rows[0]), shape[0])
            predict = Partial(predict_gated, X_kept, jnp.asarray(D[:, gates]))
            index = flat[gates][:, :, tokens]
        elif kind == "vector":
            predict = Partial(predict_vector, X_kept)
            index = flat[:, tokens]
        else:
            predict = Partial(predict_scalar, X_kept)
            index = flat[tokens]
        if program.scalar_output and kind != "scalar":
            predict = Partial(_first_output, predict)
        sub = solvers.Problem(
            predict, index.shape, problem.loss, penalty, dtype=problem.dtype, check_linear=False
        )
        return Restriction(sub, index)

    return restrict


def operator_norm_bounds(program: ConvexProgram) -> np.ndarray:
    """(G,) Frobenius norms of each group's block of columns, upper bounds on ``|A_g|_2``, in
    the order of ``program.problem.penalty.group_indices(program.shape)``.

    Group (.., l, k) of P1/P2 has the columns X[:, k, q]; of P3 gate j, D_ij X[i, k, q]."""
    return _operator_norm_bounds(program, *_host_data(program))


def _operator_norm_bounds(program: ConvexProgram, X: np.ndarray, D: np.ndarray | None):
    token_squares = (X.astype(float) ** 2).sum(axis=2)  # (N, n)
    shape = program.shape
    if D is not None:
        per_gate_token = D.T.astype(float) @ token_squares  # (P, n)
        squares = np.broadcast_to(per_gate_token[:, None, :], shape[:-1])
    else:
        squares = np.broadcast_to(token_squares.sum(axis=0), shape[:-1])
    return np.sqrt(squares).ravel()


def solve_working_set(program: ConvexProgram, **options) -> solvers.SolveResult:
    """``solvers.screening.solve_working_set`` on program with its data restriction and
    operator-norm bounds (options: tol, max_iter, x0, verbose, FISTA options, ...)."""
    data = _host_data(program)
    return screening.solve_working_set(
        program.problem,
        _restriction(program, *data),
        operator_norms=_operator_norm_bounds(program, *data),
        **options,
    )
