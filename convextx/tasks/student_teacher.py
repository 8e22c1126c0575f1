"""Student-teacher data: Gaussian token sequences labelled by a random attention teacher.

The synthetic analogue of the paper's student-teacher experiment.
Inputs X_i in R^{n x d} have i.i.d. N(0, 1) entries. Two teachers:

- ``"convex"``: h sparse simplex-attention heads (the paper's eq. 8/11) whose attention
  w1_j = e_{k_j} is one-hot on a token k_j (distinct tokens):  f(X) = sum_j (e_{k_j}^T X w2_j) a_j  in R^c,
  w2_j ~ N(0, I_d / d), a_j ~ N(0, I_c / h). The convex programs (P1)/(P2) contain this teacher:
  it is Z_l = sum_j a_jl e_{k_j} w2_j^T, nonzero on h token rows only.
- ``"softmax"``: one random softmax attention layer with h heads (the paper's eq. 2, d_k = d_v = d),
  mean-pooled over the n output tokens, then a linear readout to R^c:
  f(X) = sum_j mean_rows(softmax(X Q_j K_j^T X^T / sqrt(d)) X V_j) W_O,j, where Q_j, K_j, V_j
  have N(0, 1/d) entries and W_O,j has N(0, 1/(h d)) entries. Outside the convex model class.
"""

from __future__ import annotations

import numpy as np

from convextx.tasks import _checks
from convextx.tasks.base import Task
from solvers import checks

TEACHERS = ("convex", "softmax")
PROBLEMS = ("regression", "classification")


def convex_teacher(X: np.ndarray, tokens: np.ndarray, w2: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Outputs (N, c) of one-hot simplex heads: sum_j (X[:, k_j] . w2_j) a_j.

    X: (N, n, d).  tokens: (h,) the attended token k_j of each head.  w2: (h, d).  a: (h, c).
    """
    return np.einsum("njd,jd,jc->nc", X[:, tokens, :], w2, a)


def softmax_teacher(
    X: np.ndarray, Q: np.ndarray, K: np.ndarray, V: np.ndarray, W_O: np.ndarray
) -> np.ndarray:
    """Outputs (N, c) of mean-pooled multi-head softmax attention with a linear readout.

    X: (N, n, d).  Q, K: (h, d, dk).  V: (h, d, dv).  W_O: (h, dv, c).
    """
    scores = np.einsum("nqd,hde,nkf,hfe->nhqk", X, Q, X, K) / np.sqrt(Q.shape[-1])
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    pooled = np.einsum("nhqk,nkd,hdv->nhv", weights, X, V) / X.shape[1]
    return np.einsum("nhv,hvc->nc", pooled, W_O)


def _draw_teacher(kind: str, n: int, d: int, c: int, heads: int, rng: np.random.Generator) -> dict:
    if kind == "convex":
        tokens = np.sort(rng.choice(n, size=heads, replace=False))
        w2 = rng.normal(scale=d**-0.5, size=(heads, d))
        a = rng.normal(scale=heads**-0.5, size=(heads, c))
        Z = np.zeros((c, n, d))
        np.add.at(Z, (slice(None), tokens), np.einsum("jc,jd->cjd", a, w2))
        return {"kind": kind, "tokens": tokens, "w2": w2, "a": a, "Z": Z}
    Q, K, V = (rng.normal(scale=d**-0.5, size=(heads, d, d)) for _ in range(3))
    W_O = rng.normal(scale=(heads * d) ** -0.5, size=(heads, d, c))
    return {"kind": kind, "Q": Q, "K": K, "V": V, "W_O": W_O}


def _teacher_outputs(teacher: dict, X: np.ndarray) -> np.ndarray:
    if teacher["kind"] == "convex":
        return convex_teacher(X, teacher["tokens"], teacher["w2"], teacher["a"])
    return softmax_teacher(X, teacher["Q"], teacher["K"], teacher["V"], teacher["W_O"])


def student_teacher(
    *,
    N_train: int = 200,
    N_test: int = 200,
    n: int = 8,
    d: int = 8,
    c: int | None = None,
    heads: int = 2,
    teacher: str = "convex",
    problem: str = "regression",
    noise: float = 0.0,
    seed: int = 0,
) -> Task:
    """Gaussian X (N, n, d) labelled by a random ``teacher`` (module docstring).

    problem ``"regression"``: y = f(X) + noise * N(0, 1), shape (N,) when c = 1 (the default),
    else (N, c). ``"classification"``: y = argmax_l (f(X) + noise * N(0, 1))_l, c classes
    (default 2). The convex teacher needs heads <= n (one distinct token per head).

    metadata: ``config``, ``embedding``, ``teacher``: ``kind`` and the teacher's weights
    (convex: ``tokens`` (h,), ``w2`` (h, d), ``a`` (h, c) and the equivalent convex variable
    ``Z`` (c, n, d); softmax: ``Q``, ``K``, ``V`` (h, d, d), ``W_O`` (h, d, c)).
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    N_train, N_test = checks.integer("N_train", N_train, 1), checks.integer("N_test", N_test, 1)
    n, d = checks.integer("n", n, 1), checks.integer("d", d, 1)
    heads = checks.integer("heads", heads, 1)
    checks.choice("teacher", teacher, TEACHERS)
    checks.choice("problem", problem, PROBLEMS)
    noise = checks.real("noise", noise, 0.0)
    minimum_c = 2 if problem == "classification" else 1
    c = checks.integer("c", minimum_c if c is None else c, minimum_c)
    if teacher == "convex" and heads > n:
        raise ValueError(
            f"heads must be <= n for the convex teacher (one distinct token per head), "
            f"got heads={heads}, n={n}"
        )
    data_rng, teacher_rng, noise_rng = _checks.generators(seed, 3)
    X = data_rng.normal(size=(N_train + N_test, n, d))
    weights = _draw_teacher(teacher, n, d, c, heads, teacher_rng)
    outputs = _teacher_outputs(weights, X) + noise * noise_rng.normal(size=(len(X), c))
    if problem == "classification":
        y = outputs.argmax(axis=1)
    else:
        y = outputs[:, 0] if c == 1 else outputs
    return Task(
        name="student_teacher",
        problem=problem,
        X_train=X[:N_train],
        X_test=X[N_train:],
        y_train=y[:N_train],
        y_test=y[N_train:],
        num_classes=c if problem == "classification" else None,
        metadata={
            "config": config,
            "embedding": "none: X has i.i.d. N(0, 1) entries, d = dim of the teacher's input",
            "teacher": weights,
        },
    )
