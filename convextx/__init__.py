"""convextx: train transformer attention by convex optimization.

Builds the convex programs of "Convexifying Transformers" (Ergen, Neyshabur, Mehta,
arXiv 2211.11052), solves them to a certified duality gap, recovers the equivalent simplex-
attention networks, and benchmarks them against nonconvex baselines.

    import convextx as cx
    est = cx.ConvexAttention(kind="vector", beta=1e-2).fit(X, y)   # X: (N, n, d)
    est.objective_, est.gap_, est.active_tokens_, est.heads_
    cx.nonconvex_objective(est.heads_, X, y_encoded, beta=1e-2, kind="vector")
"""

from convextx import tasks, working_set, zoo
from convextx.estimator import ConvexAttention
from convextx.gates import Gates
from convextx.objectives import nonconvex_objective, nonconvex_predictions
from convextx.path import BetaPath, path
from convextx.programs import KINDS, LOSSES, ConvexProgram, convex_program
from convextx.recovery import needed_heads, recover_heads

__all__ = [
    "KINDS",
    "LOSSES",
    "BetaPath",
    "ConvexAttention",
    "ConvexProgram",
    "Gates",
    "convex_program",
    "needed_heads",
    "nonconvex_objective",
    "nonconvex_predictions",
    "path",
    "recover_heads",
    "tasks",
    "working_set",
    "zoo",
]
