"""convextx: train transformer attention by convex optimization.

Builds the convex programs of "Convexifying Transformers" (Ergen, Neyshabur, Mehta,
arXiv 2211.11052) and later families, one module each (``convextx.families``), solves them to a
certified duality gap, recovers the equivalent networks, and benchmarks them against
nonconvex baselines.

    import convextx as cx
    est = cx.ConvexAttention(kind="vector", beta=1e-2).fit(X, y)   # X: (N, n, d)
    est.objective_, est.gap_, est.active_tokens_, est.heads_
    cx.nonconvex_objective(est.heads_, X, y_encoded, beta=1e-2, kind="vector")
"""

from importlib.metadata import PackageNotFoundError, version

from convextx import families, tasks, zoo
from convextx.cv import ConvexAttentionCV
from convextx.estimator import ConvexAttention
from convextx.families import Gates
from convextx.families.base import LOSSES
from convextx.objectives import nonconvex_objective, nonconvex_predictions
from convextx.path import BetaPath, path
from convextx.programs import KINDS, ConvexProgram, convex_program
from convextx.recovery import needed_heads, recover_heads

try:
    __version__ = version("convextx")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "KINDS",
    "LOSSES",
    "BetaPath",
    "ConvexAttention",
    "ConvexAttentionCV",
    "ConvexProgram",
    "Gates",
    "__version__",
    "convex_program",
    "families",
    "needed_heads",
    "nonconvex_objective",
    "nonconvex_predictions",
    "path",
    "recover_heads",
    "tasks",
    "zoo",
]
