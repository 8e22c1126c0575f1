"""Benchmark problems: planted data for P1-P3 and their nonconvex twins (``baselines.heads``)
scored by the same objective. Dense matrices (cvxpy) and working-set restrictions come from
the programs' families."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import solvers
from baselines import heads as heads_module
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


def nonconvex_setup(program: ConvexProgram, X: np.ndarray, y: np.ndarray):
    """(objective, penalty, init(key), data) of the same-architecture nonconvex model with
    enough heads to reach the convex optimum: one per group (P3: one per gate, token, output)."""
    kind, shape = program.kind, program.shape
    beta = float(program.problem.penalty.beta)
    n, d = program.n, program.d
    gates = None
    if kind == "scalar":
        h, c = n, None
    elif kind == "vector":
        h, c = shape[0] * n, shape[0]
    else:
        per_gate = shape[1] * n
        h, c = shape[0] * per_gate, shape[1]
        gates = {
            "u1": jnp.repeat(jnp.asarray(program.gates.u1), per_gate, axis=0),
            "u2": jnp.repeat(jnp.asarray(program.gates.u2), per_gate, axis=0),
        }
    hk = "scalar" if kind == "scalar" else ("gated" if kind == "gated" else "vector")

    def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
        if program.scalar_output and pred.ndim == 2:
            pred = pred[:, 0]
        diff = (pred - target).reshape(pred.shape[0], -1)
        return 0.5 * jnp.sum(diff**2, axis=1)

    objective = heads_module.objective(hk, loss, gates=gates)
    penalty = functools.partial(heads_module.penalty, hk, beta=beta)

    def init(key: jax.Array):
        return heads_module.init_params(key, hk, h, n, d, c)

    data = (jnp.asarray(X), jnp.asarray(y))
    return objective, penalty, init, data
