"""The ``Task`` every model in the zoo consumes: a train/test split in two views.

- Features ``X``: (N, n, d) float, n tokens of dimension d. The convex programs (P1-P4) and every
  feature-input model read these.
- Tokens: (N, L) int ids in [0, vocab_size), present only for discrete tasks, with L == n:
  token k of sample i is embedded as ``X[i, k]`` (see ``embeddings.py``). Transformers read these.

Targets ``y`` by problem type:

- ``"regression"``: (N,) or (N, c) float;
- ``"classification"``: (N,) int labels in [0, num_classes);
- ``"sequence"``: per-token targets, (N, n, c) float or (N, n) int labels in [0, num_classes).

Arrays are stored as read-only numpy views, so a task cannot change after validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROBLEMS = ("regression", "classification", "sequence")


def _frozen(array: Any) -> np.ndarray:
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Task:
    """A seeded train/test split; validated on construction (ValueError naming the field).

    name: task name.  problem: one of ``PROBLEMS``.
    X_train: (N_train, n, d) float.  X_test: (N_test, n, d) float.
    y_train, y_test: targets, shapes per problem type (module docstring).
    tokens_train: (N_train, n) int or None.  tokens_test: (N_test, n) int or None.
    vocab_size: number of token ids (discrete tasks) or None.
    num_classes: number of classes (integer targets) or None.
    metadata: generator settings under ``"config"``, the description of how ``X`` is built under
        ``"embedding"``, and task-specific entries documented by each generator.
    """

    name: str
    problem: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    tokens_train: np.ndarray | None = None
    tokens_test: np.ndarray | None = None
    vocab_size: int | None = None
    num_classes: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("X_train", "X_test", "y_train", "y_test", "tokens_train", "tokens_test"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "metadata", dict(self.metadata))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {list(PROBLEMS)}, got {self.problem!r}")
        if not isinstance(self.metadata.get("embedding"), str):
            raise ValueError("metadata must describe how X is built under the key 'embedding'")
        self._check_features()
        self._check_tokens()
        self._check_targets()

    def _check_features(self) -> None:
        for split in ("train", "test"):
            X = getattr(self, f"X_{split}")
            if X.ndim != 3 or not np.issubdtype(X.dtype, np.floating):
                raise ValueError(
                    f"X_{split} must be a float array (N, n, d), got {X.dtype} {X.shape}"
                )
            if 0 in X.shape:
                raise ValueError(f"X_{split} must have N, n, d >= 1, got shape {X.shape}")
            if not np.all(np.isfinite(X)):
                raise ValueError(f"X_{split} contains NaN or inf")
        if self.X_train.shape[1:] != self.X_test.shape[1:]:
            raise ValueError(
                f"X_train and X_test must share (n, d), got {self.X_train.shape[1:]} "
                f"and {self.X_test.shape[1:]}"
            )

    def _check_tokens(self) -> None:
        given = [t is not None for t in (self.tokens_train, self.tokens_test, self.vocab_size)]
        if any(given) and not all(given):
            raise ValueError("tokens_train, tokens_test and vocab_size must be given together")
        if not all(given):
            return
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int):
            raise ValueError(f"vocab_size must be an int, got {self.vocab_size!r}")
        for split in ("train", "test"):
            tokens = getattr(self, f"tokens_{split}")
            expected = getattr(self, f"X_{split}").shape[:2]
            if not np.issubdtype(tokens.dtype, np.integer) or tokens.shape != expected:
                raise ValueError(
                    f"tokens_{split} must be an int array of shape {expected} (N, n), "
                    f"got {tokens.dtype} {tokens.shape}"
                )
            if tokens.min() < 0 or tokens.max() >= self.vocab_size:
                raise ValueError(f"tokens_{split} must lie in [0, vocab_size={self.vocab_size})")

    def _check_targets(self) -> None:
        integer_targets = np.issubdtype(self.y_train.dtype, np.integer)
        expected_ndim = {
            "regression": (1, 2),
            "classification": (1,),
            "sequence": (2,) if integer_targets else (3,),
        }[self.problem]
        for split in ("train", "test"):
            y = getattr(self, f"y_{split}")
            N, n = getattr(self, f"X_{split}").shape[:2]
            if y.ndim not in expected_ndim or y.shape[0] != N:
                raise ValueError(
                    f"y_{split} has shape {y.shape}; a {self.problem} task with {N} samples "
                    f"needs ndim in {expected_ndim} and first axis {N}"
                )
            if self.problem == "sequence" and y.shape[1] != n:
                raise ValueError(f"y_{split} must have one target per token (axis 1 = {n})")
            if np.issubdtype(y.dtype, np.integer) != integer_targets:
                raise ValueError("y_train and y_test must both be integer or both be float")
        if self.y_train.shape[1:] != self.y_test.shape[1:]:
            raise ValueError("y_train and y_test must agree on every axis but the first")
        if self.problem == "classification" or (self.problem == "sequence" and integer_targets):
            self._check_labels()
        elif not np.issubdtype(self.y_train.dtype, np.floating):
            raise ValueError(f"a {self.problem} task needs float targets, got {self.y_train.dtype}")
        elif self.num_classes is not None:
            raise ValueError("num_classes must be None for float targets")
        elif not (np.all(np.isfinite(self.y_train)) and np.all(np.isfinite(self.y_test))):
            raise ValueError("y_train or y_test contains NaN or inf")

    def _check_labels(self) -> None:
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool):
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if not np.issubdtype(self.y_train.dtype, np.integer):
            raise ValueError(f"{self.problem} labels must be integers, got {self.y_train.dtype}")
        for split in ("train", "test"):
            y = getattr(self, f"y_{split}")
            if y.min() < 0 or y.max() >= self.num_classes:
                raise ValueError(
                    f"y_{split} labels must lie in [0, num_classes={self.num_classes})"
                )

    @property
    def n_tokens(self) -> int:
        """n, the number of tokens per sample."""
        return self.X_train.shape[1]

    @property
    def dim(self) -> int:
        """d, the feature dimension of one token."""
        return self.X_train.shape[2]

    @property
    def n_train(self) -> int:
        return self.X_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.X_test.shape[0]

    @property
    def output_dim(self) -> int:
        """c, the number of model outputs (per token for sequence tasks): classes or target size."""
        if self.num_classes is not None:
            return self.num_classes
        return 1 if self.y_train.ndim == 1 else self.y_train.shape[-1]

    def __repr__(self) -> str:
        discrete = f", vocab_size={self.vocab_size}" if self.vocab_size is not None else ""
        classes = f", num_classes={self.num_classes}" if self.num_classes is not None else ""
        return (
            f"Task({self.name!r}, {self.problem}, train={self.n_train}, test={self.n_test}, "
            f"n={self.n_tokens}, d={self.dim}{discrete}{classes})"
        )
