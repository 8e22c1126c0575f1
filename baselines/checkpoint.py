"""Checkpoints of a training run: one ``.npz`` holding the state's arrays, the step, the seconds
spent in optimizer steps, the history and the settings a resumed run must share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CHECKPOINT_FILE = "checkpoint.npz"
_HISTORY_PREFIX = "history/"


def save(path: Path, state: Any, step: int, seconds: float, history: dict, meta: dict) -> None:
    """Write the arrays of the pytree ``state`` with step, seconds, history and ``meta`` (scalar
    settings) to ``path``, atomically (a temporary file renamed over it)."""
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(state))}
    arrays |= {_HISTORY_PREFIX + k: np.asarray(v) for k, v in history.items()}
    arrays |= {k: np.asarray(v) for k, v in meta.items()}
    arrays |= {"step": np.asarray(step), "seconds": np.asarray(seconds)}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load(path: Path, template: Any, meta: dict) -> tuple[Any, int, float, dict]:
    """(state shaped like ``template``, step, seconds, history) from ``path``; ValueError if its
    ``meta`` settings or its arrays' shapes and dtypes differ from these."""
    leaves, treedef = jax.tree.flatten(template)
    with np.load(path, allow_pickle=False) as f:
        for k, v in meta.items():
            if f[k].item() != v:
                raise ValueError(f"checkpoint {path} was written with {k}={f[k].item()}, not {v}")
        if sum(k.startswith("leaf_") for k in f.files) != len(leaves):
            raise ValueError(f"checkpoint {path} does not match these params / optimizer")
        loaded = [f[f"leaf_{i:05d}"] for i in range(len(leaves))]
        if any(
            a.shape != np.shape(b) or a.dtype != jnp.result_type(b)
            for a, b in zip(loaded, leaves, strict=True)
        ):
            raise ValueError(f"checkpoint {path} does not match these params / optimizer")
        history = {
            k.removeprefix(_HISTORY_PREFIX): f[k].tolist()
            for k in f.files
            if k.startswith(_HISTORY_PREFIX)
        }
        state = jax.tree.unflatten(treedef, [jnp.asarray(a) for a in loaded])
        return state, int(f["step"]), float(f["seconds"]), history
