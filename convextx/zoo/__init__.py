"""The model zoo: every model the benchmarks compare, behind one protocol.

::

    import convextx as cx
    task = cx.tasks.load("digits")
    model = cx.zoo.make("simplex-adam", beta=10.0, steps=1000).fit(task, budget_seconds=60)
    model.score(task, "test"), model.report()["objective"], model.report()["certified_optimum"]

Entries (``names()``): "convex-fista", "convex-cvxpy", "convex-gated", "convex-linear" (certified convex solves),
"simplex-adam", "simplex-sgd" (the same architecture by gradient, scored on the same objective),
"linear-adam" (linear-attention heads by Adam, reporting their certified excess over the
"convex-linear" program: ``details["certified_excess"]``),
"softmax-transformer", "gss", "moe" (transformer stacks), "repair-merged" (REPAIR-merged MLPs).
The protocol is ``convextx.zoo.base.Model``. Reports carry histories in measured wall time; the
trained models also record the test metric (``history["test_metric"]``) and a ``record``
setting's entries at every logged step, and fit from several seeds with ``restarts`` (keeping the
lowest train objective). Certified optima are shared through one cache
(``convextx.zoo.certificates``), so a convex and a simplex fit on one task solve once;
``certificates.check_certified`` checks a nonconvex run against the certified bound.
"""

from convextx.zoo import certificates
from convextx.zoo.base import Model
from convextx.zoo.convex import ConvexModel
from convextx.zoo.linear import LinearAttentionModel
from convextx.zoo.merged import MergedMLPModel
from convextx.zoo.registry import make, names, settings
from convextx.zoo.simplex import SimplexModel
from convextx.zoo.transformer import TransformerModel

__all__ = [
    "ConvexModel",
    "LinearAttentionModel",
    "MergedMLPModel",
    "Model",
    "SimplexModel",
    "TransformerModel",
    "certificates",
    "make",
    "names",
    "settings",
]
