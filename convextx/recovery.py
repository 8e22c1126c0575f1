"""From a convex solution to ordinary network weights (corrected Prop. 1 and its analogues).

Each nonzero group of the convex solution becomes one head of the family's nonconvex twin
(``Family.recover``; each family module documents its map), whose weight decay equals beta
times the group's norm (AM-GM at balance), so the recovered network's objective equals the
convex optimum. The solution is first reduced to linearly independent atoms
(``solvers.reduce_support``): at most (number of predictions + 1) heads.

``nonconvex_setup`` goes the other way: the trainable twin of a program (objective, penalty and
initialization for ``baselines.train.Trainer``), to train by gradient on the same objective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
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


def _half_squared(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Per-sample 1/2 |pred - target|^2, (B,)."""
    diff = (pred - target).reshape(pred.shape[0], -1)
    return 0.5 * jnp.sum(diff**2, axis=1)


def _half_squared_first(pred: jax.Array, target: jax.Array) -> jax.Array:
    """``_half_squared`` of the first output column against scalar targets (B,)."""
    return _half_squared(pred[:, 0] if pred.ndim == 2 else pred, target)


def nonconvex_setup(
    program: ConvexProgram, X: Any, y: Any
) -> tuple[Any, Callable, Callable[[jax.Array], Any], tuple[jax.Array, jax.Array]]:
    """(objective, penalty, init(key), data) of the program's nonconvex twin
    (``baselines.heads``, for a ``baselines.train.Trainer``) with enough heads to reach the convex
    optimum unreduced (``Family.twin_heads``: one per group; gated: each gate repeated for its
    groups, ``twin_gates``). Its objective plus penalty is the program's on the same scale.

    Token-group families (scalar, vector, gated) with the squared loss; ValueError otherwise.
    The objectives and penalties of equal settings compare equal (one compilation).
    """
    from baselines import heads as heads_module

    family = program.family
    kind = getattr(family, "twin_kind", None)
    if kind is None or program.loss != "squared":
        raise ValueError(
            f"nonconvex_setup needs a token-group family (scalar, vector, gated) with the squared "
            f"loss; got family {family.name!r}, loss {program.loss!r}"
        )
    twin_gates = family.twin_gates(program)
    gates = None if twin_gates is None else {k: jnp.asarray(v) for k, v in twin_gates.items()}
    loss = _half_squared_first if program.scalar_output else _half_squared
    objective = heads_module.objective(kind, loss, gates=gates)
    penalty = heads_module.WeightDecay(kind, float(program.problem.penalty.beta))
    h, n, d = family.twin_heads(program), program.n, program.d
    c = family.twin_outputs(program)

    def init(key: jax.Array) -> Any:
        return heads_module.init_params(key, kind, h, n, d, c)

    return objective, penalty, init, (jnp.asarray(X), jnp.asarray(y))
