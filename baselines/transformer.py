"""A transformer stack over the registered layers: the softmax baseline and its variants.

Each of ``depth`` blocks is a token mixer then an (optional) feed-forward layer, each wrapped in a
residual with LayerNorm, pre-norm ``x + f(LN(x))`` or post-norm ``LN(x + f(x))``::

    tokens (B, L) int  or  features (B, L, D) float
      -> embedding + positions                       (B, L, E)
      -> depth x [mixer sublayer, ffn sublayer]      (B, L, E)
      -> (final LN if pre-norm) -> pooling -> head   (B, C), or per token (B, L, C)

The mixer is chosen per layer by name ("softmax" attention, the "simplex" mixer of eq. 4, "gss",
...), so "simplex in layer 1 only" is ``mixer=("simplex", "softmax")``. The FFN is "mlp", "moe"
or None (no FFN sublayer, as in a GSS stack); ``moe_every=k`` swaps "moe" in every k-th layer.
``causal=True`` makes a decoder (output t sees tokens <= t), ``causal=False`` an encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import jax
import jax.numpy as jnp

from baselines import simplex
from baselines.attention import dense
from baselines.objective import Objective, SupervisedObjective
from baselines.registry import Aux, Key, Layer, LayerConfig, LayerOutput, Params, get_ffn, get_mixer
from solvers import checks

NORMS = ("pre", "post")
POSITIONS = ("learned", "sinusoidal", "none")
OUTPUTS = ("classification", "regression", "token")
POOLINGS = ("mean", "first", "last")
LN_EPS = 1e-5
_PROJECTIONS: dict[str, Callable[[Params, LayerConfig], Params]] = {"simplex": simplex.project}


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of the stack (validated on construction).

    Input: exactly one of ``vocab_size`` (token ids (B, L)) or ``input_dim`` (features (B, L, D)).
    width E, depth, heads H (must divide E), max_len (longest accepted L).
    mixer: one name for every layer, or a tuple of ``depth`` names.  ffn: name or None.
    moe_every: k > 0 uses ffn "moe" in layers k, 2k, ... (1-based); 0 never.
    norm: "pre" | "post".  positions: "learned" | "sinusoidal" | "none".  causal: decoder mask.
    output: "classification" / "regression" (pooled, (B, C)) or "token" (per token, (B, L, C));
    num_outputs C.  pooling: "mean" | "first" | "last" (pooled outputs only).
    options: passed to every layer as ``LayerConfig.options`` (e.g. simplex "parameterization").
    """

    width: int
    depth: int = 1
    heads: int = 1
    max_len: int = 64
    vocab_size: int | None = None
    input_dim: int | None = None
    mixer: str | tuple[str, ...] = "softmax"
    ffn: str | None = "mlp"
    moe_every: int = 0
    hidden_ratio: int = 4
    norm: str = "pre"
    positions: str = "learned"
    causal: bool = False
    output: str = "classification"
    num_outputs: int = 2
    pooling: str = "mean"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads", "max_len", "hidden_ratio", "num_outputs"):
            object.__setattr__(self, name, checks.integer(name, getattr(self, name), 1))
        if self.width % self.heads:
            raise ValueError(f"heads={self.heads} must divide width={self.width}")
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ValueError("give exactly one of vocab_size (token ids) or input_dim (features)")
        for name in ("vocab_size", "input_dim"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, checks.integer(name, getattr(self, name), 1))
        if not isinstance(self.mixer, str) and len(self.mixer) != self.depth:
            raise ValueError(f"mixer must be a name or {self.depth} names, got {self.mixer!r}")
        object.__setattr__(self, "moe_every", checks.integer("moe_every", self.moe_every, 0))
        checks.choice("norm", self.norm, NORMS)
        checks.choice("positions", self.positions, POSITIONS)
        checks.choice("output", self.output, OUTPUTS)
        checks.choice("pooling", self.pooling, POOLINGS)
        for name in self.mixers:
            get_mixer(name)
        for name in self.ffns:
            if name is not None:
                get_ffn(name)

    def __hash__(self) -> int:
        """By value, ``options`` as its sorted items (hashable values): equal configs key the
        same compilations."""
        values = [getattr(self, f.name) for f in fields(self) if f.name != "options"]
        return hash((*values, tuple(sorted(self.options.items()))))

    @property
    def mixers(self) -> tuple[str, ...]:
        """The mixer name of each layer."""
        return (self.mixer,) * self.depth if isinstance(self.mixer, str) else tuple(self.mixer)

    @property
    def ffns(self) -> tuple[str | None, ...]:
        """The FFN name (or None) of each layer."""
        moe = self.moe_every
        return tuple("moe" if moe and (i + 1) % moe == 0 else self.ffn for i in range(self.depth))

    @property
    def layer_config(self) -> LayerConfig:
        return LayerConfig(
            width=self.width,
            heads=self.heads,
            max_len=self.max_len,
            causal=self.causal,
            hidden_ratio=self.hidden_ratio,
            options=self.options,
        )


def _norm_init(width: int, dtype: Any) -> Params:
    return {"scale": jnp.ones(width, dtype), "bias": jnp.zeros(width, dtype)}


def layer_norm(x: jax.Array, params: Params) -> jax.Array:
    """LayerNorm over the last axis with a learned per-unit affine."""
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * params["scale"] + params["bias"]


def sinusoidal_positions(length: int, width: int) -> jax.Array:
    """(L, E) fixed positions of Vaswani et al. (2017): sin / cos pairs at geometric frequencies."""
    pairs = (width + 1) // 2
    angle = jnp.arange(length)[:, None] / 10000.0 ** (2 * jnp.arange(pairs) / width)
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1).reshape(length, -1)[:, :width]


def init(key: jax.Array, cfg: TransformerConfig) -> Params:
    """Parameters: {"embed", ["positions"], "layers": [{"mixer", "norm1", ["ffn", "norm2"]}],
    ["final_norm"], "head": {"w": (E, C), "b": (C,)}}."""
    k_embed, k_pos, k_head, *k_layers = jax.random.split(key, cfg.depth + 3)
    width, lcfg = cfg.width, cfg.layer_config
    if cfg.vocab_size is not None:
        embed = {"tokens": jax.random.normal(k_embed, (cfg.vocab_size, width))}
    else:
        w = dense(k_embed, cfg.input_dim, width)
        embed = {"w": w, "b": jnp.zeros(width, w.dtype)}
    dtype = next(iter(embed.values())).dtype
    params: Params = {"embed": embed}
    if cfg.positions == "learned":
        params["positions"] = jax.random.normal(k_pos, (cfg.max_len, width))
    layers = []
    for k_layer, mixer, ffn in zip(k_layers, cfg.mixers, cfg.ffns, strict=True):
        k_mix, k_ffn = jax.random.split(k_layer)
        layer = {"mixer": get_mixer(mixer).init(k_mix, lcfg), "norm1": _norm_init(width, dtype)}
        if ffn is not None:
            layer |= {"ffn": get_ffn(ffn).init(k_ffn, lcfg), "norm2": _norm_init(width, dtype)}
        layers.append(layer)
    params["layers"] = layers
    if cfg.norm == "pre":
        params["final_norm"] = _norm_init(width, dtype)
    w = dense(k_head, width, cfg.num_outputs)
    params["head"] = {"w": w, "b": jnp.zeros(cfg.num_outputs, w.dtype)}
    return params


def _check_input(x: jax.Array, cfg: TransformerConfig) -> None:
    if cfg.vocab_size is not None:
        if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
            raise TypeError(f"x must be integer token ids (B, L), got {x.dtype} {x.shape}")
    elif x.ndim != 3 or x.shape[-1] != cfg.input_dim:
        raise ValueError(f"x must be features (B, L, {cfg.input_dim}), got shape {x.shape}")
    if x.shape[1] > cfg.max_len:
        raise ValueError(f"sequence length {x.shape[1]} exceeds max_len={cfg.max_len}")


def _embed(params: Params, x: jax.Array, cfg: TransformerConfig) -> jax.Array:
    if cfg.vocab_size is not None:
        h = params["embed"]["tokens"][x]
    else:
        h = x @ params["embed"]["w"] + params["embed"]["b"]
    length = x.shape[1]
    if cfg.positions == "learned":
        h = h + params["positions"][:length]
    elif cfg.positions == "sinusoidal":
        h = h + sinusoidal_positions(length, cfg.width).astype(h.dtype)
    return h


def _residual(
    layer: Layer,
    params: Params,
    norm: Params,
    h: jax.Array,
    cfg: TransformerConfig,
    key: jax.Array | None,
    train: bool,
) -> tuple[jax.Array, Aux]:
    """One sublayer with its residual: pre-norm h + f(LN(h)) or post-norm LN(h + f(h))."""
    if cfg.norm == "pre":
        y, aux = layer.apply(params, layer_norm(h, norm), cfg.layer_config, key=key, train=train)
        return h + y, aux
    y, aux = layer.apply(params, h, cfg.layer_config, key=key, train=train)
    return layer_norm(h + y, norm), aux


def _pool(h: jax.Array, pooling: str) -> jax.Array:
    if pooling == "mean":
        return h.mean(1)
    return h[:, 0] if pooling == "first" else h[:, -1]


def apply(
    params: Params, x: jax.Array, cfg: TransformerConfig, *, key: Key = None, train: bool = False
) -> LayerOutput:
    """x: tokens (B, L) or features (B, L, D) -> (out, aux).

    out: (B, C) for pooled outputs, (B, L, C) for ``output="token"``.
    aux: "attention": list over layers of (B, H, L, L) mixing weights (None where the mixer has
    none, e.g. GSS); "aux_loss": scalar sum of the layers' auxiliary losses (0 if none);
    "metrics": list over layers of {"mixer/<key>": ..., "ffn/<key>": ...}, the layers' other aux.
    ``train`` and ``key`` go to every layer (each sublayer gets its own key folded from ``key``).
    """
    _check_input(x, cfg)
    h = _embed(params, x, cfg)
    attention, metrics, aux_loss = [], [], jnp.zeros((), h.dtype)
    for i, (layer, mixer, ffn) in enumerate(
        zip(params["layers"], cfg.mixers, cfg.ffns, strict=True)
    ):
        sublayers = [("mixer", get_mixer(mixer), "norm1")]
        if ffn is not None:
            sublayers.append(("ffn", get_ffn(ffn), "norm2"))
        layer_metrics = {}
        for j, (part, fn, norm) in enumerate(sublayers):
            sub_key = None if key is None else jax.random.fold_in(key, 2 * i + j)
            h, aux = _residual(fn, layer[part], layer[norm], h, cfg, sub_key, train)
            if part == "mixer":
                attention.append(aux.get("attention"))
            aux_loss = aux_loss + aux.get("aux_loss", 0.0)
            layer_metrics |= {
                f"{part}/{k}": v for k, v in aux.items() if k not in ("attention", "aux_loss")
            }
        metrics.append(layer_metrics)
    if cfg.norm == "pre":
        h = layer_norm(h, params["final_norm"])
    if cfg.output != "token":
        h = _pool(h, cfg.pooling)
    out = h @ params["head"]["w"] + params["head"]["b"]
    return out, {"attention": attention, "aux_loss": aux_loss, "metrics": metrics}


def attention_maps(params: Params, x: jax.Array, cfg: TransformerConfig) -> list[jax.Array | None]:
    """Per layer, the (B, H, L, L) token-mixing weights on x (None for mixers without any)."""
    return apply(params, x, cfg)[1]["attention"]


def last_layer_inputs(params: Params, x: jax.Array, cfg: TransformerConfig) -> jax.Array:
    """(B, L, E): LN(h), the input of the last block's mixer of a pre-norm stack (the features a
    student replacing the last layer reads).

    The first depth - 1 blocks run as a token-output stack whose final norm is the last block's
    norm1 and whose head is the identity, so the numbers come from ``apply`` itself.
    """
    if cfg.norm != "pre" or cfg.depth < 2:
        raise ValueError("last_layer_inputs needs a pre-norm stack of depth >= 2")
    prefix_cfg = replace(
        cfg, depth=cfg.depth - 1, mixer=cfg.mixers[:-1], output="token", num_outputs=cfg.width
    )
    eye = jnp.eye(cfg.width, dtype=params["head"]["w"].dtype)
    prefix = {
        **params,
        "layers": params["layers"][:-1],
        "final_norm": params["layers"][-1]["norm1"],
        "head": {"w": eye, "b": jnp.zeros(cfg.width, eye.dtype)},
    }
    return apply(prefix, x, prefix_cfg)[0]


def project(params: Params, cfg: TransformerConfig) -> Params:
    """Put every projected-simplex W_1 back on the simplex: the Trainer's ``project`` step."""
    lcfg = cfg.layer_config
    layers = [
        {**layer, "mixer": _PROJECTIONS[name](layer["mixer"], lcfg)}
        if name in _PROJECTIONS
        else layer
        for layer, name in zip(params["layers"], cfg.mixers, strict=True)
    ]
    return {**params, "layers": layers}


@dataclass(frozen=True)
class Predictor:
    """``(params, x, key) -> apply(params, x, cfg, ...)``: with a key (training) layers run with
    ``train=True``, without one (evaluation) deterministic. Equal when the configs are."""

    cfg: TransformerConfig

    def __call__(
        self, params: Params, x: jax.Array, key: jax.Array | None
    ) -> tuple[jax.Array, Aux]:
        return apply(params, x, self.cfg, key=key, train=key is not None)


def objective(
    cfg: TransformerConfig,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    accuracy: bool | None = None,
) -> Objective:
    """The Trainer objective on batches (x, y): sum of ``loss(out, y)`` (per-sample, (B,)), with
    the layers' aux_loss; accuracy (argmax over outputs) defaults to classification/token.
    Equal settings give equal objectives (``Predictor``)."""
    if accuracy is None:
        accuracy = cfg.output != "regression"
    return SupervisedObjective(Predictor(cfg), loss, accuracy=accuracy)
