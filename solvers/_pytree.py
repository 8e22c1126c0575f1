"""Registering frozen dataclasses as pytrees whose construction validates input.

``jax.tree_util.register_dataclass`` rebuilds nodes through ``__init__``, which would rerun
validation on tracers. Here unflattening bypasses ``__init__``: a user's constructor call
validates once, and transformations rebuild the node freely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

import jax

T = TypeVar("T")


def pytree_dataclass(data_fields: Sequence[str]):
    """Class decorator: frozen dataclass, registered as a pytree with ``data_fields`` as leaves."""

    def decorator(cls: type[T]) -> type[T]:
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = tuple(data_fields)
        meta = tuple(n for n in names if n not in data)

        def flatten(obj):
            return tuple(getattr(obj, n) for n in data), tuple(getattr(obj, n) for n in meta)

        def unflatten(meta_values, data_values):
            obj = object.__new__(cls)
            for n, v in zip(meta, meta_values, strict=True):
                object.__setattr__(obj, n, v)
            for n, v in zip(data, data_values, strict=True):
                object.__setattr__(obj, n, v)
            return obj

        jax.tree_util.register_pytree_node(cls, flatten, unflatten)
        return cls

    return decorator
