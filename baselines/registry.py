"""Registries of the layers a transformer block is built from.

A block is ``x + mixer(norm(x))`` then ``x + ffn(norm(x))``. The token mixer (softmax attention,
the simplex mixer of eq. 4, GSS) and the feed-forward layer (dense MLP, mixture of experts) are
chosen by name, so every baseline plugs into one transformer stack and one training loop.

Every layer is a pair of pure functions over a parameter pytree::

    params = layer.init(key, cfg)                                # cfg: LayerConfig
    y, aux = layer.apply(params, x, cfg, key=None, train=False)  # x, y: (B, L, E)

``aux`` is a dict. Keys with a meaning shared across layers:

- ``"attention"``: (B, H, L, L) token-mixing weights, row r = how output token r mixes inputs;
- ``"aux_loss"``: scalar added to the training objective (e.g. MoE load balancing);
- anything else is a metric to report (e.g. ``"dropped_fraction"``).

Layers register themselves at import (``@register_mixer("softmax")``); the lookups import the
built-in modules first, so a name is found no matter which module the caller imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax

Params = Any
Aux = dict[str, Any]
Key = jax.Array | None
"""A PRNG key for the layers that draw (dropout-like router noise), ``None`` for the rest."""
LayerOutput = tuple[jax.Array, Aux]
"""What every ``apply`` returns: ``(y, aux)``, y (B, L, E) for a layer."""


@dataclass(frozen=True)
class LayerConfig:
    """Hyperparameters shared by every mixer and FFN layer.

    width: model width E.  heads: number of heads H (must divide E where a layer splits E).
    max_len: longest sequence the layer must accept (sizes the simplex mixer's (L, L) matrix).
    causal: output token t may depend only on tokens <= t.  hidden_ratio: FFN hidden = ratio * E.
    options: layer-specific settings (e.g. ``num_experts`` for MoE, ``state_size`` for GSS).
    """

    width: int
    heads: int = 1
    max_len: int = 512
    causal: bool = False
    hidden_ratio: int = 4
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)


class Layer(NamedTuple):
    """A layer as two pure functions: ``init(key, cfg) -> params`` and ``apply(...) -> (y, aux)``."""

    init: Callable[[jax.Array, LayerConfig], Params]
    apply: Callable[..., LayerOutput]


MIXERS: dict[str, Layer] = {}
FFNS: dict[str, Layer] = {}

_BUILTIN_MODULES = (
    "baselines.attention",
    "baselines.simplex",
    "baselines.ffn",
    "baselines.gss",
    "baselines.moe",
)


def _register(table: dict[str, Layer], kind: str, name: str) -> Callable[[Layer], Layer]:
    def decorator(layer: Layer) -> Layer:
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered")
        table[name] = layer
        return layer

    return decorator


def register_mixer(name: str) -> Callable[[Layer], Layer]:
    """Decorator registering a token-mixing layer under ``name``."""
    return _register(MIXERS, "mixer", name)


def register_ffn(name: str) -> Callable[[Layer], Layer]:
    """Decorator registering a feed-forward layer under ``name``."""
    return _register(FFNS, "ffn", name)


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real missing dependency inside the module
                raise


def _lookup(table: dict[str, Layer], kind: str, name: str) -> Layer:
    _load_builtins()
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(table)}")
    return table[name]


def get_mixer(name: str) -> Layer:
    """The token mixer registered as ``name``; ValueError listing the valid names otherwise."""
    return _lookup(MIXERS, "mixer", name)


def get_ffn(name: str) -> Layer:
    """The feed-forward layer registered as ``name``; ValueError listing the valid names otherwise."""
    return _lookup(FFNS, "ffn", name)


def mixer_names() -> list[str]:
    _load_builtins()
    return sorted(MIXERS)


def ffn_names() -> list[str]:
    _load_builtins()
    return sorted(FFNS)
