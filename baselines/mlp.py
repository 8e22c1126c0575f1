"""MLP classifiers as pure functions over a parameter pytree, with every hidden layer exposed.

A hidden layer computes ``z = x W + b`` (the linear output, "pre-activation"), optionally
``n = LayerNorm(z)`` with a per-unit affine, then ``relu(n)``; the last layer is linear and gives
the logits. REPAIR (baselines.repair) needs the per-unit statistics of ``z`` (or of ``n``) and
neuron alignment (baselines.align) needs the post-ReLU activations, so :func:`trace` returns them
all.

Parameters::

    {"layers": [{"w": (d_in, h1), "b": (h1,), "ln_scale": (h1,), "ln_bias": (h1,)},  # LN optional
                ...,
                {"w": (h_last, c), "b": (c,)}]}                                       # logits
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from baselines import transformer
from baselines.objective import Objective, SupervisedObjective
from solvers import checks

Params = dict[str, list[dict[str, jax.Array]]]


@dataclass(frozen=True)
class MLPConfig:
    """in_dim: input features d.  widths: hidden widths (h1, ..., hL), L >= 1.
    out_dim: classes c.  layer_norm: LayerNorm (with per-unit affine) before every ReLU."""

    in_dim: int
    widths: tuple[int, ...]
    out_dim: int
    layer_norm: bool = False

    def __post_init__(self) -> None:
        for name in ("in_dim", "out_dim"):
            object.__setattr__(self, name, checks.integer(name, getattr(self, name), 1))
        if len(self.widths) < 1:
            raise ValueError(
                f"widths must be a non-empty tuple of positive ints, got {self.widths!r}"
            )
        for i, h in enumerate(self.widths):
            checks.integer(f"widths[{i}]", h, 1)


class Trace(NamedTuple):
    """Everything one forward pass computes; tuples have one (N, h_l) entry per hidden layer.

    pre: linear outputs z = x W + b.  normed: LayerNorm outputs (``pre`` itself without LN), the
    ReLU inputs.  post: ReLU outputs.  logits: (N, c).
    """

    pre: tuple[jax.Array, ...]
    normed: tuple[jax.Array, ...]
    post: tuple[jax.Array, ...]
    logits: jax.Array


@partial(jax.jit, static_argnums=1)
def init(key: jax.Array, cfg: MLPConfig) -> Params:
    """He-normal weights, zero biases, LayerNorm scale 1 and bias 0 (compiled once per cfg)."""
    dims = (cfg.in_dim, *cfg.widths, cfg.out_dim)
    keys = jax.random.split(key, len(dims) - 1)
    layers = []
    for i, (k, d_in, d_out) in enumerate(zip(keys, dims[:-1], dims[1:], strict=True)):
        layer = {
            "w": jax.random.normal(k, (d_in, d_out)) * jnp.sqrt(2.0 / d_in),
            "b": jnp.zeros((d_out,)),
        }
        if cfg.layer_norm and i < len(cfg.widths):
            layer["ln_scale"] = jnp.ones((d_out,))
            layer["ln_bias"] = jnp.zeros((d_out,))
        layers.append(layer)
    return {"layers": layers}


def has_layer_norm(params: Params) -> bool:
    """Whether the hidden layers carry LayerNorm parameters."""
    return "ln_scale" in params["layers"][0]


def hidden_widths(params: Params) -> tuple[int, ...]:
    """(h1, ..., hL) of the hidden layers."""
    return tuple(int(layer["b"].shape[0]) for layer in params["layers"][:-1])


def layer_norm(z: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """LayerNorm over the last axis of ``z`` (N, h) with a per-unit affine (h,)."""
    return transformer.layer_norm(z, {"scale": scale, "bias": bias})


def _trace(params: Params, X: jax.Array) -> Trace:
    pre, normed, post = [], [], []
    x = X
    for layer in params["layers"][:-1]:
        z = x @ layer["w"] + layer["b"]
        n = layer_norm(z, layer["ln_scale"], layer["ln_bias"]) if "ln_scale" in layer else z
        x = jax.nn.relu(n)
        pre.append(z)
        normed.append(n)
        post.append(x)
    out = params["layers"][-1]
    return Trace(tuple(pre), tuple(normed), tuple(post), x @ out["w"] + out["b"])


_trace_jit = jax.jit(_trace)


def check_params(params: Any) -> None:
    """ValueError unless ``params`` is an MLP pytree as built by :func:`init`."""
    layers = params.get("layers") if isinstance(params, dict) else None
    if not isinstance(layers, Sequence) or len(layers) < 2:
        raise ValueError("params must be {'layers': [...]} with at least one hidden layer")
    d = layers[0]["w"].shape[0]
    for i, layer in enumerate(layers):
        w, b = layer["w"], layer["b"]
        if w.ndim != 2 or w.shape[0] != d or b.shape != (w.shape[1],):
            raise ValueError(
                f"params layer {i}: expected w (in={d}, out) and b (out,), got {w.shape}, {b.shape}"
            )
        d = w.shape[1]


def check_inputs(params: Params, X: Any) -> jax.Array:
    """``X`` as a finite (N, d) array matching the first layer; ValueError otherwise."""
    X = jnp.asarray(X)
    d = params["layers"][0]["w"].shape[0]
    if X.ndim != 2 or X.shape[1] != d or X.shape[0] < 1:
        raise ValueError(f"X must have shape (N, {d}) with N >= 1, got {X.shape}")
    if not bool(jnp.isfinite(X).all()):
        raise ValueError("X contains NaN or inf")
    return X


def trace(params: Params, X: jax.Array) -> Trace:
    """Forward pass of ``X`` (N, d) keeping every hidden layer's pre-activations and outputs."""
    check_params(params)
    return _trace_jit(params, check_inputs(params, X))


def apply(params: Params, X: jax.Array) -> jax.Array:
    """Logits (N, c) for inputs ``X`` (N, d); jit-compatible (no input checks)."""
    return _trace(params, X).logits


def cross_entropy(params: Params, X: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels ``y`` (N,); jit-compatible."""
    return optax.softmax_cross_entropy_with_integer_labels(apply(params, X), y).mean()


def error_rate(params: Params, X: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of ``y`` (N,) misclassified by the argmax of the logits; jit-compatible."""
    logits = apply(params, X)
    return jnp.mean(logits.argmax(-1) != y, dtype=logits.dtype)


def penalty(params: Params, beta: float) -> jax.Array:
    """Weight decay ``beta / 2 * sum_l |W_l|_F^2`` (biases and LayerNorm affines are free)."""
    return beta / 2 * sum(jnp.sum(layer["w"] ** 2) for layer in params["layers"])


@dataclass(frozen=True)
class WeightDecay:
    """``params -> penalty(params, beta)``: a Trainer penalty equal to every other of equal beta,
    so trainers built twice share their compiled steps."""

    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", checks.positive("beta", self.beta))

    def __call__(self, params: Params) -> jax.Array:
        return penalty(params, self.beta)


def _predict(params: Params, X: jax.Array, key: jax.Array | None) -> tuple[jax.Array, dict]:
    return apply(params, X), {}


def objective() -> Objective:
    """The Trainer objective on batches (X (B, d), y (B,) int): summed softmax cross-entropy,
    with the number of correct argmax predictions for accuracies (every call gives an equal
    objective)."""
    return SupervisedObjective(
        _predict, optax.softmax_cross_entropy_with_integer_labels, accuracy=True
    )
