"""Convex program families: one module per family, one registry.

=========  ====  =============================================================================
name       prog  model class
=========  ====  =============================================================================
scalar     P1    one output: sum of simplex-attention heads (``families.scalar``)
vector     P2    c outputs: sum of simplex-attention heads (``families.vector``)
gated      P3    simplex attention + gated-ReLU FCN with fixed gates (``families.gated``)
sequence   P4    per-token outputs: sum of row-stochastic token mixers (``families.sequence``)
linear     P5    multi-head linear attention at a query token, nuclear norm (``families.linear``)
=========  ====  =============================================================================

``get(name)`` returns the family object (``families.base.Family``: the protocol every family
implements), ``names()`` the registered names. A new family is one module defining a
``Family`` subclass plus one line in ``FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convextx.families.base import Family, Targets
from convextx.families.gated import Gated, Gates
from convextx.families.linear import Linear
from convextx.families.scalar import Scalar
from convextx.families.sequence import Sequence
from convextx.families.vector import Vector
from solvers import checks

FAMILIES: dict[str, Family] = {
    family.name: family for family in (Scalar(), Vector(), Gated(), Sequence(), Linear())
}


def names() -> tuple[str, ...]:
    """The registered family names, in registry order."""
    return tuple(FAMILIES)


def get(name: str) -> Family:
    """The family called ``name``; ValueError listing the names otherwise."""
    return FAMILIES[checks.choice("kind", name, FAMILIES)]


def option_names() -> tuple[str, ...]:
    """Every option some family's ``prepare`` takes (e.g. gates)."""
    return tuple(dict.fromkeys(k for family in FAMILIES.values() for k in family.options))


def resolve_options(family: Family, given: Mapping[str, Any]) -> dict[str, Any]:
    """``family``'s options from ``given`` (options of any family; those of other families
    must be None), its defaults filling the rest."""
    for option, value in given.items():
        if value is not None and option not in family.options:
            owners = [f.name for f in FAMILIES.values() if option in f.options]
            if not owners:
                raise TypeError(f"unknown option {option!r}; expected one of {option_names()}")
            kinds = " or ".join(repr(k) for k in owners)
            raise ValueError(
                f"{option} are only used by kind {kinds}; got {option} for kind {family.name!r}"
            )
    return {k: given.get(k) if given.get(k) is not None else v for k, v in family.options.items()}


__all__ = [
    "FAMILIES",
    "Family",
    "Gates",
    "Targets",
    "get",
    "names",
    "option_names",
    "resolve_options",
]
