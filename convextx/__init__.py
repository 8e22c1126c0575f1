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

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("convextx")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

#: public name -> the module defining it, imported on first use (PEP 562), so that
#: ``import convextx`` (and the CLI's ``--help``) does not load JAX, cvxpy and scikit-learn
_LAZY = {
    "KINDS": "convextx.programs",
    "LOSSES": "convextx.families.base",
    "BetaPath": "convextx.path",
    "ConvexAttention": "convextx.estimator",
    "ConvexAttentionCV": "convextx.cv",
    "ConvexProgram": "convextx.programs",
    "Gates": "convextx.families",
    "convex_program": "convextx.programs",
    "needed_heads": "convextx.recovery",
    "nonconvex_objective": "convextx.objectives",
    "nonconvex_predictions": "convextx.objectives",
    "path": "convextx.path",
    "recover_heads": "convextx.recovery",
}
_SUBPACKAGES = ("families", "tasks", "zoo")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"convextx.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module 'convextx' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: ``convextx.path`` stays the function ``path`` when the
    submodule of that name is first imported (e.g. by ``convextx.cv``), which binds the
    submodule to the package's attribute of the same name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "path" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
