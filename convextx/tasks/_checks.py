"""Seeded random generators of the task generators (argument checks: ``solvers.checks``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers import checks


def generators(seed: Any, count: int) -> list[np.random.Generator]:
    """``count`` independent numpy Generators from one int ``seed`` in [0, 2**32 - 1]
    (``checks.seed``), spawned by ``np.random.SeedSequence``."""
    seed = checks.seed("seed", seed)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


def plain_config(arguments: dict[str, Any]) -> dict[str, Any]:
    """A generator's arguments as a JSON-ready config: numpy scalars become Python ones
    (``np.int64(7)`` -> ``7``), so stored metadata never depends on the caller's scalar type."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in arguments.items()}
