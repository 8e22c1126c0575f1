"""Multi-head scaled dot-product attention (eq. 2 of the paper), registered as mixer "softmax".

Per head h with D = E / H::

    A_h = softmax(X W_Q^h (X W_K^h)^T / sqrt(D))      (B, L, L), row r = how token r mixes inputs
    y   = sum_h A_h X W_V^h W_O^h                       (B, L, E)

With ``cfg.causal`` the scores of inputs k > r are masked out, so output r depends on tokens <= r
only. The value/output half (``init_values``, ``mix``) is shared with the simplex mixer of eq. 4,
which replaces A_h by one trainable row-stochastic matrix.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from baselines.registry import Key, Layer, LayerConfig, LayerOutput, Params, register_mixer


def head_dim(cfg: LayerConfig) -> int:
    """D = E / H; ValueError unless ``cfg.heads`` is a positive divisor of ``cfg.width``."""
    if cfg.heads < 1 or cfg.width % cfg.heads:
        raise ValueError(f"heads must be a positive divisor of width={cfg.width}, got {cfg.heads}")
    return cfg.width // cfg.heads


def dense(key: jax.Array, fan_in: int, fan_out: int) -> jax.Array:
    """LeCun-normal (fan_in, fan_out) weight: unit-variance outputs for unit-variance inputs."""
    return jax.random.normal(key, (fan_in, fan_out)) / math.sqrt(fan_in)


def causal_mask(length: int) -> jax.Array:
    """(L, L) bool, True where input k may feed output r (k <= r)."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))


def init_values(key: jax.Array, cfg: LayerConfig) -> Params:
    """{"wv": (E, E), "wo": (E, E)}: W_V^h = wv[:, h*D:(h+1)*D], W_O^h = wo[h*D:(h+1)*D, :]."""
    head_dim(cfg)
    kv, ko = jax.random.split(key)
    return {"wv": dense(kv, cfg.width, cfg.width), "wo": dense(ko, cfg.width, cfg.width)}


def mix(weights: jax.Array, x: jax.Array, params: Params, heads: int) -> jax.Array:
    """y = sum_h weights_h X W_V^h W_O^h: weights (B, H, L, L), x (B, L, E) -> (B, L, E)."""
    batch, length, width = x.shape
    v = (x @ params["wv"]).reshape(batch, length, heads, width // heads)
    mixed = jnp.einsum("bhrk,bkhd->brhd", weights, v)
    return mixed.reshape(batch, length, width) @ params["wo"]


def init(key: jax.Array, cfg: LayerConfig) -> Params:
    """{"wq", "wk", "wv", "wo"}: each (E, E), no biases (as in eq. 2)."""
    kq, kk, kvo = jax.random.split(key, 3)
    return {
        "wq": dense(kq, cfg.width, cfg.width),
        "wk": dense(kk, cfg.width, cfg.width),
        **init_values(kvo, cfg),
    }


def apply(
    params: Params, x: jax.Array, cfg: LayerConfig, *, key: Key = None, train: bool = False
) -> LayerOutput:
    """x: (B, L, E) -> (y (B, L, E), {"attention": (B, H, L, L)}). Deterministic: key unused."""
    batch, length, width = x.shape
    dim = head_dim(cfg)
    q = (x @ params["wq"]).reshape(batch, length, cfg.heads, dim)
    k = (x @ params["wk"]).reshape(batch, length, cfg.heads, dim)
    scores = jnp.einsum("brhd,bkhd->bhrk", q, k) / math.sqrt(dim)
    if cfg.causal:
        scores = jnp.where(causal_mask(length), scores, -jnp.inf)
    attention = jax.nn.softmax(scores, axis=-1)
    return mix(attention, x, params, cfg.heads), {"attention": attention}


SOFTMAX = register_mixer("softmax")(Layer(init, apply))
