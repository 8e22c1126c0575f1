"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes) as token sequences.

The default data set of the ``convextx demo``; offline (``sklearn.datasets.load_digits`` ships the
data). Pixels 0..16 are scaled to [0, 1] by pixel / 16.
"""

from __future__ import annotations

import numpy as np

from convextx.tasks import _checks
from convextx.tasks._splits import stratified_split
from convextx.tasks.base import Task
from solvers import checks

LAYOUTS = ("rows", "patches")


def image_tokens(images: np.ndarray, layout: str) -> np.ndarray:
    """Tokens (N, n, f) of images (N, 8, 8).

    ``"rows"``: token r is image row r (n = 8, f = 8).
    ``"patches"``: the 4 x 4 grid of 2 x 2 patches, token 4 * i + j is the patch at grid row i,
    column j, its 4 pixels in row-major order (n = 16, f = 4).
    """
    checks.choice("layout", layout, LAYOUTS)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise ValueError(f"images must have shape (N, 8, 8), got {images.shape}")
    if layout == "rows":
        return images
    N = images.shape[0]
    return images.reshape(N, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(N, 16, 4)


def digits(
    *,
    layout: str = "rows",
    positions: bool = False,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Task:
    """10-class classification of the sklearn digits, split stratified by class.

    X (N, n, f) = ``image_tokens(images / 16, layout)``: rows (n = 8, f = 8) or 2 x 2 patches
    (n = 16, f = 4). With ``positions=True`` a one-hot of the token index is appended to every
    token (d = f + n). No tokens (the task is not discrete).

    metadata: ``config``, ``embedding``, ``index_train`` and ``index_test`` (the samples' indices
    into ``load_digits().images``).
    """
    config = _checks.plain_config(locals())  # the arguments, before any other local exists
    checks.choice("layout", layout, LAYOUTS)
    positions = checks.boolean("positions", positions)
    test_fraction = checks.real(
        "test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True
    )
    (rng,) = _checks.generators(seed, 1)
    # imported here: scikit-learn takes seconds to import, and only this task needs it
    from sklearn.datasets import load_digits

    data = load_digits()
    X = image_tokens(data.images / 16.0, layout)
    N, n, f = X.shape
    description = f"{layout}: {n} tokens of {f} pixels / 16"
    if positions:
        X = np.concatenate([X, np.broadcast_to(np.eye(n), (N, n, n))], axis=-1)
        description += f", then one_hot(k, {n}) appended, d = {f + n}"
    train, test = stratified_split(data.target, test_fraction, rng)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split")
    return Task(
        name="digits",
        problem="classification",
        X_train=X[train],
        X_test=X[test],
        y_train=data.target[train],
        y_test=data.target[test],
        num_classes=10,
        metadata={
            "config": config,
            "embedding": description,
            "index_train": train,
            "index_test": test,
        },
    )
