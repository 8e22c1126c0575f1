"""Fixed (untrained) token embeddings that turn a discrete task into features for the convex models.

Two kinds, for token ids ``tokens: (N, L)`` over a vocabulary of size V:

- ``"onehot"`` (default): ``X[i, k] = concat(one_hot(tokens[i, k], V), one_hot(k, L))``, so
  d = V + L. Exact and parameter-free; the position block lets models that share weights across
  tokens tell positions apart (the convex programs already have one group per position).
- ``"random"``: ``X[i, k] = E_tok[tokens[i, k]] + E_pos[k]``, E_tok: (V, dim) and E_pos: (L, dim)
  drawn once with i.i.d. N(0, 1/dim) entries from the task's seed, so d = dim (default 32).

Train and test are embedded with the same tables (``token_task`` embeds them together).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convextx.tasks.base import Task
from solvers import checks

EMBEDDINGS = ("onehot", "random")
DEFAULT_RANDOM_DIM = 32


def embed(
    tokens: np.ndarray,
    vocab_size: int,
    embedding: str = "onehot",
    embedding_dim: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, str]:
    """Features X: (N, L, d) float64 for ``tokens``: (N, L), and a one-line description of the map.

    ``embedding_dim`` applies to ``"random"`` only (default 32); ``rng`` draws its tables and is
    required for it.
    """
    checks.choice("embedding", embedding, EMBEDDINGS)
    N, L = tokens.shape
    if embedding == "onehot":
        if embedding_dim is not None:
            raise ValueError(
                f"embedding_dim applies to embedding='random' only; got {embedding_dim!r} with "
                "embedding='onehot' (whose dimension is vocab_size + length)"
            )
        X = np.concatenate(
            [
                np.eye(vocab_size)[tokens],
                np.broadcast_to(np.eye(L), (N, L, L)),
            ],
            axis=-1,
        )
        return X, (
            f"onehot: X[i, k] = concat(one_hot(token, V={vocab_size}), one_hot(k, L={L})), "
            f"d = {vocab_size + L}"
        )
    dim = checks.integer(
        "embedding_dim", DEFAULT_RANDOM_DIM if embedding_dim is None else embedding_dim, 1
    )
    if rng is None:
        raise ValueError("rng is required for embedding='random'")
    token_table = rng.normal(scale=dim**-0.5, size=(vocab_size, dim))
    position_table = rng.normal(scale=dim**-0.5, size=(L, dim))
    X = token_table[tokens] + position_table
    return X, (
        f"random: X[i, k] = E_tok[token] + E_pos[k], E_tok ({vocab_size}, {dim}) and "
        f"E_pos ({L}, {dim}) with N(0, 1/{dim}) entries from the task seed, d = {dim}"
    )


def token_task(
    name: str,
    problem: str,
    tokens: tuple[np.ndarray, np.ndarray],
    y: tuple[np.ndarray, np.ndarray],
    *,
    vocab_size: int,
    num_classes: int,
    embedding: str,
    embedding_dim: int | None,
    rng: np.random.Generator,
    metadata: dict[str, Any],
) -> Task:
    """A ``Task`` for a discrete problem: embeds ``tokens = (train, test)`` with shared tables.

    tokens: ((N_train, L), (N_test, L)) int ids.  y: (train, test) targets.
    rng: the stream that draws a random embedding, separate from the data stream so that the
    embedding choice never changes the tokens.
    """
    tokens_train, tokens_test = tokens
    X, description = embed(
        np.concatenate([tokens_train, tokens_test]), vocab_size, embedding, embedding_dim, rng
    )
    return Task(
        name=name,
        problem=problem,
        X_train=X[: len(tokens_train)],
        X_test=X[len(tokens_train) :],
        y_train=y[0],
        y_test=y[1],
        tokens_train=tokens_train,
        tokens_test=tokens_test,
        vocab_size=vocab_size,
        num_classes=num_classes,
        metadata={**metadata, "embedding": description},
    )
