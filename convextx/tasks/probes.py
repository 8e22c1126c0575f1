"""Synthetic probes of long-range retrieval and length generalization (needle, recall, copy, parity).

All are discrete: tokens (N, L) for sequence models and a fixed embedding X (N, L, d) for the
convex models (default one-hot tokens plus one-hot positions; ``embedding="random"`` for Gaussian
features; see ``embeddings.py``). Samples are i.i.d. draws from a numpy Generator seeded by
``seed``, so train and test may share a sample by chance (unlike ``modular``, nothing is
enumerated); ``parity`` separates them by length.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from convextx.tasks import _checks
from convextx.tasks.base import Task
from convextx.tasks.embeddings import token_task
from solvers import checks

CONTEXTS = ("none", "pairs")


def _split(array: np.ndarray, N_train: int) -> tuple[np.ndarray, np.ndarray]:
    return array[:N_train], array[N_train:]


def previous_token_pairs(X: np.ndarray) -> np.ndarray:
    """(N, L, 2 d): each token's features followed by the previous token's (zeros at the first
    position): ``concat(X[:, k], X[:, k - 1])``."""
    previous = np.zeros_like(X)
    previous[:, 1:] = X[:, :-1]
    return np.concatenate([X, previous], axis=-1)


def _with_context(task: Task, context: str) -> Task:
    """``task`` with the fixed first layer of ``context`` applied to its features."""
    if context == "none":
        return task
    description = (
        f"{task.metadata['embedding']}; context 'pairs': X[i, k] = concat(e_k, e_(k-1)) of the "
        f"embedding e above (e_(-1) = 0), d = {2 * task.X_train.shape[2]}"
    )
    return dataclasses.replace(
        task,
        X_train=previous_token_pairs(task.X_train),
        X_test=previous_token_pairs(task.X_test),
        metadata={**task.metadata, "embedding": description},
    )


def associative_recall(
    *,
    N_train: int = 512,
    N_test: int = 256,
    num_pairs: int = 4,
    num_keys: int = 8,
    num_values: int = 8,
    seed: int = 0,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
    context: str = "none",
) -> Task:
    """Classification: read key-value pairs, then a query key; predict the value stored under it.

    Tokens (N, 2 num_pairs + 1): ``k_1 v_1 k_2 v_2 ... k_m v_m q``. Keys are distinct within a
    sample, ids [0, num_keys); values are ids [num_keys, num_keys + num_values) and may repeat;
    the query q is one of the sample's keys. The label is the value's index in [0, num_values),
    i.e. its token id minus ``metadata["value_offset"]``.

    ``context``: "none" (default) embeds each token alone; "pairs" applies a FIXED first layer
    (untrained, the same for train and test) that appends to every token's features the
    previous token's (concatenated along the features, zeros at the first position), so
    d doubles: ``X[i, k] = concat(e(t_k), e(t_(k-1)))``. With it a single attention layer can
    match a key stored next to its value (an induction-head-like pair feature).
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    N_train, N_test = checks.integer("N_train", N_train, 1), checks.integer("N_test", N_test, 1)
    checks.choice("context", context, CONTEXTS)
    m = checks.integer("num_pairs", num_pairs, 1)
    K = checks.integer("num_keys", num_keys, 1)
    V = checks.integer("num_values", num_values, 2)
    if m > K:
        raise ValueError(f"num_pairs must be <= num_keys (keys are distinct), got {m} > {K}")
    data_rng, embed_rng = _checks.generators(seed, 2)
    N = N_train + N_test
    rows = np.arange(N)
    keys = np.argsort(data_rng.random((N, K)), axis=1)[:, :m]
    values = data_rng.integers(V, size=(N, m))
    query = data_rng.integers(m, size=N)
    tokens = np.empty((N, 2 * m + 1), dtype=np.int64)
    tokens[:, 0 : 2 * m : 2] = keys
    tokens[:, 1 : 2 * m : 2] = K + values
    tokens[:, -1] = keys[rows, query]
    task = token_task(
        "associative_recall",
        "classification",
        _split(tokens, N_train),
        _split(values[rows, query], N_train),
        vocab_size=K + V,
        num_classes=V,
        embedding=embedding,
        embedding_dim=embedding_dim,
        rng=embed_rng,
        metadata={"config": config, "value_offset": K},
    )
    return _with_context(task, context)


def needle(
    *,
    N_train: int = 512,
    N_test: int = 256,
    length: int = 32,
    num_symbols: int = 8,
    seed: int = 0,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
    context: str = "none",
) -> Task:
    """Classification: find the one marked token in a long random sequence and return it.

    Tokens (N, length): random symbols in [0, num_symbols) with a single marker token
    (id ``num_symbols`` = ``metadata["marker_id"]``) at a uniform position j < length - 1; the
    label is the symbol right after the marker, ``tokens[j + 1]``.

    ``context``: "none" (default) or "pairs", as in ``associative_recall``: with "pairs"
    the marker's successor carries the marker in its features.
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    N_train, N_test = checks.integer("N_train", N_train, 1), checks.integer("N_test", N_test, 1)
    checks.choice("context", context, CONTEXTS)
    L = checks.integer("length", length, 2)
    S = checks.integer("num_symbols", num_symbols, 2)
    data_rng, embed_rng = _checks.generators(seed, 2)
    N = N_train + N_test
    rows = np.arange(N)
    tokens = data_rng.integers(S, size=(N, L))
    marker = data_rng.integers(L - 1, size=N)
    tokens[rows, marker] = S
    task = token_task(
        "needle",
        "classification",
        _split(tokens, N_train),
        _split(tokens[rows, marker + 1], N_train),
        vocab_size=S + 1,
        num_classes=S,
        embedding=embedding,
        embedding_dim=embedding_dim,
        rng=embed_rng,
        metadata={"config": config, "marker_id": S},
    )
    return _with_context(task, context)


def delayed_copy(
    *,
    N_train: int = 512,
    N_test: int = 256,
    length: int = 32,
    delay: int = 8,
    num_symbols: int = 8,
    seed: int = 0,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
) -> Task:
    """Per-token classification: at every position output the token seen ``delay`` steps earlier.

    Tokens (N, length): random symbols in [0, num_symbols). Targets y (N, length) int:
    ``y[:, t] = tokens[:, t - delay]`` for t >= delay, and the extra class ``num_symbols``
    (``metadata["blank_id"]``, "nothing to copy yet") for t < delay; num_classes = num_symbols + 1.
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    N_train, N_test = checks.integer("N_train", N_train, 1), checks.integer("N_test", N_test, 1)
    L = checks.integer("length", length, 2)
    S = checks.integer("num_symbols", num_symbols, 2)
    delay = checks.integer("delay", delay, 1)
    if delay >= L:
        raise ValueError(f"delay must be < length, got delay={delay}, length={L}")
    data_rng, embed_rng = _checks.generators(seed, 2)
    tokens = data_rng.integers(S, size=(N_train + N_test, L))
    y = np.full_like(tokens, S)
    y[:, delay:] = tokens[:, :-delay]
    return token_task(
        "delayed_copy",
        "sequence",
        _split(tokens, N_train),
        _split(y, N_train),
        vocab_size=S,
        num_classes=S + 1,
        embedding=embedding,
        embedding_dim=embedding_dim,
        rng=embed_rng,
        metadata={"config": config, "blank_id": S},
    )


def parity(
    *,
    N_train: int = 512,
    N_test: int = 256,
    L_min: int = 1,
    L_train: int = 8,
    L_test: int = 16,
    seed: int = 0,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
) -> Task:
    """Classification: the parity (sum mod 2) of a bit string, trained short and tested long.

    Train strings have lengths uniform in [L_min, L_train], test strings in (L_train, L_test], so
    the splits are disjoint and the test split measures length generalization. Every sample is
    stored at the fixed length L_test: bits (ids 0, 1) left-aligned, then the pad token
    (id 2 = ``metadata["pad_id"]``; vocab_size = 3). ``metadata["mask_train"]`` and
    ``["mask_test"]`` are (N, L_test) bool, True on the bits; the pad positions are embedded like
    any token, so a model that should ignore them must use the mask.
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    N_train, N_test = checks.integer("N_train", N_train, 1), checks.integer("N_test", N_test, 1)
    L_min = checks.integer("L_min", L_min, 1)
    L_train = checks.integer("L_train", L_train, 1)
    L_test = checks.integer("L_test", L_test, 1)
    if not L_min <= L_train < L_test:
        raise ValueError(
            f"need L_min <= L_train < L_test, got L_min={L_min}, L_train={L_train}, L_test={L_test}"
        )
    data_rng, embed_rng = _checks.generators(seed, 2)
    pad = 2
    lengths = np.concatenate(
        [
            data_rng.integers(L_min, L_train + 1, size=N_train),
            data_rng.integers(L_train + 1, L_test + 1, size=N_test),
        ]
    )
    mask = np.arange(L_test) < lengths[:, None]
    mask.flags.writeable = False
    bits = data_rng.integers(2, size=(N_train + N_test, L_test))
    mask_train, mask_test = _split(mask, N_train)
    return token_task(
        "parity",
        "classification",
        _split(np.where(mask, bits, pad), N_train),
        _split((bits * mask).sum(axis=1) % 2, N_train),
        vocab_size=3,
        num_classes=2,
        embedding=embedding,
        embedding_dim=embedding_dim,
        rng=embed_rng,
        metadata={
            "config": config,
            "pad_id": pad,
            "mask_train": mask_train,
            "mask_test": mask_test,
        },
    )
