"""Modular arithmetic ``a op b mod p``: the algorithmic data set of the paper's grokking runs.

Every equation is enumerated once: a, b in [0, p) for ``"add"`` (p^2 pairs); b != 0 for ``"div"``
(p (p - 1) pairs), where a / b = a * b^(p-2) mod p, the modular inverse (p must be prime). A random
``train_fraction`` of the pairs is the train split, the rest the test split: no pair is in both.
The paper's setting (its algorithmic experiment) is ``op="div", p=97``; the default p = 23 keeps runs
in CPU seconds.
"""

from __future__ import annotations

import numpy as np

from convextx.tasks import _checks
from convextx.tasks.base import Task
from convextx.tasks.embeddings import token_task
from solvers import checks

OPS = ("add", "div")


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % q for q in range(2, int(p**0.5) + 1))


def modular(
    *,
    p: int = 23,
    op: str = "div",
    train_fraction: float = 0.5,
    seed: int = 0,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
) -> Task:
    """Classification of ``c = a op b mod p`` from the sequence ``<eos> a op b =``.

    Tokens (N, 5), the openai/grok layout without its answer: ``[eos, a, op, b, =]`` with ids
    0..p-1 for the numbers, ``eos = p``, ``op = p + 1``, ``= p + 2`` (vocab_size = p + 3). The
    label c in [0, p) is also the token id of the answer, so a language model predicts it at the
    last position (the full equation is ``tokens + [c, eos]``).

    X (N, 5, d): fixed embedding of those tokens, by default one-hot tokens plus one-hot
    positions (d = p + 8; see ``embeddings.py``). Note that a model linear in X, such as the
    attention-only convex program (P2), scores a and b additively and cannot represent ``a op b``
    exactly; the gated program (P3) and the transformers can.

    metadata: ``config``, ``embedding``, ``token_ids`` (name -> id of the special tokens).
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    p = checks.integer("p", p, 2)
    checks.choice("op", op, OPS)
    train_fraction = checks.real(
        "train_fraction", train_fraction, 0.0, 1.0, low_open=True, high_open=True
    )
    if op == "div" and not _is_prime(p):
        raise ValueError(f"p must be prime for op='div' (b needs an inverse mod p), got {p}")
    data_rng, embed_rng = _checks.generators(seed, 2)

    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "div":
        a, b = a[b != 0], b[b != 0]
        c = a * np.array([pow(int(v), p - 2, p) for v in b]) % p
    else:
        c = (a + b) % p
    total = len(a)
    n_train = round(train_fraction * total)
    if not 0 < n_train < total:
        raise ValueError(
            f"train_fraction={train_fraction} leaves an empty split of the {total} equations"
        )
    eos, op_id, eq = p, p + 1, p + 2
    tokens = np.stack(
        [np.full(total, eos), a, np.full(total, op_id), b, np.full(total, eq)], axis=1
    )
    order = data_rng.permutation(total)
    train, test = order[:n_train], order[n_train:]
    return token_task(
        "modular",
        "classification",
        (tokens[train], tokens[test]),
        (c[train], c[test]),
        vocab_size=p + 3,
        num_classes=p,
        embedding=embedding,
        embedding_dim=embedding_dim,
        rng=embed_rng,
        metadata={"config": config, "token_ids": {"eos": eos, "op": op_id, "=": eq}},
    )
