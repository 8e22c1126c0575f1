"""From a convex solution to ordinary network weights (corrected Prop. 1 and its analogues).

Each nonzero group of the convex solution becomes one head whose attention is one vertex of the
simplex (MATH.md sections 2-5; the paper's Prop. 1 prints e_j where e_{k_j} is meant):

- scalar   row z_k != 0      -> w1 = e_k, w2 = z_k / sqrt|z_k|, a = sqrt|z_k|
- vector   z_lk != 0         -> w1 = e_k, w2 = z_lk / sqrt|z_lk|, a = sqrt|z_lk| e_l
- gated    z_jlk != 0        -> the same head behind gate j (u1_j, u2_j)
- sequence block C_ql^(+-) with row sum s > 0
                             -> W1 = C / s (row-stochastic), W2 = sqrt(s) e_q e_l^T, a = +-sqrt(s)

Each head's weight decay equals beta times its group's norm (AM-GM at balance), so the recovered
network's objective equals the convex optimum. The convex solution is first reduced to linearly
independent atoms (``solvers.reduce_support``): at most (number of predictions + 1) heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import solvers
from convextx.programs import ConvexProgram


def _one_hot_heads(kind, values, token, output, gate, program, h):
    """Heads with one-hot attention; values (m, d) are the nonzero groups z (in order)."""
    norms = np.linalg.norm(values, axis=1)
    root = np.sqrt(norms)
    w1 = np.zeros((h, program.n))
    w2 = np.zeros((h, program.d))
    w1[np.arange(h), 0] = 1.0  # padding heads: any simplex point, zero weights
    m = values.shape[0]
    w1[:m] = 0.0
    w1[np.arange(m), token] = 1.0
    w2[:m] = values / root[:, None]
    if kind == "scalar":
        a = np.zeros(h)
        a[:m] = root
        return {"w1": w1, "w2": w2, "a": a}
    a = np.zeros((h, program.outputs))
    a[np.arange(m), output] = root
    heads = {"w1": w1, "w2": w2, "a": a}
    if kind == "gated":
        u1 = np.zeros((h, program.n))
        u2 = np.zeros((h, program.d))
        u1[:m], u2[:m] = program.gates.u1[gate], program.gates.u2[gate]
        heads.update(u1=u1, u2=u2)
    return heads


def _sequence_heads(C, program, h):
    row_sums = C.sum(axis=-1)  # (2, d, c, n)
    s = row_sums.mean(axis=-1)
    sign, q, l = np.nonzero(s > 0)
    m = sign.size
    W1 = np.full((h, program.n, program.n), 1.0 / program.n)  # padding: uniform rows
    W2 = np.zeros((h, program.d, program.outputs))
    a = np.zeros(h)
    blocks = C[sign, q, l]  # (m, n, n)
    W1[:m] = blocks / blocks.sum(axis=-1, keepdims=True)
    root = np.sqrt(s[sign, q, l])
    W2[np.arange(m), q, l] = root
    a[:m] = np.where(sign == 0, 1.0, -1.0) * root
    return {"W1": W1, "W2": W2, "a": a}


def needed_heads(program: ConvexProgram, x: Any) -> int:
    """Number of nonzero groups of x: the heads a recovery needs."""
    norms = np.asarray(program.problem.penalty.group_norms(np.asarray(x)))
    return int(np.count_nonzero(norms))


def recover_heads(
    program: ConvexProgram, x: Any, heads: int | None = None, reduce: bool = True
) -> dict[str, np.ndarray]:
    """Nonconvex heads (``baselines.heads`` format) reaching the convex objective of x.

    heads: number of heads to return (None: exactly as many as needed); extra heads are zero.
    reduce: first reduce x to linearly independent atoms (another optimum, fewer heads).
    Raises ValueError if ``heads`` is smaller than the number of nonzero groups.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape != program.shape:
        raise ValueError(f"x must have the program's shape {program.shape}; got {x.shape}")
    if reduce:
        x = solvers.reduce_support(program.problem, x)
    m = needed_heads(program, x)
    if heads is None:
        h = max(m, 1)
    elif not (isinstance(heads, int | np.integer) and heads >= 1):
        raise ValueError(f"heads must be an int >= 1 or None; got {heads!r}")
    elif heads < m:
        raise ValueError(
            f"heads={heads} is too few: the convex solution has {m} nonzero groups, so exact "
            f"recovery needs heads >= {m}"
        )
    else:
        h = int(heads)
    if program.kind == "sequence":
        return _sequence_heads(x, program, h)
    groups = x.reshape(-1, program.d)  # rows in order (gate, output, token)
    index = np.flatnonzero(np.linalg.norm(groups, axis=1) > 0)
    gate, rest = np.divmod(index, program.outputs * program.n)
    output, token = np.divmod(rest, program.n)
    return _one_hot_heads(program.kind, groups[index], token, output, gate, program, h)
