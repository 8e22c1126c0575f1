"""Objectives of the nonconvex networks, scored exactly like the convex programs."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import solvers
from baselines import heads as heads_module
from convextx._validation import check_beta, check_choice, check_X
from convextx.programs import KINDS, LOSSES, outputs_and_targets


def nonconvex_predictions(heads: dict, X: Any, kind: str, scalar_output: bool) -> jnp.ndarray:
    """The network's predictions shaped like the convex program's (squeezed if one output)."""
    out = heads_module.forward(kind, {k: jnp.asarray(v) for k, v in heads.items()}, jnp.asarray(X))
    return out[..., 0] if scalar_output and out.ndim > 1 else out


def nonconvex_objective(
    heads: dict,
    X: Any,
    y: Any,
    beta: float,
    kind: str = "vector",
    loss: str = "squared",
    num_classes: int | None = None,
) -> float:
    """``sum_i L(f(X_i), y_i) + weight decay`` of the head-sum network (eq. 8, 11, 13, 30).

    At a recovered optimum this equals the convex program's optimal value (MATH.md); for any
    other heads it is >= that value.
    """
    check_choice("kind", kind, KINDS)
    check_choice("loss", loss, LOSSES)
    X = check_X(X)
    beta = check_beta(beta)
    _, scalar_output, targets = outputs_and_targets(kind, loss, X, y, num_classes)
    pred = nonconvex_predictions(heads, X, kind, scalar_output)
    if kind == "sequence" and loss == "cross_entropy":
        pred = pred.reshape(-1, pred.shape[-1])
    data_fit = solvers.make_loss(loss, targets).value(pred)
    weights = {k: jnp.asarray(v) for k, v in heads.items()}
    return float(data_fit + heads_module.penalty(kind, weights, beta))
