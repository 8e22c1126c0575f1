"""Nonconvex baselines and their training: softmax transformer, the convex-attention architecture
trained by SGD/Adam (simplex mixer, head-sum models of eq. 8/11/13/30), GSS, MoE, REPAIR.

A flat re-export of the public names; the modules (``baselines.heads``, ``baselines.transformer``,
...) hold the code and the full docs.

Arguments are checked by ``solvers.checks`` (numpy only): the one dependency of ``baselines`` on
``solvers``, so that every package raises the same errors (TypeError for the wrong kind of value,
ValueError for one out of range, each naming the argument). Nothing else of ``solvers`` is used.
"""

from baselines.heads import KINDS as HEAD_KINDS
from baselines.heads import WeightDecay as HeadsWeightDecay
from baselines.heads import attention_maps as heads_attention_maps
from baselines.heads import forward as heads_forward
from baselines.heads import init_params as heads_init_params
from baselines.heads import objective as heads_objective
from baselines.heads import penalty as heads_penalty
from baselines.heads import project as heads_project
from baselines.heads import sample_gates, to_heads
from baselines.linear_attention import forward as linear_attention_forward
from baselines.optim import OPTIMIZERS, SCHEDULES, learning_rate_schedule, make_optimizer
from baselines.registry import (
    Layer,
    LayerConfig,
    ffn_names,
    get_ffn,
    get_mixer,
    mixer_names,
    register_ffn,
    register_mixer,
)
from baselines.simplex import mixing_matrices, project_rows
from baselines.train import (
    SupervisedObjective,
    Trainer,
    TrainResult,
    TrainState,
    log_steps,
)
from baselines.transformer import TransformerConfig, attention_maps
from baselines.transformer import apply as transformer_apply
from baselines.transformer import init as transformer_init
from baselines.transformer import objective as transformer_objective
from baselines.transformer import project as transformer_project

__all__ = [
    "HEAD_KINDS",
    "OPTIMIZERS",
    "SCHEDULES",
    "HeadsWeightDecay",
    "Layer",
    "LayerConfig",
    "SupervisedObjective",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TransformerConfig",
    "attention_maps",
    "ffn_names",
    "get_ffn",
    "get_mixer",
    "heads_attention_maps",
    "heads_forward",
    "heads_init_params",
    "heads_objective",
    "heads_penalty",
    "heads_project",
    "learning_rate_schedule",
    "linear_attention_forward",
    "log_steps",
    "make_optimizer",
    "mixer_names",
    "mixing_matrices",
    "project_rows",
    "register_ffn",
    "register_mixer",
    "sample_gates",
    "to_heads",
    "transformer_apply",
    "transformer_init",
    "transformer_objective",
    "transformer_project",
]
