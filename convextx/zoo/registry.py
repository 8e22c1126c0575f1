"""Zoo entries by name: ``make(name, **cfg)`` and ``names()``."""

from __future__ import annotations

import inspect
from typing import Any

from convextx.zoo.base import Model
from convextx.zoo.convex import ConvexModel
from convextx.zoo.linear import LinearAttentionModel
from convextx.zoo.merged import MergedMLPModel
from convextx.zoo.simplex import SimplexModel
from convextx.zoo.transformer import TransformerModel

#: name -> (model class, the settings that define the entry; cfg may override them)
_ENTRIES: dict[str, tuple[type[Model], dict[str, Any]]] = {
    "convex-fista": (ConvexModel, {"solver": "fista"}),
    "convex-cvxpy": (ConvexModel, {"solver": "cvxpy"}),
    "convex-gated": (ConvexModel, {"kind": "gated"}),
    "convex-linear": (ConvexModel, {"kind": "linear"}),
    "linear-adam": (LinearAttentionModel, {"optimizer": "adam"}),
    "simplex-adam": (SimplexModel, {"optimizer": "adam"}),
    "simplex-sgd": (SimplexModel, {"optimizer": "sgd"}),
    "softmax-transformer": (TransformerModel, {"mixer": "softmax", "ffn": "mlp"}),
    "gss": (TransformerModel, {"mixer": "gss", "ffn": None}),
    "moe": (TransformerModel, {"mixer": "softmax", "ffn": "moe"}),
    "repair-merged": (MergedMLPModel, {}),
}


def names() -> list[str]:
    """The names ``make`` accepts, sorted."""
    return sorted(_ENTRIES)


def settings(name: str) -> list[str]:
    """The settings ``make(name, **cfg)`` accepts."""
    if name not in _ENTRIES:
        raise ValueError(f"unknown model {name!r}; expected one of {names()}")
    cls, _ = _ENTRIES[name]
    return [p for p in inspect.signature(cls).parameters if p != "name"]


def make(name: str, **cfg: Any) -> Model:
    """An unfitted model ``name`` with settings ``cfg`` (keyword arguments of its class).

    Unknown ``name``: ValueError listing the valid names. Unknown settings: TypeError naming them
    and listing the valid ones.
    """
    valid = settings(name)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise TypeError(f"unknown settings {unknown} for model {name!r}; valid settings: {valid}")
    cls, preset = _ENTRIES[name]
    return cls(name=name, **(preset | cfg))
