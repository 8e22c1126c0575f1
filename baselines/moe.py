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

Router gradients (option ``router``, ``ROUTERS``). "topk" (default) is the layer above: the
router learns through the gate values p_e. The others route each token to ONE expert drawn from
the categorical softmax(logits) when training (``top_k`` must be 1), with gate 1, so the output
depends on the router only through the discrete choice and the router learns through an
estimator of grad E_z[loss] (``baselines.router_gradients``):

- "reinforce_loo": i.i.d. draws, REINFORCE with a leave-one-out baseline;
- "carms": antithetic draws (CARMS, stick-breaking with a Dirichlet copula);
- "arms": ``num_experts`` = 2, the choice as a binary variable (ARMS; Dirichlet copula);
- "straight_through": straight-through Gumbel-softmax, the gate is onehot + (y - stop_grad(y)),
  y = softmax((logits + G) / tau) (biased; value 1, gradient of the relaxed y).

Evaluation (``train=False``) routes deterministically to argmax(p) with gate 1. The estimators
need the loss at ``router_samples`` n (2) draws per token: training must use ``objective`` (a
``RouterObjective``), which runs the network on n stacked copies of the batch (row i B + b is
copy i of sample b) and adds the estimator's surrogate; with a plain supervised objective the
stochastic routers get no gradient from the loss. "arms" / "carms" couple the n draws of a token
across the copies, which needs the copies to reach the layer identical: one MoE layer in the
stack and no jitter (``objective`` checks). ``router_temperature`` tau (1.0): straight-through.
Stochastic routers add aux "router_logits" (B, L, X) and "router_choice" (B, L) int.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from baselines import router_gradients, transformer
from baselines.ffn import mlp_apply, mlp_init
from baselines.registry import Aux, Key, Layer, LayerConfig, LayerOutput, Params, register_ffn
from solvers import checks

_ROUTER_STD = 0.02  # the router init of flaxformer's MoE layers
ROUTERS = ("topk", "reinforce_loo", "arms", "carms", "straight_through")
COUPLED_ROUTERS = ("arms", "carms")  # their n draws of a token are coupled across the copies


class MoESettings(NamedTuple):
    """Validated MoE options (see the module docstring)."""

    num_experts: int
    top_k: int
    capacity_factor: float
    min_capacity: int
    jitter: float
    balance_coef: float
    z_coef: float
    router: str
    router_samples: int
    router_temperature: float

    @property
    def stochastic(self) -> bool:
        """Whether the router draws its choice when training (every router but "topk")."""
        return self.router != "topk"


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
    top_k = _int_option(cfg, "top_k", 1, 1, num_experts)
    router = cfg.option("router", "topk")
    if not isinstance(router, str):
        raise TypeError(f"MoE option 'router' must be a string; got {router!r}")
    checks.choice("MoE option 'router'", router, ROUTERS)
    if router != "topk" and top_k != 1:
        raise ValueError(f"MoE option 'top_k' must be 1 with router={router!r}; got {top_k}")
    if router == "arms" and num_experts != 2:
        raise ValueError(
            f"router='arms' routes between 2 experts (a binary choice); got num_experts="
            f"{num_experts} (use 'carms' for more)"
        )
    least_samples = 1 if router == "straight_through" else 2
    return MoESettings(
        num_experts=num_experts,
        top_k=top_k,
        capacity_factor=_real_option(cfg, "capacity_factor", 1.25, strict=True),
        min_capacity=_int_option(cfg, "min_capacity", 4, 1, None),
        jitter=_real_option(cfg, "jitter", 0.0, high=1.0),
        balance_coef=_real_option(cfg, "balance_coef", 1e-2),
        z_coef=_real_option(cfg, "z_coef", 1e-3),
        router=router,
        router_samples=_int_option(cfg, "router_samples", 2, least_samples, None),
        router_temperature=_real_option(cfg, "router_temperature", 1.0, strict=True),
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


def _choose(
    logits: jax.Array, probs: jax.Array, s: MoESettings, key: jax.Array | None, train: bool
) -> tuple[jax.Array, jax.Array]:
    """(expert (G, S, k) int, gate (G, S, k)) for router logits and probs: (G, S, X).

    "topk": the k most probable experts, gates p_e (renormalized for k > 1). Stochastic routers:
    k = 1, argmax(p) when evaluating; when training, a draw (module docstring) with gate 1
    (straight-through: 1 in value, the relaxed gradient)."""
    if s.router == "topk":
        gate, expert = jax.lax.top_k(probs, s.top_k)
        if s.top_k > 1:
            gate = gate / gate.sum(-1, keepdims=True)
        return expert, gate
    if not train:
        expert = jnp.argmax(probs, axis=-1)[..., None]
        return expert, jnp.ones(expert.shape, probs.dtype)
    if s.router == "straight_through":
        hot = router_gradients.gumbel_softmax_st(key, logits, 1, s.router_temperature)[0]
        expert = jnp.argmax(hot, axis=-1)[..., None]
        return expert, jnp.take_along_axis(hot, expert, axis=-1)
    if s.router == "reinforce_loo":
        expert = jax.random.categorical(key, logits)[..., None]
        return expert, jnp.ones(expert.shape, probs.dtype)
    groups, tokens, num_experts = logits.shape
    n = s.router_samples
    if groups % n:
        raise ValueError(
            f"router={s.router!r} trains on router_samples={n} stacked copies of the batch "
            f"(moe.objective); got {groups} sequences, not a multiple of {n}"
        )
    shared = logits.reshape(n, groups // n, tokens, num_experts)[0]  # the copies are equal
    expert = router_gradients.sample(s.router, key, shared, n).reshape(groups, tokens, 1)
    return expert, jnp.ones(expert.shape, probs.dtype)


def route(
    router: jax.Array,
    x: jax.Array,
    s: MoESettings,
    *,
    causal: bool = False,
    key: jax.Array | None = None,
    train: bool = False,
) -> Routing:
    """Capacity-limited routing of x: (G, S, E) with router: (E, X): top-k, or one drawn expert
    per token for the stochastic routers (module docstring)."""
    groups, tokens, _ = x.shape
    k, num_experts, slots = s.top_k, s.num_experts, capacity(s, tokens)
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    x_router = x.astype(dtype)
    jitter_key, draw_key = key, None
    if s.stochastic and train:
        jitter_key, draw_key = jax.random.split(key)
    if train and s.jitter > 0:
        x_router = x_router * jax.random.uniform(
            jitter_key, x.shape, dtype, minval=1.0 - s.jitter, maxval=1.0 + s.jitter
        )
    logits = x_router @ router.astype(dtype)
    probs = jax.nn.softmax(logits, axis=-1)
    expert, gate = _choose(logits, probs, s, draw_key, train)  # (G, S, k)
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
    params: Params, x: jax.Array, cfg: LayerConfig, *, key: Key = None, train: bool = False
) -> LayerOutput:
    """MoE on x: (B, L, E) -> (y (B, L, E), aux) (module docstring). ``key`` is needed only for
    router jitter (``train`` with jitter > 0) and for a stochastic router's draws (``train``)."""
    s = settings(cfg)
    if x.ndim != 3 or x.shape[-1] != cfg.width:
        raise ValueError(f"x must have shape (B, L, {cfg.width}), got {x.shape}")
    if train and s.jitter > 0 and key is None:
        raise ValueError("key is required for router jitter (train=True and jitter > 0)")
    if train and s.stochastic and key is None:
        raise ValueError(f"key is required for router={s.router!r} draws (train=True)")
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
    if s.stochastic:
        aux |= {"router_logits": r.logits, "router_choice": r.expert[..., 0]}
    return y, aux


MOE = register_ffn("moe")(Layer(init=init, apply=apply))


def _router_entries(aux: Aux) -> list[tuple[jax.Array, jax.Array]]:
    """(router_logits, router_choice) of every stochastic MoE layer in a transformer's aux
    ("metrics": one dict per layer, the FFN's entries prefixed "ffn/")."""
    return [
        (layer["ffn/router_logits"], layer["ffn/router_choice"])
        for layer in aux.get("metrics", [])
        if "ffn/router_choice" in layer
    ]


@dataclasses.dataclass(frozen=True)
class RouterObjective:
    """The Trainer objective on batches (x, y) of a stack with stochastic MoE routers.

    predict: ``(params, x, key) -> (pred, aux)`` (``transformer.Predictor``: train mode with a
    key), aux in the transformer's format.  loss: per-sample losses (B,).  router, samples: the
    MoE layers' ``router`` and ``router_samples`` n.  accuracy: count argmax hits as "correct".

    Evaluation (key None): one deterministic pass, the sum of the losses. Training: x and y are
    stacked n times (row i B + b is copy i of sample b), so every token gets n draws, and the
    value is the mean over the copies of the sum of the losses f_i = sum_b loss(copy i of b)
    (an unbiased estimate of E_z[sum of losses]; its pathwise gradient reaches every parameter
    but the router). Score-function routers add ``router_gradients.surrogate`` of each
    stochastic layer (value 0), whose gradient is the estimator's
    sum_i c_i grad log q(z_i), with c from ``router_gradients.coefficients`` on the per-sample
    losses of the copies: every token of sample b uses f(copy i of b). Straight-through needs no
    surrogate (its gradient is pathwise). aux: the model's "aux_loss" (a mean, unchanged by the
    copies) and, with ``accuracy``, "correct" averaged over the copies. Equal when the fields are.
    """

    predict: Callable[[Params, jax.Array, jax.Array | None], tuple[jax.Array, Aux]]
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    router: str
    samples: int
    accuracy: bool = dataclasses.field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        checks.choice("router", self.router, ROUTERS[1:])
        least = 1 if self.router == "straight_through" else 2
        checks.integer("samples", self.samples, least)

    def _losses(self, pred: jax.Array, y: jax.Array) -> jax.Array:
        losses = self.loss(pred, y)
        if losses.shape != (y.shape[0],):
            raise ValueError(
                f"loss must return per-sample losses {(y.shape[0],)}, got {losses.shape}"
            )
        return losses

    def __call__(
        self, params: Params, batch: tuple[jax.Array, jax.Array], key: jax.Array | None
    ) -> tuple[jax.Array, dict]:
        x, y = batch
        copies = 1 if key is None else self.samples
        if copies > 1:
            x, y = jnp.concatenate([x] * copies), jnp.concatenate([y] * copies)
        pred, model_aux = self.predict(params, x, key)
        losses = self._losses(pred, y).reshape(copies, -1)  # (n, B)
        value = losses.mean(axis=0).sum()
        if key is not None and self.router in router_gradients.SCORE_METHODS:
            f = jax.lax.stop_gradient(losses)[..., None]  # (n, B, 1): one value per sequence
            for logits, choice in _router_entries(model_aux):
                logits = logits.reshape(copies, -1, *logits.shape[1:])  # (n, B, L, X)
                choice = choice.reshape(copies, -1, choice.shape[-1])  # (n, B, L)
                c = router_gradients.coefficients(self.router, logits[0], choice, f)
                value = value + router_gradients.surrogate(logits, choice, c)
        aux = {k: model_aux[k] for k in ("aux_loss",) if k in model_aux}
        if self.accuracy:
            hits = (jnp.argmax(pred, axis=-1) == y).reshape(y.shape[0], -1)
            aux["correct"] = hits.mean(axis=1).sum() / copies
        return value, aux


def objective(
    cfg: transformer.TransformerConfig,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    accuracy: bool | None = None,
) -> Callable[[Params, tuple[jax.Array, jax.Array], jax.Array | None], tuple[jax.Array, dict]]:
    """The Trainer objective of stack ``cfg`` (``transformer.objective``'s arguments): that one
    for top-k routers (or no MoE layer), else a ``RouterObjective`` with the MoE options.
    ValueError if "arms" / "carms" would see unequal copies: more than one MoE layer, or jitter."""
    if "moe" not in cfg.ffns:
        return transformer.objective(cfg, loss, accuracy=accuracy)
    s = settings(cfg.layer_config)
    if not s.stochastic:
        return transformer.objective(cfg, loss, accuracy=accuracy)
    if s.router in COUPLED_ROUTERS:
        layers = cfg.ffns.count("moe")
        if layers != 1:
            raise ValueError(
                f"router={s.router!r} couples the draws of copies that must reach the MoE layer "
                f"equal: it needs exactly one MoE layer, got {layers} (use 'reinforce_loo')"
            )
        if s.jitter > 0:
            raise ValueError(f"router={s.router!r} needs jitter = 0 (jitter makes copies differ)")
    if accuracy is None:
        accuracy = cfg.output != "regression"
    return RouterObjective(
        transformer.Predictor(cfg), loss, s.router, s.router_samples, accuracy=accuracy
    )
