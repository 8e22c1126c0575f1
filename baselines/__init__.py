"""Nonconvex baselines and their training: softmax transformer, the convex-attention architecture
trained by SGD/Adam (simplex mixer, head-sum models of eq. 8/11/13/30), GSS, MoE, REPAIR.

A flat re-export of the public names; the modules (``baselines.heads``, ``baselines.transformer``,
...) hold the code and the full docs.

Arguments are checked by ``solvers.checks`` (numpy only): the one dependency of ``baselines`` on
``solvers``, so that every package raises the same errors (TypeError for the wrong kind of value,
ValueError for one out of range, each naming the argument). Nothing else of ``solvers`` is used.

Every name loads on first use (PEP 562), so that importing one model (``baselines.heads``, as
the convex families do) does not import optax, the trainer and the transformer.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> (the module defining it, its name there)
_LAZY = {
    "HEAD_KINDS": ("baselines.heads", "KINDS"),
    "HeadsWeightDecay": ("baselines.heads", "WeightDecay"),
    "heads_attention_maps": ("baselines.heads", "attention_maps"),
    "heads_forward": ("baselines.heads", "forward"),
    "heads_init_params": ("baselines.heads", "init_params"),
    "heads_objective": ("baselines.heads", "objective"),
    "heads_penalty": ("baselines.heads", "penalty"),
    "heads_project": ("baselines.heads", "project"),
    "sample_gates": ("baselines.heads", "sample_gates"),
    "to_heads": ("baselines.heads", "to_heads"),
    "linear_attention_forward": ("baselines.linear_attention", "forward"),
    "OPTIMIZERS": ("baselines.optim", "OPTIMIZERS"),
    "SCHEDULES": ("baselines.optim", "SCHEDULES"),
    "learning_rate_schedule": ("baselines.optim", "learning_rate_schedule"),
    "make_optimizer": ("baselines.optim", "make_optimizer"),
    "Layer": ("baselines.registry", "Layer"),
    "LayerConfig": ("baselines.registry", "LayerConfig"),
    "ffn_names": ("baselines.registry", "ffn_names"),
    "get_ffn": ("baselines.registry", "get_ffn"),
    "get_mixer": ("baselines.registry", "get_mixer"),
    "mixer_names": ("baselines.registry", "mixer_names"),
    "register_ffn": ("baselines.registry", "register_ffn"),
    "register_mixer": ("baselines.registry", "register_mixer"),
    "mixing_matrices": ("baselines.simplex", "mixing_matrices"),
    "project_rows": ("baselines.simplex", "project_rows"),
    "SupervisedObjective": ("baselines.objective", "SupervisedObjective"),
    "TrainResult": ("baselines.train", "TrainResult"),
    "TrainState": ("baselines.train", "TrainState"),
    "Trainer": ("baselines.train", "Trainer"),
    "log_steps": ("baselines.train", "log_steps"),
    "TransformerConfig": ("baselines.transformer", "TransformerConfig"),
    "attention_maps": ("baselines.transformer", "attention_maps"),
    "transformer_apply": ("baselines.transformer", "apply"),
    "transformer_init": ("baselines.transformer", "init"),
    "transformer_objective": ("baselines.transformer", "objective"),
    "transformer_project": ("baselines.transformer", "project"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'baselines' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = sorted(_LAZY)
