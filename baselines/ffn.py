"""Dense GELU feed-forward layer, registered as ffn "mlp".

    y = gelu(x W_1 + b_1) W_2 + b_2,   W_1: (E, F), W_2: (F, E), F = hidden_ratio * E.

``mlp_init`` / ``mlp_apply`` work for any (width, hidden), so an expert of a mixture-of-experts
layer can be the same function (vmapped over experts).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from baselines.attention import dense
from baselines.registry import Key, Layer, LayerConfig, LayerOutput, Params, register_ffn
from solvers import checks


def mlp_init(key: jax.Array, width: int, hidden: int) -> Params:
    """{"w1": (E, F), "b1": (F,), "w2": (F, E), "b2": (E,)}: LeCun-normal weights, zero biases."""
    k1, k2 = jax.random.split(key)
    w1 = dense(k1, width, hidden)
    return {
        "w1": w1,
        "b1": jnp.zeros(hidden, w1.dtype),
        "w2": dense(k2, hidden, width),
        "b2": jnp.zeros(width, w1.dtype),
    }


def mlp_apply(params: Params, x: jax.Array) -> jax.Array:
    """x: (..., E) -> (..., E)."""
    return jax.nn.gelu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def init(key: jax.Array, cfg: LayerConfig) -> Params:
    """The MLP of width E = ``cfg.width`` and hidden F = ``cfg.hidden_ratio * cfg.width``."""
    hidden_ratio = checks.integer("hidden_ratio", cfg.hidden_ratio, 1)
    return mlp_init(key, cfg.width, hidden_ratio * cfg.width)


def apply(
    params: Params, x: jax.Array, cfg: LayerConfig, *, key: Key = None, train: bool = False
) -> LayerOutput:
    """x: (B, L, E) -> (y (B, L, E), {}). Deterministic: key unused."""
    return mlp_apply(params, x), {}


MLP = register_ffn("mlp")(Layer(init, apply))
