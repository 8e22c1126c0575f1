"""``ConvexAttention.save`` / ``load`` (``convextx.persist``): identical predictions, no
training data, no pickles, no silent overwrite, clear errors for other files."""

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import convextx as cx
from convextx import persist

N = 23  # training samples: no array of a saved model may have N rows
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, 3, 2))
X_NEW = RNG.normal(size=(7, 3, 2))
SIGNAL = X[:, 1, 0] - 0.5 * X[:, 2, 1]
GATES = cx.Gates(RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2)))

#: (settings, targets): every family, each loss it takes
CASES = {
    "scalar-squared": ({"kind": "scalar"}, SIGNAL),
    "scalar-logistic": ({"kind": "scalar"}, np.where(SIGNAL > 0, "up", "down")),
    "vector-squared": ({"kind": "vector"}, np.stack([SIGNAL, -SIGNAL], axis=1)),
    "vector-cross_entropy": ({"kind": "vector"}, np.digitize(SIGNAL, [-0.5, 0.5])),
    "vector-float32": ({"kind": "vector", "dtype": "float32"}, np.digitize(SIGNAL, [0.0])),
    "gated-sampled": ({"kind": "gated", "gates": 6}, np.digitize(SIGNAL, [-0.5, 0.5])),
    "gated-given": ({"kind": "gated", "gates": GATES}, SIGNAL),
    "sequence-squared": ({"kind": "sequence"}, X[:, :, :1] + X[:, ::-1, 1:]),
    "sequence-cross_entropy": ({"kind": "sequence"}, (X[:, ::-1, 0] > 0).astype(int)),
    "linear-squared": ({"kind": "linear"}, SIGNAL),
    "linear-cross_entropy": ({"kind": "linear", "query": 1}, np.digitize(SIGNAL, [0.0])),
}


def _fit(settings, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a loose fit predicts all the same
        return cx.ConvexAttention(beta=0.1, max_iter=300, **settings).fit(X, y)


@pytest.fixture(scope="module")
def fitted():
    return {name: _fit(*case) for name, case in CASES.items()}


def _same(a, b):
    """Equal values: arrays exactly, Gates by their arrays, dicts entrywise."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, cx.Gates):
        np.testing.assert_array_equal(a.u1, b.u1)
        np.testing.assert_array_equal(a.u2, b.u2)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", CASES)
def test_a_loaded_model_predicts_exactly_as_the_saved_one(fitted, tmp_path, name):
    est = fitted[name]
    back = cx.ConvexAttention.load(est.save(tmp_path / "model.npz"))
    assert type(back) is cx.ConvexAttention
    np.testing.assert_array_equal(back.decision_function(X_NEW), est.decision_function(X_NEW))
    np.testing.assert_array_equal(back.predict(X_NEW), est.predict(X_NEW))
    if est.classes_ is not None:
        np.testing.assert_array_equal(back.predict_proba(X_NEW), est.predict_proba(X_NEW))
    assert back.score(X, CASES[name][1]) == est.score(X, CASES[name][1])
    _same(back.get_params(), est.get_params())
    for attribute in persist.FITTED:
        _same(getattr(back, attribute), getattr(est, attribute))
    assert not hasattr(back, "program_") and not hasattr(back, "solve_result_")


@pytest.mark.parametrize("name", CASES)
def test_the_file_holds_no_training_data_and_no_pickles(fitted, tmp_path, name):
    path = fitted[name].save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}  # every entry loads unpickled
    assert all(a.dtype != object for a in arrays.values())
    assert not [key for key, a in arrays.items() if a.ndim and a.shape[0] == N]
    metadata = json.loads(str(arrays[persist.METADATA_KEY]))
    assert metadata["format"] == persist.FORMAT and metadata["family"] == CASES[name][0]["kind"]
    assert metadata["format_version"] == persist.FORMAT_VERSION


def test_a_gated_model_keeps_its_deduplicated_gates(fitted, tmp_path):
    est = fitted["gated-sampled"]
    back = cx.ConvexAttention.load(est.save(tmp_path / "gated.npz"))
    gates = est.program_.gates
    np.testing.assert_array_equal(back.predictor_.data.gates.u1, gates.u1)
    assert back.predictor_.data.gates.duplicates_removed == gates.duplicates_removed


def test_save_refuses_to_overwrite_without_force(fitted, tmp_path):
    est = fitted["scalar-squared"]
    path = tmp_path / "model"  # written as named: no suffix added
    path.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=f"{path} exists; pass force=True"):
        est.save(path)
    assert path.read_bytes() == b"mine"
    assert est.save(path, force=True) == path
    np.testing.assert_array_equal(cx.ConvexAttention.load(path).coef_, est.coef_)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(fitted, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        fitted["scalar-squared"].save(path, force=True)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_save_errors_name_the_problem(fitted, tmp_path):
    with pytest.raises(NotFittedError):
        cx.ConvexAttention().save(tmp_path / "unfitted.npz")
    with pytest.raises(FileNotFoundError, match="no folder"):
        fitted["scalar-squared"].save(tmp_path / "missing" / "model.npz")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        fitted["scalar-squared"].save(tmp_path, force=True)
    est = _fit({"kind": "scalar"}, SIGNAL)
    est.seed = object()  # not a value a file can hold
    with pytest.raises(TypeError, match="cannot save params_seed"):
        est.save(tmp_path / "odd.npz")
    assert not list(tmp_path.iterdir())


def _rewritten(path, tmp_path, change):
    """A copy of the model at ``path`` with its metadata changed by ``change``."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    metadata = json.loads(str(arrays[persist.METADATA_KEY]))
    change(metadata, arrays)
    arrays[persist.METADATA_KEY] = np.array(json.dumps(metadata))
    np.savez(tmp_path / "changed.npz", **arrays)
    return tmp_path / "changed.npz"


def _newer(metadata, arrays):
    metadata["format_version"] = persist.FORMAT_VERSION + 1


def _other_format(metadata, arrays):
    metadata["format"] = "sklearn"


def _lost_array(metadata, arrays):
    del arrays["coef"]


def _unknown_family(metadata, arrays):
    metadata["family"] = "quadratic"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_newer, "format version 2; this convextx .* reads versions up to 1: upgrade"),
        (_other_format, "is not a convextx model: its metadata has no format"),
        (_lost_array, "is not a valid convextx model file: missing array 'coef'"),
        (_unknown_family, "is not a valid convextx model file: .*quadratic"),
    ],
)
def test_load_refuses_other_or_newer_files(fitted, tmp_path, change, message):
    path = _rewritten(fitted["vector-squared"].save(tmp_path / "m.npz"), tmp_path, change)
    with pytest.raises(ValueError, match=message):
        cx.ConvexAttention.load(path)


def test_load_refuses_files_that_are_not_models(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="text.npz is not a convextx model: not an .npz"):
        cx.ConvexAttention.load(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="a single .npy array"):
        cx.ConvexAttention.load(tmp_path / "one.npy")
    np.savez(tmp_path / "data.npz", X=X, y=SIGNAL)
    with pytest.raises(ValueError, match=r"no 'convextx_model' entry \(it holds \['X', 'y'\]\)"):
        cx.ConvexAttention.load(tmp_path / "data.npz")
    with pytest.raises(FileNotFoundError):
        cx.ConvexAttention.load(tmp_path / "nope.npz")
