"""The head-sum attention models of the paper's eq. 8, 11, 13 and 30, with their exact penalties.

``heads`` are dict pytrees (the format the convex core recovers and scores); X: (N, n, d)::

    "scalar"    w1 (h, n) simplex rows, w2 (h, d), a (h,)
                f(X_i) = sum_j (w1_j^T X_i w2_j) a_j                        (N,)
    "vector"    w1 (h, n), w2 (h, d), a (h, c)
                f(X_i) = sum_j (w1_j^T X_i w2_j) a_j                        (N, c)
    "gated"     as "vector" plus fixed gates u1 (h, n), u2 (h, d)
                f(X_i) = sum_j D_ij (w1_j^T X_i w2_j) a_j,
                D_ij = 1{u1_j^T X_i u2_j >= 0}                              (N, c)
    "sequence"  W1 (h, n, n) row-stochastic, W2 (h, d, c), a (h,)
                f(X_i) = sum_j a_j W1_j X_i W2_j                            (N, n, c)

Penalties (weight decay, eq. 8, 11, 13, 30):

    scalar          beta/2 sum_j (|w2_j|_2^2 + a_j^2)
    vector, gated   beta/2 sum_j (|w2_j|_2^2 + |a_j|_1^2)                  (gates: not penalized)
    sequence        beta/2 sum_j (|W2_j|_1^2 + a_j^2),  |W2|_1 = sum_{q,l} |W2[q, l]|  (ENTRYWISE)

The entrywise l1 norm on W2 is the choice whose dual norm (entrywise l-infinity) appears in the
dual constraint of appendix A.7, i.e. the one under which the convex program P4 is exact (the paper leaves the norm to be
derived; the convex core verifies it by recovery).

For training by Adam/SGD (``baselines.train.Trainer``) the simplex-constrained w1 / W1 get one of
two parameterizations: "softmax" (free logits ``w1_logits`` / ``W1_logits``, rows = softmax, zero at
init = uniform) or "projection" (``w1`` / ``W1`` stored on the simplex, ``project`` after every
step). Gates are sampled once (``sample_gates``) and held outside the trainable params.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from baselines.objective import Objective, SupervisedObjective
from baselines.simplex import PARAMETERIZATIONS, project_rows
from solvers import checks

Heads = dict[str, jax.Array]


def _head_scores(w1: jax.Array, X: jax.Array, w2: jax.Array) -> jax.Array:
    """(N, h): w1_j^T X_i w2_j."""
    return jnp.einsum("hn,ind,hd->ih", w1, X, w2)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One model of the module table: its entries and their shapes, its map and its penalty.

    name: the kind.  simplex: the simplex entry ("w1" or "W1").  entries: every entry of its
    heads.  outputs: whether it has c outputs (all but "scalar").  gated: fixed gates u1, u2.
    """

    name: str
    simplex: str = "w1"
    entries: tuple[str, ...] = ("w1", "w2", "a")
    outputs: bool = True
    gated: bool = False

    def shapes(self, h: int, n: int, d: int, c: int | None) -> dict[str, tuple[int, ...]]:
        """The entries' shapes for h heads, n tokens, d features and c outputs."""
        a = (h, c) if self.outputs else (h,)
        gates = {"u1": (h, n), "u2": (h, d)} if self.gated else {}
        return {"w1": (h, n), "w2": (h, d), "a": a, **gates}

    def forward(self, heads: Heads, X: jax.Array) -> jax.Array:
        scores = _head_scores(heads["w1"], X, heads["w2"])
        if self.gated:
            scores = scores * (_head_scores(heads["u1"], X, heads["u2"]) >= 0)
        return scores @ heads["a"]

    def penalty(self, heads: Heads) -> jax.Array:
        """The sum of squared norms the module table halves and scales by beta."""
        a = heads["a"]
        a_term = jnp.sum(jnp.sum(jnp.abs(a), axis=1) ** 2) if self.outputs else jnp.sum(a**2)
        return jnp.sum(heads["w2"] ** 2) + a_term


@dataclasses.dataclass(frozen=True)
class SequenceArchitecture(Architecture):
    """The per-token model: row-stochastic W1 (h, n, n), W2 (h, d, c), a (h,)."""

    simplex: str = "W1"
    entries: tuple[str, ...] = ("W1", "W2", "a")

    def shapes(self, h: int, n: int, d: int, c: int | None) -> dict[str, tuple[int, ...]]:
        return {"W1": (h, n, n), "W2": (h, d, c), "a": (h,)}

    def forward(self, heads: Heads, X: jax.Array) -> jax.Array:
        return jnp.einsum("hrk,ikd,hdc,h->irc", heads["W1"], X, heads["W2"], heads["a"])

    def penalty(self, heads: Heads) -> jax.Array:
        w2 = jnp.sum(jnp.sum(jnp.abs(heads["W2"]), axis=(1, 2)) ** 2)
        return w2 + jnp.sum(heads["a"] ** 2)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("scalar", outputs=False),
        Architecture("vector"),
        Architecture("gated", entries=("w1", "w2", "a", "u1", "u2"), gated=True),
        SequenceArchitecture("sequence"),
    )
}
KINDS = tuple(ARCHITECTURES)


def architecture(kind: str) -> Architecture:
    """The architecture of ``kind`` (ValueError listing the kinds otherwise)."""
    return ARCHITECTURES[checks.choice("kind", kind, ARCHITECTURES)]


def _check_gates(kind: str, gates: Heads | None) -> None:
    if architecture(kind).gated != (gates is not None):
        raise ValueError(f"gates are needed for kind 'gated' and only for it (kind={kind!r})")


def check_heads(kind: str, heads: Heads, X: jax.Array) -> None:
    """ValueError unless ``heads`` has the entries and shapes of ``kind`` for X (N, n, d)."""
    arch = architecture(kind)
    if X.ndim != 3:
        raise ValueError(f"X must be (N, n, d), got shape {X.shape}")
    missing = [name for name in arch.entries if name not in heads]
    if missing:
        raise ValueError(f"heads of kind {kind!r} need {missing}, got keys {sorted(heads)}")
    a = heads["a"]
    if a.ndim != len(arch.shapes(1, 1, 1, 1)["a"]):
        raise ValueError(f"heads['a'] of kind {kind!r} has the wrong ndim: shape {a.shape}")
    _, n, d = X.shape
    c = heads["W2"].shape[-1] if "W2" in heads else a.shape[-1] if a.ndim == 2 else None
    for name, shape in arch.shapes(a.shape[0], n, d, c).items():
        if name != "a" and heads[name].shape != shape:
            raise ValueError(f"heads[{name!r}] must have shape {shape}, got {heads[name].shape}")


def forward(kind: str, heads: Heads, X: jax.Array) -> jax.Array:
    """f(X_i) for every sample (module table): (N,), (N, c) or (N, n, c)."""
    check_heads(kind, heads, X)
    return architecture(kind).forward(heads, X)


def penalty(kind: str, heads: Heads, beta: float) -> jax.Array:
    """The weight decay of ``kind`` (module table). Reads only w2 / W2 and a, so it takes heads or
    trainable params alike. beta > 0."""
    arch = architecture(kind)
    if isinstance(beta, numbers.Real):  # a traced (jax) beta is the caller's to check
        checks.positive("beta", beta)
    return beta / 2 * arch.penalty(heads)


def sample_gates(key: jax.Array, h: int, n: int, d: int) -> Heads:
    """Fixed gates of eq. 13: {"u1": (h, n), "u2": (h, d)}, standard normal."""
    k1, k2 = jax.random.split(key)
    return {"u1": jax.random.normal(k1, (h, n)), "u2": jax.random.normal(k2, (h, d))}


def init_params(
    key: jax.Array,
    kind: str,
    h: int,
    n: int,
    d: int,
    c: int | None = None,
    parameterization: str = "softmax",
) -> dict[str, jax.Array]:
    """Trainable params of ``h`` heads: uniform simplex rows (zero logits or stored 1/n),
    w2 / W2 ~ N(0, 1/d), a ~ N(0, 1/h). ``c`` is required for vector / gated / sequence."""
    arch = architecture(kind)
    checks.choice("parameterization", parameterization, PARAMETERIZATIONS)
    h, n, d = (checks.integer(name, v, 1) for name, v in (("h", h), ("n", n), ("d", d)))
    if not arch.outputs and c is not None:
        raise ValueError(f"c must be None for kind {kind!r} (one output)")
    if arch.outputs:
        if c is None:
            raise ValueError(f"kind {kind!r} needs c, a positive int number of outputs")
        c = checks.integer("c", c, 1)
    shapes = arch.shapes(h, n, d, c)
    w2 = "W2" if "W2" in shapes else "w2"
    k_w2, k_a = jax.random.split(key)
    params = {
        w2: jax.random.normal(k_w2, shapes[w2]) / math.sqrt(d),
        "a": jax.random.normal(k_a, shapes["a"]) / math.sqrt(h),
    }
    name, simplex_shape = arch.simplex, shapes[arch.simplex]
    dtype = params["a"].dtype
    if parameterization == "softmax":
        params[name + "_logits"] = jnp.zeros(simplex_shape, dtype)
    else:
        params[name] = jnp.full(simplex_shape, 1 / n, dtype)
    return params


def attention_maps(params: dict[str, jax.Array]) -> jax.Array:
    """Each head's simplex weights over tokens: w1 (h, n), or W1 (h, n, n) for "sequence";
    from heads or trainable params (softmax of the logits)."""
    for name in ("w1", "W1"):
        if name in params:
            return params[name]
        if name + "_logits" in params:
            return jax.nn.softmax(params[name + "_logits"], axis=-1)
    raise ValueError(f"params hold no w1 / W1 (or logits), got keys {sorted(params)}")


def to_heads(params: dict[str, jax.Array], kind: str, gates: Heads | None = None) -> Heads:
    """The heads (module table) of trainable params; ``gates`` ({"u1", "u2"}) for kind "gated"."""
    _check_gates(kind, gates)
    heads = {k: v for k, v in params.items() if not k.endswith("_logits")}
    heads[architecture(kind).simplex] = attention_maps(params)
    return heads | (gates or {})


def project(params: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Euclidean projection of the stored w1 / W1 rows onto the simplex (Duchi et al. 2008): the
    Trainer's ``project`` step for the "projection" parameterization (logits pass unchanged)."""
    return {k: project_rows(v) if k in ("w1", "W1") else v for k, v in params.items()}


@dataclasses.dataclass(frozen=True)
class WeightDecay:
    """``params -> penalty(kind, params, beta)``: the Trainer penalty of ``kind``, equal to every
    other of equal (kind, beta), so trainers built twice share their compiled steps."""

    kind: str
    beta: float

    def __post_init__(self) -> None:
        architecture(self.kind)
        object.__setattr__(self, "beta", checks.positive("beta", self.beta))

    def __call__(self, params: dict[str, jax.Array]) -> jax.Array:
        return penalty(self.kind, params, self.beta)


@dataclasses.dataclass(frozen=True, eq=False)
class Predictor:
    """``(params, X, key) -> (f(X) of the heads of trainable params, {})`` for ``kind``, with
    fixed ``gates`` for "gated". Equal (and hashed) by kind and the gates' values, so objectives
    built twice from equal settings share their compiled steps."""

    kind: str
    gates: Heads | None = None

    def __post_init__(self) -> None:
        _check_gates(self.kind, self.gates)

    @cached_property
    def _key(self) -> tuple:
        gates = {k: np.asarray(v) for k, v in (self.gates or {}).items()}
        return self.kind, tuple(
            (k, v.dtype.str, v.shape, v.tobytes()) for k, v in sorted(gates.items())
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Predictor) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __call__(self, params: Any, X: jax.Array, key: jax.Array | None) -> tuple[jax.Array, dict]:
        return forward(self.kind, to_heads(params, self.kind, self.gates), X), {}


def objective(
    kind: str,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    gates: Heads | None = None,
    accuracy: bool = False,
) -> Objective:
    """The Trainer objective of trainable params on batches (X, y): sum_i loss(f(X_i), y_i), with
    ``loss(pred, y)`` returning per-sample losses. Pair it with ``penalty=WeightDecay(kind,
    beta)`` (and ``project`` for "projection"). Equal settings give equal objectives."""
    return SupervisedObjective(Predictor(kind, gates), loss, accuracy=accuracy)
