"""Benchmark problems: planted data for P1-P3. Their nonconvex twins come from
``convextx.recovery.nonconvex_setup``; dense matrices (cvxpy) and working-set restrictions from
the programs' families."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import solvers
from convextx.programs import (
    ConvexProgram,
    convex_program,
)

KINDS = ("scalar", "vector", "gated")
PROGRAM_NAMES = {"scalar": "P1", "vector": "P2", "gated": "P3"}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One benchmark problem: kind, N samples, n tokens, d features, P gates (gated), c outputs
    (vector), beta as a fraction of beta_max, data seed. Picklable, so a subprocess rebuilds it."""

    kind: str
    N: int
    n: int
    d: int
    P: int = 1
    c: int = 1
    beta_ratio: float = 0.1
    seed: int = 0

    @property
    def variables(self) -> int:
        """Number of scalar variables of the convex program."""
        return {
            "scalar": self.n * self.d,
            "vector": self.c * self.n * self.d,
            "gated": self.P * self.c * self.n * self.d,
        }[self.kind]

    @property
    def label(self) -> str:
        extra = {"scalar": "", "vector": f" c={self.c}", "gated": f" P={self.P}"}[self.kind]
        return f"{PROGRAM_NAMES[self.kind]} N={self.N} n={self.n} d={self.d}{extra}"


def make_data(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """X (N, n, d) standard normal; y from a planted sparse gated-ReLU attention teacher
    (3 heads on 2 tokens) plus 10% noise: (N,) for scalar/gated, (N, c) for vector."""
    rng = np.random.default_rng(spec.seed)
    X = rng.standard_normal((spec.N, spec.n, spec.d))
    tokens = rng.choice(spec.n, size=min(2, spec.n), replace=False)
    outputs = spec.c if spec.kind == "vector" else 1
    y = np.zeros((spec.N, outputs))
    for _ in range(3):
        w1 = np.zeros(spec.n)
        w1[tokens] = rng.dirichlet(np.ones(tokens.size))
        w2 = rng.standard_normal(spec.d) / math.sqrt(spec.d)
        act = np.einsum("k,ikq,q->i", w1, X, w2)
        y += np.maximum(act, 0.0)[:, None] * rng.standard_normal(outputs)
    y = y / max(y.std(), 1e-12)
    y = y + 0.1 * rng.standard_normal(y.shape)
    return X, (y[:, 0] if spec.kind != "vector" else y)


def _gates(spec: Spec) -> int | None:
    return spec.P if spec.kind == "gated" else None


def build(spec: Spec, dtype: str = "float64") -> tuple[ConvexProgram, np.ndarray, np.ndarray]:
    """(program at beta = beta_ratio * beta_max, X, y). Gates with duplicate patterns on X are
    dropped by convex_program, so P can shrink slightly (program.shape[0])."""
    X, y = make_data(spec)
    program = convex_program(
        X, y, kind=spec.kind, beta=1.0, gates=_gates(spec), dtype=dtype, seed=spec.seed
    )
    return program.with_beta(spec.beta_ratio * solvers.beta_max(program.problem)), X, y
