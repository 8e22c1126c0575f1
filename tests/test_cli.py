"""The ``convextx`` command: solve on a user's arrays, bench argument errors, the demo."""

import json
import re

import jax
import numpy as np
import pytest

import convextx as cx
from convextx import bench
from convextx.cli import main


def _printed(text, label):
    """The value printed after ``label`` on its line."""
    return re.search(rf"^{label}\s+(\S+)", text, re.MULTILINE).group(1)


@pytest.fixture
def data_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 2))
    y = X[:, 1, 0] - 0.5 * X[:, 2, 1]
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    return path, X, y


def test_solve_prints_the_certificate_and_saves_weights(data_file, tmp_path, capsys):
    path, X, y = data_file
    out = tmp_path / "w.npz"
    argv = ["solve", "--data", str(path), "--kind", "vector", "--beta", "0.1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    expected = cx.ConvexAttention(kind="vector", beta=0.1, loss="squared").fit(X, y)
    assert float(_printed(text, "objective")) == pytest.approx(expected.objective_, rel=1e-9)
    assert _printed(text, "status") == expected.status_ == "optimal"
    assert float(_printed(text, "gap")) <= 1e-6 * max(1.0, expected.objective_)  # is_solved
    assert "active tokens  [1, 2] of 3" in text  # y reads tokens 1 and 2 only
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["coef"], expected.coef_, rtol=1e-6, atol=1e-10)
        heads = {k.removeprefix("heads_"): saved[k] for k in saved.files if k != "coef"}
    assert set(heads) == {"w1", "w2", "a"}
    recovered = cx.nonconvex_objective(heads, X, y, beta=0.1, kind="vector", loss="squared")
    assert recovered == pytest.approx(expected.objective_, rel=1e-6)


def test_solve_reports_bad_input_as_an_error(data_file, tmp_path, capsys):
    path, X, _ = data_file
    np.savez(tmp_path / "no_y.npz", X=X)
    assert main(["solve", "--data", str(tmp_path / "no_y.npz"), "--beta", "1"]) == 2
    assert "lacks ['y']; it holds ['X']" in capsys.readouterr().err
    assert main(["solve", "--data", str(path), "--beta", "-1"]) == 2
    assert "beta" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["solve", "--data", str(path), "--beta", "1", "--kind", "quadratic"])
    assert "invalid choice: 'quadratic'" in capsys.readouterr().err


def test_bench_lists_valid_names_for_unknown_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            ["bench", "--tasks", "digits", "--models", "convex-fista,bert", "--out", str(tmp_path)]
        )
    err = capsys.readouterr().err
    assert "unknown models ['bert']" in err and "'simplex-adam'" in err
    with pytest.raises(SystemExit):
        main(["bench", "--tasks", "mnist", "--models", "gss", "--out", str(tmp_path)])
    assert "unknown tasks ['mnist']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--tasks", "digits", "--models", "gss", "--seeds", "0,x", "--out", "o"])
    assert "seeds" in capsys.readouterr().err


def _bench_argv(out):
    task_cfg = json.dumps({"student_teacher": {"N_train": 12, "N_test": 6, "n": 3, "d": 2}})
    argv = ["bench", "--tasks", "student_teacher", "--models", "convex-fista", "--seeds", "0,1"]
    return [*argv, "--out", str(out), "--task-cfg", task_cfg, "--no-progress"]


def test_bench_without_a_gpu_says_so(tmp_path, capsys):
    if "gpu" in {d.platform for d in jax.devices()}:
        assert bench.select_device("gpu").platform == "gpu"
    else:
        assert main([*_bench_argv(tmp_path), "--device", "gpu"]) == 2
        assert "no GPU" in capsys.readouterr().err
        assert not (tmp_path / bench.RUNS_FILE).exists()


@pytest.mark.slow
def test_bench_runs_a_grid_and_prints_the_leaderboard(tmp_path, capsys):
    assert main(_bench_argv(tmp_path)) == 0
    text = capsys.readouterr().out
    assert "2 runs computed, 0 found" in text
    assert re.search(r"\| student_teacher \| convex-fista \| 2 \| r2 ", text)
    assert len(bench.read_runs(tmp_path / bench.RUNS_FILE)) == 2


@pytest.mark.slow
def test_demo_quick_prints_the_table_and_saves_the_plot(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"model\s+train objective\s+certified optimum\s+gap\s+train\s+test", text)
    rows = {row["model"]: row for row in bench.read_runs(tmp_path / bench.RUNS_FILE)}
    assert set(rows) == set(bench.DEMO_MODELS)
    for model in bench.DEMO_MODELS:
        assert re.search(rf"^{model}\s+\d", text, re.MULTILINE)
    convex, adam = rows["convex-fista"], rows["simplex-adam"]
    assert adam["certified_optimum"] == pytest.approx(convex["objective"], rel=1e-5)
    assert adam["objective"] >= convex["objective"] - convex["gap"]
    assert convex["test_metric"] > 0.9  # digits: the certified classifier generalizes
    assert (tmp_path / "objective_digits.png").stat().st_size > 1000
