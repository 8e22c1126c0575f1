"""Objectives of the nonconvex twins, scored exactly like the convex programs."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import solvers
from convextx import families
from convextx._validation import check_beta, check_X, check_y
from convextx.families.base import LOSSES
from solvers import checks


def nonconvex_predictions(
    heads: dict, X: Any, kind: str, scalar_output: bool, loss: str = "squared"
) -> jnp.ndarray:
    """The twin network's predictions shaped like the convex program's (squeezed if one
    output; token rows for per-token cross-entropy)."""
    family = families.get(kind)
    return family.shaped(family.twin_forward(heads, jnp.asarray(X)), scalar_output, loss)


def nonconvex_objective(
    heads: dict,
    X: Any,
    y: Any,
    beta: float,
    kind: str = "vector",
    loss: str = "squared",
    num_classes: int | None = None,
) -> float:
    """``sum_i L(f(X_i), y_i) + weight decay`` of the family's twin network (eq. 8, 11, 13, 30).

    At a recovered optimum this equals the convex program's optimal value; for any other
    heads it is >= that value.
    """
    family = families.get(kind)
    family.check_loss(checks.choice("loss", loss, LOSSES))
    X = check_X(X)
    beta = check_beta(beta)
    targets = family.encode(check_y(y), loss, X.shape, num_classes)
    pred = nonconvex_predictions(heads, X, kind, targets.scalar_output, loss)
    data_fit = solvers.make_loss(loss, targets.values).value(pred)
    return float(data_fit + family.twin_penalty(heads, beta))
