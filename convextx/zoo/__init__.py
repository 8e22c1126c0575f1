"""The model zoo: every model the benchmarks compare, behind one protocol.

::

    import convextx as cx
    task = cx.tasks.load("digits")
    model = cx.zoo.make("simplex-adam", beta=10.0, steps=1000).fit(task, budget_seconds=60)
    model.score(task, "test"), model.report()["objective"], model.report()["certified_optimum"]

Entries (``names()``): "convex-fista", "convex-cvxpy", "convex-gated" (certified convex solves),
"simplex-adam", "simplex-sgd" (the same architecture by gradient, scored on the same objective),
"softmax-transformer", "gss", "moe" (transformer stacks), "repair-merged" (REPAIR-merged MLPs).
The protocol is ``convextx.zoo.base.Model``.
"""

from convextx.zoo.base import Model
from convextx.zoo.convex import ConvexModel
from convextx.zoo.merged import MergedMLPModel
from convextx.zoo.registry import make, names, settings
from convextx.zoo.simplex import SimplexModel
from convextx.zoo.transformer import TransformerModel

__all__ = [
    "ConvexModel",
    "MergedMLPModel",
    "Model",
    "SimplexModel",
    "TransformerModel",
    "make",
    "names",
    "settings",
]
