"""Mixture-of-experts feed-forward layer (Switch, arXiv 2101.03961; GShard, arXiv 2006.16668).

Each sequence of the batch is one routing group of S = L tokens::

    logits = x W_r                      (B, L, X), in at least float32 ("selective precision")
    p      = softmax(logits)            top-k experts per token; k = 1: gate p_e (Switch),
                                        k > 1: gates renormalized to sum to 1 (GShard)
    C      = max(min_capacity, ceil(capacity_factor * L * k / X)), at most L   slots per expert
    dispatch[b, s, e, c] = 1 if token s holds slot c of expert e;  combine = dispatch * gate
    y      = sum_{e, c} combine[., e, c] FFN_e(sum_s dispatch[s, e, c] x_s)      (B, L, E)

Slots are handed out first come, first served. Choice-major (GShard): every token's first choice
before any second choice. With ``cfg.causal``, token-major instead: token s's choices before
token s + 1's, so whether a token is dropped depends on earlier tokens only and the layer stays
causal. An assignment beyond capacity is dropped: it contributes zero, so a token dropped by all
its experts passes through the block's residual alone. Routing within one sequence keeps the
examples of a batch independent. Experts are the "mlp" FFN of ``baselines.ffn``, vmapped.
The one-hot dispatch tensors take O(B L X C) = O(B L^2 k) memory: meant for the short
sequences of the MoE experiments, not for long-context runs.

Options (``cfg.options``): ``num_experts`` X (4), ``top_k`` k (1), ``capacity_factor`` (1.25),
``min_capacity`` (4), ``jitter`` eps (0.0; 1e-2 is the value quoted for Switch): the router's
inputs times U(1 - eps, 1 + eps) when training, ``balance_coef`` (1e-2) and ``z_coef`` (1e-3):
weights of the losses in ``aux_loss``. aux: "aux_loss", "balance_loss", "z_loss",
"dropped_fraction" (share of routing assignments dropped), "expert_load" (X,) (share of
assignments choosing each expert, before capacity).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from baselines.ffn import mlp_apply, mlp_init
from baselines.registry import Aux, Layer, LayerConfig, Params, register_ffn
from solvers import checks

_ROUTER_STD = 0.02  # the router init of flaxformer's MoE layers


class MoESettings(NamedTuple):
    """Validated MoE options (see the module docstring)."""

    num_experts: int
    top_k: int
    capacity_factor: float
    min_capacity: int
    jitter: float
    balance_coef: float
    z_coef: float


class Routing(NamedTuple):
    """Routing of x: (G, S, E) to X experts with C slots each.

    logits, probs: (G, S, X) router outputs. expert, gate, keep: (G, S, k) chosen experts, their
    gates, and whether the assignment got a slot. dispatch, combine: (G, S, X, C).
    """

    logits: jax.Array
    probs: jax.Array
    expert: jax.Array
    gate: jax.Array
    keep: jax.Array
    dispatch: jax.Array
    combine: jax.Array


def _int_option(cfg: LayerConfig, name: str, default: int, low: int, high: int | None) -> int:
    return checks.integer(f"MoE option {name!r}", cfg.option(name, default), low, high)


def _real_option(
    cfg: LayerConfig, name: str, default: float, *, high: float = math.inf, strict: bool = False
) -> float:
    """A real option in [0, high), or (0, high) when ``strict``."""
    return checks.real(
        f"MoE option {name!r}",
        cfg.option(name, default),
        0.0,
        None if math.isinf(high) else high,
        low_open=strict,
        high_open=True,
    )


def settings(cfg: LayerConfig) -> MoESettings:
    """Read and validate the MoE options of ``cfg`` (an error naming the bad one: TypeError for
    the wrong kind of value, ValueError for one out of range)."""
    checks.integer("cfg.width", cfg.width, 1)
    checks.integer("cfg.hidden_ratio", cfg.hidden_ratio, 1)
    num_experts = _int_option(cfg, "num_experts", 4, 1, None)
    return MoESettings(
        num_experts=num_experts,
        top_k=_int_option(cfg, "top_k", 1, 1, num_experts),
        capacity_factor=_real_option(cfg, "capacity_factor", 1.25, strict=True),
        min_capacity=_int_option(cfg, "min_capacity", 4, 1, None),
        jitter=_real_option(cfg, "jitter", 0.0, high=1.0),
        balance_coef=_real_option(cfg, "balance_coef", 1e-2),
        z_coef=_real_option(cfg, "z_coef", 1e-3),
    )


def capacity(s: MoESettings, tokens: int) -> int:
    """Slots per expert for a group of ``tokens``: max(min_capacity, ceil(cf * tokens * k / X)),
    capped at ``tokens`` (an expert never receives more: a token picks distinct experts)."""
    wanted = math.ceil(s.capacity_factor * tokens * s.top_k / s.num_experts)
    return min(max(s.min_capacity, wanted), tokens)


def load_balancing_loss(probs: jax.Array) -> jax.Array:
    """Switch loss X * sum_e f_e P_e over all tokens of probs: (..., X); 1 at perfect balance.

    f_e: share of tokens whose top-1 expert is e; P_e: mean router probability of e. Gradients
    flow through P (f is a count)."""
    num_experts = probs.shape[-1]
    probs = probs.reshape(-1, num_experts)
    top1 = jax.nn.one_hot(jnp.argmax(probs, -1), num_experts, dtype=probs.dtype)
    return num_experts * jnp.sum(top1.mean(0) * probs.mean(0))


def router_z_loss(logits: jax.Array) -> jax.Array:
    """ST-MoE z-loss (arXiv 2202.08906): mean over tokens of logsumexp(logits)^2, logits (.., X)."""
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) ** 2)


def route(
    router: jax.Array,
    x: jax.Array,
    s: MoESettings,
    *,
    causal: bool = False,
    key: jax.Array | None = None,
    train: bool = False,
) -> Routing:
    """Top-k, capacity-limited routing of x: (G, S, E) with router: (E, X) (module docstring)."""
    groups, tokens, _ = x.shape
    k, num_experts, slots = s.top_k, s.num_experts, capacity(s, tokens)
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    x_router = x.astype(dtype)
    if train and s.jitter > 0:
        x_router = x_router * jax.random.uniform(
            key, x.shape, dtype, minval=1.0 - s.jitter, maxval=1.0 + s.jitter
        )
    logits = x_router @ router.astype(dtype)
    probs = jax.nn.softmax(logits, axis=-1)
    gate, expert = jax.lax.top_k(probs, k)  # (G, S, k)
    if k > 1:
        gate = gate / gate.sum(-1, keepdims=True)
    choice = jax.nn.one_hot(expert, num_experts, dtype=jnp.int32)  # (G, S, k, X)
    if causal:  # queue order: token-major
        slot = jnp.cumsum(choice.reshape(groups, tokens * k, num_experts), axis=1)
        slot = slot.reshape(choice.shape)
    else:  # queue order: choice-major
        slot = jnp.cumsum(choice.transpose(0, 2, 1, 3).reshape(groups, k * tokens, num_experts), 1)
        slot = slot.reshape(groups, k, tokens, num_experts).transpose(0, 2, 1, 3)
    slot = jnp.sum((slot - 1) * choice, axis=-1)  # (G, S, k) slot index in the chosen expert
    keep = slot < slots
    slot_hot = jax.nn.one_hot(slot, slots, dtype=dtype) * keep[..., None]  # (G, S, k, C)
    choice = choice.astype(dtype)
    dispatch = jnp.einsum("gskx,gskc->gsxc", choice, slot_hot)
    combine = jnp.einsum("gskx,gskc->gsxc", choice * gate[..., None], slot_hot)
    return Routing(logits, probs, expert, gate, keep, dispatch, combine)


def init(key: jax.Array, cfg: LayerConfig) -> Params:
    """{"router": (E, X) ~ N(0, 0.02^2), "experts": mlp params with a leading expert axis X}
    (w1 (X, E, F), b1 (X, F), w2 (X, F, E), b2 (X, E)), F = hidden_ratio * E."""
    s = settings(cfg)
    k_router, k_experts = jax.random.split(key)
    hidden = cfg.hidden_ratio * cfg.width
    experts = jax.vmap(lambda k: mlp_init(k, cfg.width, hidden))(
        jax.random.split(k_experts, s.num_experts)
    )
    router = _ROUTER_STD * jax.random.normal(k_router, (cfg.width, s.num_experts))
    return {"router": router, "experts": experts}


def apply(
    params: Params,
    x: jax.Array,
    cfg: LayerConfig,
    *,
    key: jax.Array | None = None,
    train: bool = False,
) -> tuple[jax.Array, Aux]:
    """MoE on x: (B, L, E) -> (y (B, L, E), aux) (module docstring). ``key`` is needed only for
    router jitter (``train`` with jitter > 0)."""
    s = settings(cfg)
    if x.ndim != 3 or x.shape[-1] != cfg.width:
        raise ValueError(f"x must have shape (B, L, {cfg.width}), got {x.shape}")
    if train and s.jitter > 0 and key is None:
        raise ValueError("key is required for router jitter (train=True and jitter > 0)")
    r = route(params["router"], x, s, causal=cfg.causal, key=key, train=train)
    expert_in = jnp.einsum("gsxc,gsd->xgcd", r.dispatch.astype(x.dtype), x)
    expert_out = jax.vmap(mlp_apply)(params["experts"], expert_in)  # (X, G, C, E)
    y = jnp.einsum("gsxc,xgcd->gsd", r.combine.astype(x.dtype), expert_out)
    balance, z = load_balancing_loss(r.probs), router_z_loss(r.logits)
    aux = {
        "aux_loss": s.balance_coef * balance + s.z_coef * z,
        "balance_loss": balance,
        "z_loss": z,
        "dropped_fraction": jnp.mean(~r.keep, dtype=r.probs.dtype),
        "expert_load": jax.nn.one_hot(r.expert, s.num_experts, dtype=r.probs.dtype).mean((0, 1, 2)),
    }
    return y, aux


MOE = register_ffn("moe")(Layer(init=init, apply=apply))
