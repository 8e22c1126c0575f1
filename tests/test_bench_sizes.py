"""The bench's training-set size sweep (``--sizes``: learning curves and their scaling-law
extrapolation, convextx.learning_curves) and its ECE column (Model.predict_proba). A
nearest-neighbour zoo entry, which compiles nothing, keeps most runs instant; convex-fista is
the real model beside it."""

import dataclasses
import json
import re

import numpy as np
import pytest

from convextx import bench, calibration, learning_curves, report, scaling, tasks, zoo
from convextx.cli import main
from convextx.zoo import base, registry

TASK_CFG = {"N_train": 60, "N_test": 120, "n": 4, "d": 6, "c": 4, "problem": "classification"}
REGRESSION_CFG = {"N_train": 30, "N_test": 20, "n": 4, "d": 6}
SIZES = [8, 12, 18, 27, 40]


class Nearest(base.Model):
    """1-nearest-neighbour on the flattened features: logits are minus the distance to the
    nearest train sample of each class (-inf for a class the train split lacks); regression
    predicts the nearest sample's target."""

    def __init__(self, *, name="nearest", seed=0):
        super().__init__(**base.hyperparameters(locals()))

    def _fit(self, task, budget_seconds):
        self.X_ = task.X_train.reshape(task.n_train, -1)
        self.y_ = task.y_train

    def decision_function(self, inputs):
        X = np.asarray(inputs).reshape(len(inputs), -1)
        distances = np.linalg.norm(X[:, None] - self.X_[None], axis=-1)  # (N, N_train)
        if not self.integer_targets_:
            return self.y_[distances.argmin(axis=1)]
        logits = np.full((len(X), self.num_classes_), -np.inf)
        for k in np.unique(self.y_):
            logits[:, k] = -distances[:, self.y_ == k].min(axis=1)
        return logits

    def attention_maps(self):
        return {}

    def _summary(self):
        history = {"time": [1e-3], "objective": [1.0]}
        return {"objective": 1.0, "objective_terms": base.LOSS_TERMS, "parameters": 0,
                "history": history}  # fmt: skip


@pytest.fixture
def nearest(monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, "nearest", (Nearest, {}))


@pytest.fixture(scope="module")
def task():
    return tasks.load("student_teacher", seed=0, **TASK_CFG)


def _recomputed(rows, model, held_out, e0):
    """(params, extrapolation error) per estimator, from the rows by convextx.scaling alone."""
    mine = [r for r in rows if r["model"] == model]
    sizes = [r["train_size"] for r in mine]
    errors = [1.0 - r["test_metric"] for r in mine]
    (x_fit, e_fit), (x_test, e_test) = scaling.split_by_size(sizes, errors, held_out)
    out = {}
    for estimator in scaling.ESTIMATORS:
        fit = scaling.fit_scaling_law(x_fit, e_fit, estimator, e0=e0)
        out[estimator] = (fit.params, scaling.extrapolation_error(fit, x_test, e_test))
    return out


def test_a_size_sweep_fits_every_law_per_model_as_scaling_does(tmp_path, nearest, task):
    out = tmp_path / "out"
    result = bench.run(
        ["student_teacher"], ["convex-fista", "nearest"], [0, 1], out,
        task_cfg={"student_teacher": TASK_CFG}, sizes=SIZES, held_out=1, progress=False,
    )  # fmt: skip
    rows = bench.read_runs(out / bench.RUNS_FILE)
    assert len(rows) == result.ran == 2 * len(SIZES) * 2  # models x sizes x seeds
    assert sorted({r["train_size"] for r in rows}) == SIZES
    assert all(r["config"]["train_size"] == r["train_size"] for r in rows)
    saved = json.loads((out / bench.SCALING_FILE).read_text())
    assert saved == json.loads(json.dumps(result.curves))
    e0 = 1.0 - 1.0 / TASK_CFG["c"]
    for model in ("convex-fista", "nearest"):
        curve = saved["student_teacher"][model]
        assert curve["fit_sizes"] == SIZES[:-1] and curve["held_out_sizes"] == SIZES[-1:]
        assert len(curve["sizes"]) == 2 * len(SIZES) and curve["e0"] == pytest.approx(e0)
        for estimator, (params, error) in _recomputed(rows, model, 1, e0).items():
            entry = curve[estimator]
            assert entry["params"] == pytest.approx(params, rel=1e-9), (model, estimator)
            assert entry["extrapolation_rms_log_error"] == pytest.approx(error, rel=1e-9)
    board = (out / bench.LEADERBOARD_FILE).read_text()
    assert board.count("| student_teacher | nearest |") == 3  # leaderboard, curve, extrapolation
    assert "| 8-27 | 40 |" in board
    assert (out / "scaling_student_teacher.png").stat().st_size > 0
    again = bench.run(
        ["student_teacher"], ["convex-fista", "nearest"], [0, 1], out,
        task_cfg={"student_teacher": TASK_CFG}, sizes=SIZES, held_out=1, progress=False,
    )  # fmt: skip
    assert (again.ran, again.skipped) == (0, len(rows))  # sized runs are keyed on their size


def test_subsamples_are_nested_per_seed_and_keep_the_test_split(task):
    small = learning_curves.subsample(task, 10, seed=3)
    large = learning_curves.subsample(task, 20, seed=3)
    np.testing.assert_array_equal(small.X_train, large.X_train[:10])
    np.testing.assert_array_equal(small.X_test, task.X_test)
    assert small.y_train.shape == (10,) and small.n_test == task.n_test
    other = learning_curves.subsample(task, 10, seed=4)
    assert not np.array_equal(other.X_train, small.X_train)
    with pytest.raises(ValueError, match="size"):
        learning_curves.subsample(task, task.n_train + 1, seed=0)


def test_the_ece_column_is_the_ece_of_predict_proba(tmp_path, task):
    result = bench.run(["student_teacher"], ["convex-fista"], [0], tmp_path,
                       task_cfg={"student_teacher": TASK_CFG}, progress=False)  # fmt: skip
    (row,) = result.rows
    model = zoo.make("convex-fista", seed=0).fit(task)
    probs = model.predict_proba(task.X_test)
    assert probs.shape == (task.n_test, TASK_CFG["c"])
    np.testing.assert_array_equal(probs.argmax(axis=1), model.predict(task.X_test))
    expected = calibration.expected_calibration_error(probs, task.y_test)
    assert row["test_ece"] == pytest.approx(expected, rel=1e-9) and 0 < expected < 1
    stored = bench.read_runs(tmp_path / bench.RUNS_FILE)[0]
    assert stored["test_ece"] == row["test_ece"]
    line = next(x for x in report.leaderboard([row]).splitlines() if "convex-fista" in x)
    assert line.endswith(f"| {expected:.4f} |")


def test_regression_has_no_ece_and_no_probabilities(tmp_path, nearest):
    result = bench.run(["student_teacher"], ["nearest"], [0], tmp_path,
                       task_cfg={"student_teacher": REGRESSION_CFG}, progress=False)  # fmt: skip
    assert result.rows[0]["test_ece"] is None
    assert report.leaderboard(result.rows).splitlines()[2].endswith("| - |")
    regression = tasks.load("student_teacher", seed=0, **REGRESSION_CFG)
    model = zoo.make("nearest").fit(regression)
    with pytest.raises(ValueError, match="predict_proba needs class labels"):
        model.predict_proba(regression.X_test)
    with pytest.raises(AttributeError, match="not fitted"):
        zoo.make("nearest").predict_proba(regression.X_test)


def test_probabilities_cover_the_task_classes_when_training_lacks_one(task):
    present = np.unique(task.y_train).tolist()
    assert len(present) == 3  # this draw of the teacher never gives one of the 4 classes
    keep = task.y_train != present[1]
    lacking = dataclasses.replace(task, X_train=task.X_train[keep], y_train=task.y_train[keep])
    model = zoo.make("convex-fista").fit(lacking)
    seen = model.estimator_.classes_.tolist()
    assert seen == [present[0], present[2]]  # the program has an output for 2 classes of 4
    probs = model.predict_proba(task.X_test)
    unseen = [k for k in range(TASK_CFG["c"]) if k not in seen]
    assert probs.shape == (task.n_test, TASK_CFG["c"]) and np.all(probs[:, unseen] == 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(task.X_test), model.estimator_.predict(task.X_test))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sizes", "8,12,12,18,27"], "strictly increasing"),
        (["--sizes", "27,18,12,8,4"], "strictly increasing"),
        (["--sizes", "0,8,12,18,27"], "ints > 0"),
        (["--sizes", "8,12,18,27"], "at least 5 sizes"),
        (["--sizes", "8,12,18,27,40", "--held-out", "2"], "at least 6 sizes"),
        (["--sizes", "8,12,18,27,40", "--held-out", "0"], "--held-out"),
        (["--sizes", "8,12,18,27,61"], "<= the train split of task 'student_teacher' \\(60"),
        (["--held-out", "2"], "--held-out needs --sizes"),
    ],
)
def test_bad_sizes_are_refused_before_any_run(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.setattr(base.Model, "fit", lambda *a, **k: pytest.fail("a model was fitted"))
    argv = ["bench", "--tasks", "student_teacher", "--models", "convex-fista", "--out",
            str(tmp_path / "out"), "--task-cfg", json.dumps({"student_teacher": TASK_CFG})]  # fmt: skip
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convextx bench: error: ") and err.count("\n") == 1
    assert re.search(message, err) and re.search("--sizes|--held-out", err), err
    assert not (tmp_path / "out").exists()


def test_sizes_that_are_not_ints_are_a_usage_error(tmp_path, capsys):
    argv = ["bench", "--tasks", "digits", "--models", "convex-fista", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--sizes", "8,twelve"])
    assert exit_.value.code == 2
    assert "argument --sizes: expected comma-separated ints" in capsys.readouterr().err
