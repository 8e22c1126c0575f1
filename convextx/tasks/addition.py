"""Multi-digit addition, trained on short operands and tested on longer ones: a length
generalization probe (after Anil et al. 2022, arXiv 2207.04901, and Zhou et al. 2022,
arXiv 2211.09066, who study it for language models; here it is a fixed-size classification task
every zoo model can read).

Encoding. Two numbers a, b of D digits (base ``base``, leading zeros allowed, least significant
digit first) are written as D digit-pair tokens, one per position k: ``base * a_k + b_k``. One
position q in [0, D] is *marked*: its token is shifted by base^2, and the label is digit q of
a + b (q = D asks for the carry out, 0 or 1). Every sample is stored at the fixed length
D_test + 1: positions D..D_test hold the pad token (``pad_id``, or ``marked_pad_id`` when q = D).
So a sample of any length uses the same token ids, the digit pair of position k always sits at
position k, and train and test lengths differ only in how many positions hold digits: the
label at q needs the marked pair and the carry out of the positions below it.
"""

from __future__ import annotations

import numpy as np

from convextx.tasks import _checks
from convextx.tasks.base import Task
from convextx.tasks.embeddings import token_task
from solvers import checks

MAX_BASE = 64


def _split(array: np.ndarray, N_train: int) -> tuple[np.ndarray, np.ndarray]:
    return array[:N_train], array[N_train:]


def sum_digits(a: np.ndarray, b: np.ndarray, base: int) -> np.ndarray:
    """Digits of a + b: (N, D + 1) for digit arrays a, b: (N, D), least significant first (the
    schoolbook carry, column by column)."""
    N, D = a.shape
    out = np.empty((N, D + 1), dtype=np.int64)
    carry = np.zeros(N, dtype=np.int64)
    for k in range(D):
        total = a[:, k] + b[:, k] + carry
        out[:, k], carry = total % base, total // base
    out[:, D] = carry
    return out


def _samples(
    rng: np.random.Generator,
    N_train: int,
    N_test: int,
    D_min: int,
    D_train: int,
    D_test: int,
    base: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens (N, D_test + 1), labels (N,), lengths (N,), queries (N,)) of ``addition``'s
    samples, train first (the encoding of its docstring); lengths and queries read-only."""
    N, L = N_train + N_test, D_test + 1
    lengths = np.concatenate(
        [
            rng.integers(D_min, D_train + 1, size=N_train),
            rng.integers(D_train + 1, D_test + 1, size=N_test),
        ]
    )
    queries = rng.integers(0, lengths + 1)  # q in [0, D]
    for array in (lengths, queries):
        array.flags.writeable = False  # metadata views of a frozen task
    digits = np.arange(D_test) < lengths[:, None]  # (N, D_test): positions holding digits
    a = rng.integers(base, size=(N, D_test)) * digits
    b = rng.integers(base, size=(N, D_test)) * digits
    rows = np.arange(N)
    labels = sum_digits(a, b, base)[rows, queries]
    pad, marked_offset = 2 * base**2, base**2
    tokens = np.full((N, L), pad, dtype=np.int64)
    tokens[:, :D_test] = np.where(digits, base * a + b, pad)
    tokens[rows, queries] += np.where(queries < lengths, marked_offset, 1)  # pad + 1: marked pad
    return tokens, labels, lengths, queries


def addition(
    *,
    N_train: int = 512,
    N_test: int = 256,
    D_min: int = 1,
    D_train: int = 4,
    D_test: int = 8,
    base: int = 10,
    seed: int = 0,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
) -> Task:
    """Classification: digit q of a + b at the marked position q (module docstring).

    D (digits per operand) is uniform in [D_min, D_train] for the train split and in
    (D_train, D_test] for the test split, so the splits are disjoint by length and the test split
    measures length generalization; the digits are i.i.d. uniform in [0, base) and q is uniform
    in [0, D].

    Tokens (N, D_test + 1) with ids: digit pairs ``base * a_k + b_k`` in [0, base^2), marked
    pairs in [base^2, 2 base^2), pad 2 base^2, marked pad 2 base^2 + 1 (vocab_size
    2 base^2 + 2). Label: digit q of a + b, in [0, base) (num_classes = base).

    metadata: ``config``, ``embedding``, ``base``, ``pad_id``, ``marked_pad_id``,
    ``marked_offset`` (base^2), ``lengths_train`` / ``lengths_test`` (N,) D of each sample and
    ``queries_train`` / ``queries_test`` (N,) its q.
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    N_train, N_test = checks.integer("N_train", N_train, 1), checks.integer("N_test", N_test, 1)
    D_min = checks.integer("D_min", D_min, 1)
    D_train = checks.integer("D_train", D_train, 1)
    D_test = checks.integer("D_test", D_test, 1)
    base = checks.integer("base", base, 2, MAX_BASE)
    if not D_min <= D_train < D_test:
        raise ValueError(
            f"need D_min <= D_train < D_test, got D_min={D_min}, D_train={D_train}, D_test={D_test}"
        )
    data_rng, embed_rng = _checks.generators(seed, 2)
    tokens, labels, lengths, queries = _samples(
        data_rng, N_train, N_test, D_min, D_train, D_test, base
    )
    pad, marked_offset = 2 * base**2, base**2
    lengths_train, lengths_test = _split(lengths, N_train)
    queries_train, queries_test = _split(queries, N_train)
    return token_task(
        "addition",
        "classification",
        _split(tokens, N_train),
        _split(labels, N_train),
        vocab_size=2 * base**2 + 2,
        num_classes=base,
        embedding=embedding,
        embedding_dim=embedding_dim,
        rng=embed_rng,
        metadata={
            "config": config,
            "base": base,
            "pad_id": pad,
            "marked_pad_id": pad + 1,
            "marked_offset": marked_offset,
            "lengths_train": lengths_train,
            "lengths_test": lengths_test,
            "queries_train": queries_train,
            "queries_test": queries_test,
        },
    )
