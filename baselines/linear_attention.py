"""Multi-head linear attention (no softmax) read at one query position, with weight decay.

The nonconvex twin of the convex family "linear" (``convextx.families.linear``). Heads are dict
pytrees; X: (N, n, d), query position q (an int index into the n positions, default -1)::

    A (h, d, d)   merged query-key matrix of each head
    V (h, d, c)   value-output map of each head
    f(X_i) = (1/n) sum_h sum_j (x_q^T A_h x_j) V_h^T x_j              (N, c),  x_j = X_i[j]

    weight decay  beta/2 sum_h (|A_h|_F^2 + |V_h|_F^2)

Heads returned by the convex recovery also carry ``"query"`` (a 0-d int array); trainable
params hold only A and V (an integer leaf has no gradient), and the query lives in the
objective (``Predictor``) instead, as the fixed gates of ``baselines.heads`` do.

``to_matrix`` maps heads to ``M = sum_h vec(A_h) vec(V_h)^T`` (d^2, d c), the variable of the
convex program: f is linear in M, and ``beta |M|_* <= beta/2 sum_h (|A_h|^2 + |V_h|^2)`` with
equality at balanced SVD factors.

The objective and the penalty are frozen dataclasses equal when their settings are, so
Trainers built twice share their compiled steps (``baselines.train``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from baselines.objective import Objective, SupervisedObjective
from solvers import checks

Heads = dict[str, Any]
DEFAULT_QUERY = -1


def heads_query(heads: Mapping[str, Any], query: int | None = None) -> int:
    """The query position: ``query`` if given, else ``heads["query"]``, else -1."""
    if query is not None:
        return query
    if "query" in heads:
        return int(np.asarray(heads["query"]))
    return DEFAULT_QUERY


def check_heads(heads: Mapping[str, Any], X: jax.Array, query: int) -> None:
    """ValueError unless heads hold A (h, d, d) and V (h, d, c) for X (N, n, d), and query is
    a position of X (TypeError if it is not an int)."""
    if X.ndim != 3:
        raise ValueError(f"X must be (N, n, d), got shape {X.shape}")
    missing = [name for name in ("A", "V") if name not in heads]
    if missing:
        raise ValueError(f"linear-attention heads need {missing}, got keys {sorted(heads)}")
    _, n, d = X.shape
    A, V = heads["A"], heads["V"]
    if A.ndim != 3 or A.shape[1:] != (d, d):
        raise ValueError(f"heads['A'] must have shape (h, {d}, {d}), got {A.shape}")
    if V.ndim != 3 or V.shape[:2] != (A.shape[0], d):
        raise ValueError(f"heads['V'] must have shape ({A.shape[0]}, {d}, c), got {V.shape}")
    checks.integer("query", query, -n, n - 1)


def forward(heads: Mapping[str, Any], X: jax.Array, query: int | None = None) -> jax.Array:
    """f(X_i) for every sample (module docstring): (N, c). query: None reads heads["query"]
    (default -1)."""
    X = jnp.asarray(X)
    query = heads_query(heads, query)
    check_heads(heads, X, query)
    scores = _scores(heads, X, query)  # (N, h, n)
    mixed = jnp.einsum("ihj,ijd->ihd", scores, X)  # (N, h, d)
    return jnp.einsum("ihd,hdc->ic", mixed, jnp.asarray(heads["V"], X.dtype))


def attention_scores(heads: Mapping[str, Any], X: jax.Array, query: int | None = None):
    """(N, h, n): each head's (unnormalized, signed) token weights x_q^T A_h x_j / n."""
    X = jnp.asarray(X)
    query = heads_query(heads, query)
    check_heads(heads, X, query)
    return _scores(heads, X, query)


def _scores(heads: Mapping[str, Any], X: jax.Array, query: int) -> jax.Array:
    """(N, h, n) scores, contracted query side first: the keys x_q^T A_h (N, h, d), then the
    tokens, so that no intermediate is larger than (N, h, max(n, d)) whatever the sizes."""
    keys = jnp.einsum("ia,hab->ihb", X[:, query], jnp.asarray(heads["A"], X.dtype))
    return jnp.einsum("ihb,ijb->ihj", keys, X) / X.shape[1]


def penalty(heads: Mapping[str, Any], beta: Any) -> jax.Array:
    """beta/2 sum_h (|A_h|_F^2 + |V_h|_F^2); reads only A and V (heads or params). beta > 0."""
    if isinstance(beta, numbers.Real):  # a traced (jax) beta is the caller's to check
        checks.positive("beta", beta)
    return beta / 2 * (jnp.sum(jnp.square(heads["A"])) + jnp.sum(jnp.square(heads["V"])))


def to_matrix(heads: Mapping[str, Any]) -> np.ndarray:
    """M = sum_h vec(A_h) vec(V_h)^T, (d^2, d c) float64: rows (a, b), columns (e, k)."""
    A = np.asarray(heads["A"], dtype=np.float64)
    V = np.asarray(heads["V"], dtype=np.float64)
    h, d, c = V.shape
    return A.reshape(h, d * d).T @ V.reshape(h, d * c)


def init_params(key: jax.Array, h: int, d: int, c: int, scale: float = 1.0) -> dict[str, Any]:
    """Trainable params of ``h`` heads: A, V with i.i.d. N(0, scale^2 / d) entries."""
    h, d, c = (checks.integer(name, v, 1) for name, v in (("h", h), ("d", d), ("c", c)))
    scale = checks.positive("scale", scale)
    k_a, k_v = jax.random.split(key)
    return {
        "A": scale * jax.random.normal(k_a, (h, d, d)) / math.sqrt(d),
        "V": scale * jax.random.normal(k_v, (h, d, c)) / math.sqrt(d),
    }


def to_heads(params: Mapping[str, Any], query: int = DEFAULT_QUERY) -> Heads:
    """The heads of trainable params, with the query position."""
    checks.integer("query", query)
    return {"A": params["A"], "V": params["V"], "query": np.asarray(query)}


@dataclasses.dataclass(frozen=True)
class WeightDecay:
    """``params -> penalty(params, beta)``, equal to every other of equal beta."""

    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", checks.positive("beta", self.beta))

    def __call__(self, params: Mapping[str, Any]) -> jax.Array:
        return penalty(params, self.beta)


@dataclasses.dataclass(frozen=True)
class Predictor:
    """``(params, X, key) -> (f(X), {})`` at the query position ``query``; equal by query."""

    query: int = DEFAULT_QUERY

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", checks.integer("query", self.query))

    def __call__(self, params: Any, X: jax.Array, key: jax.Array | None) -> tuple[jax.Array, dict]:
        return forward(params, X, self.query), {}


def objective(
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    query: int = DEFAULT_QUERY,
    accuracy: bool = False,
) -> Objective:
    """The Trainer objective on batches (X, y): sum_i loss(f(X_i), y_i), ``loss(pred, y)``
    returning per-sample losses. Pair it with ``penalty=WeightDecay(beta)``."""
    return SupervisedObjective(Predictor(query), loss, accuracy=accuracy)


__all__ = [
    "DEFAULT_QUERY",
    "Predictor",
    "WeightDecay",
    "attention_scores",
    "check_heads",
    "forward",
    "init_params",
    "objective",
    "penalty",
    "to_heads",
    "to_matrix",
]
