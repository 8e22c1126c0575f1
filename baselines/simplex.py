"""The simplex token mixer of eq. 4 of the paper (a row-stochastic mixing matrix), registered as mixer "simplex".

Per head h one trainable row-stochastic matrix W_1^h (L, L), SHARED by all samples::

    y = sum_h W_1^h X W_V^h W_O^h          x, y: (B, L, E)

It replaces the data-dependent softmax(Q K^T) of attention by an input-independent mixing matrix
constrained to the simplex: a different model class from softmax attention, not a reformulation
of it. Two parameterizations (``cfg.options["parameterization"]``):

- "softmax" (default): free logits (H, L, L), W_1 = row softmax; initialized to zero (uniform rows).
- "projection": W_1 (H, L, L) stored on the simplex (uniform rows at init) and kept there by
  ``project`` after each optimizer step: projected gradient descent, with the sort-based Euclidean
  projection of Duchi, Shalev-Shwartz, Singer and Chandra (ICML 2008).

Causal (``cfg.causal``): only entries k <= r are allowed (masked logits, or a projection onto the
simplex of the allowed entries), so output r depends on tokens <= r only.

Sequences shorter than ``max_len``: L tokens use the top-left (L, L) block of W_1. A causal
block is already row-stochastic (row r < L has all its mass on k <= r < L), so the model on a
prefix is the model restricted to it. A bidirectional block's rows are renormalized to sum 1:
a softmax over the block's logits, or the stored row divided by its block sum (uniform where that
sum is 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from baselines.attention import causal_mask, init_values, mix
from baselines.registry import Key, Layer, LayerConfig, LayerOutput, Params, register_mixer
from solvers import checks

PARAMETERIZATIONS = ("softmax", "projection")


@jax.jit
def project_rows(v: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Euclidean projection of every row of ``v`` (..., n) onto the unit simplex.

    With ``mask`` (broadcastable to ``v``, bool) each row is projected onto the simplex of its
    allowed entries and the others are set to 0; every row needs one allowed entry. Sort-based,
    O(n log n) per row (Duchi et al. 2008, Fig. 1): w = max(v - theta, 0) with theta chosen so
    that the row sums to 1.
    """
    n = v.shape[-1]
    allowed = jnp.ones(v.shape, bool) if mask is None else jnp.broadcast_to(mask, v.shape)
    count = allowed.sum(-1, keepdims=True)
    u = -jnp.sort(jnp.where(allowed, -v, jnp.inf), axis=-1)  # allowed entries first, descending
    rank = jnp.arange(1, n + 1)
    inside = rank <= count
    cumsum = jnp.cumsum(jnp.where(inside, u, 0.0), axis=-1)
    rho = (inside & (rank * u > cumsum - 1)).sum(-1, keepdims=True)
    theta = (jnp.take_along_axis(cumsum, rho - 1, axis=-1) - 1) / rho
    return jnp.where(allowed, jnp.maximum(v - theta, 0), 0)


def _parameterization(cfg: LayerConfig) -> str:
    return checks.choice(
        "parameterization", cfg.option("parameterization", "softmax"), PARAMETERIZATIONS
    )


def _allowed(length: int, causal: bool) -> jax.Array:
    return causal_mask(length) if causal else jnp.ones((length, length), bool)


def init(key: jax.Array, cfg: LayerConfig) -> Params:
    """{"logits" or "w1": (H, max_len, max_len), "wv": (E, E), "wo": (E, E)}; uniform rows."""
    parameterization = _parameterization(cfg)
    values = init_values(key, cfg)
    shape = (cfg.heads, cfg.max_len, cfg.max_len)
    if parameterization == "softmax":
        return {"logits": jnp.zeros(shape, values["wv"].dtype), **values}
    allowed = _allowed(cfg.max_len, cfg.causal)
    uniform = allowed / allowed.sum(-1, keepdims=True)
    return {"w1": jnp.broadcast_to(uniform, shape).astype(values["wv"].dtype), **values}


def mixing_matrices(params: Params, length: int, causal: bool) -> jax.Array:
    """The (H, L, L) row-stochastic W_1 used on sequences of L = ``length`` tokens (module doc)."""
    if "logits" in params:
        logits = params["logits"][:, :length, :length]
        if causal:
            logits = jnp.where(causal_mask(length), logits, -jnp.inf)
        return jax.nn.softmax(logits, axis=-1)
    w1 = params["w1"][:, :length, :length]
    if causal or length == params["w1"].shape[-1]:
        return w1
    total = w1.sum(-1, keepdims=True)
    renormalized = w1 / jnp.where(total > 0, total, 1)
    return jnp.where(total > 0, renormalized, 1 / length)


def apply(
    params: Params, x: jax.Array, cfg: LayerConfig, *, key: Key = None, train: bool = False
) -> LayerOutput:
    """x: (B, L, E), L <= max_len -> (y (B, L, E), {"attention": (B, H, L, L)}). key unused."""
    batch, length, _ = x.shape
    if length > cfg.max_len:
        raise ValueError(f"sequence length {length} exceeds max_len={cfg.max_len}")
    weights = mixing_matrices(params, length, cfg.causal)
    attention = jnp.broadcast_to(weights, (batch, *weights.shape))
    return mix(attention, x, params, cfg.heads), {"attention": attention}


def project(params: Params, cfg: LayerConfig) -> Params:
    """Put the stored W_1 of a "projection" layer back on the (causal) simplex; others unchanged."""
    if "w1" not in params:
        return params
    allowed = _allowed(params["w1"].shape[-1], cfg.causal)
    return {**params, "w1": project_rows(params["w1"], allowed)}


SIMPLEX = register_mixer("simplex")(Layer(init, apply))
