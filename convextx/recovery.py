"""From a convex solution to ordinary network weights (corrected Prop. 1 and its analogues).

Each nonzero group of the convex solution becomes one head of the family's nonconvex twin
(``Family.recover``; each family module documents its map), whose weight decay equals beta
times the group's norm (AM-GM at balance), so the recovered network's objective equals the
convex optimum. The solution is first reduced to linearly independent atoms
(``solvers.reduce_support``): at most (number of predictions + 1) heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import solvers
from convextx.programs import ConvexProgram
from solvers import checks


def needed_heads(program: ConvexProgram, x: Any) -> int:
    """Number of nonzero groups of x: the heads a recovery needs."""
    return program.family.needed_heads(program, np.asarray(x))


def recover_heads(
    program: ConvexProgram, x: Any, heads: int | None = None, reduce: bool = True
) -> dict[str, np.ndarray]:
    """Nonconvex heads (the family twin's format) reaching the convex objective of x.

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
    else:
        h = checks.integer("heads", heads, 1)
        if h < m:
            raise ValueError(
                f"heads={h} is too few: the convex solution has {m} nonzero groups, so exact "
                f"recovery needs heads >= {m}"
            )
    return program.family.recover(program, x, h)
