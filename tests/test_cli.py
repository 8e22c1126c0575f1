"""The ``convextx`` command: solve and predict on a user's arrays, bench argument errors, the
demo, lazy imports."""

import json
import re
import subprocess
import sys

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


def test_solve_prints_the_certificate_and_saves_the_model(data_file, tmp_path, capsys):
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
        heads = {k.removeprefix("heads_"): saved[k] for k in saved.files if k.startswith("heads_")}
    assert set(heads) == {"w1", "w2", "a"}
    recovered = cx.nonconvex_objective(heads, X, y, beta=0.1, kind="vector", loss="squared")
    assert recovered == pytest.approx(expected.objective_, rel=1e-6)
    model = cx.ConvexAttention.load(out)  # the file is a saved model
    assert model.get_params()["beta"] == 0.1
    assert model.objective_ == pytest.approx(float(_printed(text, "objective")), rel=1e-9)
    np.testing.assert_allclose(model.predict(X), expected.predict(X), rtol=1e-6, atol=1e-9)


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


@pytest.fixture
def no_solve(monkeypatch):
    """Fails the test if the solve starts."""

    def fit(self, X, y):
        raise AssertionError("solved")

    monkeypatch.setattr(cx.ConvexAttention, "fit", fit)


def _same_path(path, tmp_path):
    return path


def _symlink(path, tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to(path)
    return link


def _hard_link(path, tmp_path):
    link = tmp_path / "other.npz"
    link.hardlink_to(path)
    return link


def _relative_spelling(path, tmp_path):
    return tmp_path / "." / path.name


@pytest.mark.parametrize("spell", [_same_path, _symlink, _hard_link, _relative_spelling])
def test_solve_refuses_to_write_over_its_input(data_file, tmp_path, no_solve, capsys, spell):
    path, _, _ = data_file
    before = path.read_bytes()
    out = spell(path, tmp_path)
    argv = ["solve", "--data", str(path), "--beta", "1", "--out", str(out), "--force"]
    assert main(argv) == 2
    assert "is the input" in capsys.readouterr().err
    assert path.read_bytes() == before


def _missing_folder(tmp_path):
    return tmp_path / "missing" / "w.npz", "does not exist"


def _a_folder(tmp_path):
    (tmp_path / "w.npz").mkdir()
    return tmp_path / "w.npz", "is a folder"


def _parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "w.npz", "does not exist"


def _existing_file(tmp_path):
    (tmp_path / "w.npz").write_text("mine")
    return tmp_path / "w.npz", "exists; pass --force"


def _existing_without_suffix(tmp_path):
    (tmp_path / "w.npz").write_text("mine")
    return tmp_path / "w", "w.npz exists; pass --force"  # np.savez would write w.npz


@pytest.mark.parametrize(
    "place",
    [_missing_folder, _a_folder, _parent_is_a_file, _existing_file, _existing_without_suffix],
)
def test_solve_checks_its_output_before_solving(data_file, tmp_path, no_solve, capsys, place):
    path, _, _ = data_file
    out, message = place(tmp_path)
    assert main(["solve", "--data", str(path), "--beta", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convextx solve: error: --out") and message in err
    if (tmp_path / "w.npz").is_file():
        assert (tmp_path / "w.npz").read_text() == "mine"


def test_solve_overwrites_with_force_atomically(data_file, tmp_path, capsys):
    path, _, _ = data_file
    out = tmp_path / "w.npz"
    out.write_text("old")
    assert main(["solve", "--data", str(path), "--beta", "1", "--out", str(out), "--force"]) == 0
    with np.load(out) as saved:
        assert "coef" in saved.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "w.npz"]


def _strings(tmp_path):
    path = tmp_path / "strings.npz"
    np.savez(path, X=np.full((4, 2, 2), "a"), y=np.zeros(4))
    return ["solve", "--data", str(path), "--beta", "1"], "X must hold numbers"


def _objects(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.zeros((4, 2, 2)), y=np.array([1, "a", None, 2.0], dtype=object))
    return ["solve", "--data", str(path), "--beta", "1"], "y is an object array"


def _missing_file(tmp_path):
    return ["solve", "--data", str(tmp_path / "nope.npz"), "--beta", "1"], "no such file"


def _not_an_archive(tmp_path):
    (tmp_path / "text.npz").write_text("X, y\n1, 2\n")
    return ["solve", "--data", str(tmp_path / "text.npz"), "--beta", "1"], "not an .npz"


def _one_array(tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((4, 2, 2)))
    return ["solve", "--data", str(tmp_path / "X.npy"), "--beta", "1"], "single .npy array"


def _unreadable(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "data.npz"))

    monkeypatch.setattr(np, "load", refuse)  # root reads every file: simulate the refusal
    (tmp_path / "data.npz").write_bytes(b"")
    return ["solve", "--data", str(tmp_path / "data.npz"), "--beta", "1"], "Permission denied"


def _unknown_task_setting(tmp_path):
    argv = ["bench", "--tasks", "digits", "--models", "gss", "--out", str(tmp_path / "o")]
    return [*argv, "--task-cfg", '{"digits": {"sise": 3}}'], "unknown settings ['sise']"


def _bench_out_is_a_file(tmp_path):
    (tmp_path / "o").write_text("mine")
    argv = ["bench", "--tasks", "digits", "--models", "gss", "--out", str(tmp_path / "o")]
    return argv, "is a file; expected a folder"


def _negative_budget(tmp_path):
    argv = ["bench", "--tasks", "digits", "--models", "gss", "--out", str(tmp_path / "o")]
    return [*argv, "--budget", "-5"], "budget_seconds must be a finite number > 0"


@pytest.mark.parametrize(
    "mistake",
    [
        _strings,
        _objects,
        _missing_file,
        _not_an_archive,
        _one_array,
        _unreadable,
        _unknown_task_setting,
        _bench_out_is_a_file,
        _negative_budget,
    ],
)
def test_a_user_error_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, mistake):
    args = (tmp_path, monkeypatch) if mistake is _unreadable else (tmp_path,)
    argv, message = mistake(*args)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"convextx {argv[0]}: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_ctrl_c_exits_130_quietly(data_file, monkeypatch, capsys):
    def interrupted(self, X, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(cx.ConvexAttention, "fit", interrupted)
    assert main(["solve", "--data", str(data_file[0]), "--beta", "1"]) == 130
    assert capsys.readouterr().err == ""


def test_an_internal_bug_keeps_its_traceback(data_file, monkeypatch):
    def broken(self, X, y):
        raise RuntimeError("a bug in convextx")

    monkeypatch.setattr(cx.ConvexAttention, "fit", broken)
    with pytest.raises(RuntimeError, match="a bug in convextx"):
        main(["solve", "--data", str(data_file[0]), "--beta", "1"])


def test_version_prints_the_package_version(capsys):
    import convextx

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"convextx {convextx.__version__}"


@pytest.fixture
def classifier_file(tmp_path):
    """A saved classifier (string labels) and new inputs of its (n, d), in an .npz with X."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3, 2))
    y = np.where(X[:, 0, 0] + X[:, 2, 1] > 0, "up", "down")
    model = cx.ConvexAttention(kind="scalar", beta=0.1).fit(X, y).save(tmp_path / "model.npz")
    new = tmp_path / "new.npz"
    np.savez(new, X=rng.normal(size=(9, 3, 2)))
    return model, new


def test_predict_writes_predictions_and_probabilities(classifier_file, tmp_path, capsys):
    model, new = classifier_file
    argv = ["predict", "--model", str(model), "--data", str(new), "--out", str(tmp_path / "p")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    est = cx.ConvexAttention.load(model)
    with np.load(new) as data:
        X = data["X"]
    with np.load(tmp_path / "p.npz", allow_pickle=False) as written:
        assert sorted(written.files) == ["predictions", "proba"]
        np.testing.assert_array_equal(written["predictions"], est.predict(X))
        np.testing.assert_array_equal(written["proba"], est.predict_proba(X))
    counts = dict(zip(*np.unique(est.predict(X), return_counts=True), strict=True))
    assert f"predictions    (9,): counts down: {counts.get('down', 0)}" in text
    assert "wrote" in text and "p.npz (predictions, proba)" in text


def test_predict_on_a_solved_regressor_prints_a_summary_only(data_file, tmp_path, capsys):
    path, X, _ = data_file
    model = tmp_path / "w.npz"
    assert main(["solve", "--data", str(path), "--beta", "0.1", "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--data", str(path)]) == 0
    text = capsys.readouterr().out
    predictions = cx.ConvexAttention.load(model).predict(X)
    assert f"mean {predictions.mean():.4g}" in text and "wrote" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "w.npz"]


def test_predict_never_overwrites_without_force(classifier_file, tmp_path, capsys):
    model, new = classifier_file
    out = tmp_path / "p.npz"
    out.write_text("mine")
    argv = ["predict", "--model", str(model), "--data", str(new), "--out", str(out)]
    assert main(argv) == 2
    assert "--out" in capsys.readouterr().err and out.read_text() == "mine"
    assert main([*argv[:-2], "--out", str(model), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    with np.load(out) as written:
        assert "predictions" in written.files


def test_predict_reports_bad_files_as_errors(classifier_file, data_file, tmp_path, capsys):
    model, new = classifier_file
    path, _, _ = data_file
    cases = [
        (["--model", str(path), "--data", str(new)], "is not a convextx model"),
        (["--model", str(model), "--data", str(model)], "lacks ['X']"),
        (["--model", str(model), "--data", str(tmp_path / "none.npz")], "no such file"),
    ]
    np.savez(tmp_path / "wide.npz", X=np.zeros((2, 3, 5)))
    cases.append((["--model", str(model), "--data", str(tmp_path / "wide.npz")], "(n, d)"))
    for argv, message in cases:
        assert main(["predict", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("convextx predict: error: ") and message in err, err


def test_command_help_lists_the_registries(capsys):
    for command, names in [("bench", cx.tasks.names()), ("solve", cx.KINDS)]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = "".join(capsys.readouterr().out.split())  # argparse wraps inside long lists
        assert all(name in text for name in names)


def test_the_command_line_parses_without_heavy_imports():
    """``import convextx.cli``, ``--help`` and ``--version`` load no NumPy, JAX, cvxpy nor
    scikit-learn (timed by experiments/bench_cli.py, not here)."""
    script = (
        "import sys\n"
        "from convextx.cli import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = {'numpy', 'jax', 'cvxpy', 'sklearn', 'scipy'} & set(sys.modules)\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "usage: convextx" in done.stdout and "HEAVY []" in done.stdout


def test_the_start_up_benchmark_writes_its_json(tmp_path, monkeypatch):
    from experiments import bench_cli

    fast = {"convextx --version": bench_cli.command_lines()["convextx --version"]}
    monkeypatch.setattr(bench_cli, "command_lines", lambda: fast)  # skip the slow reference
    result = bench_cli.main(["--repeats", "2", "--out", str(tmp_path / "cli.json")])
    written = json.loads((tmp_path / "cli.json").read_text())
    assert written["repeats"] == 2 and set(written["seconds"]) == set(fast)
    timing = result["seconds"]["convextx --version"]
    assert 0 < timing["min"] <= timing["median"] <= timing["max"]


def _own_data(path, shift=0.0):
    """An .npz of the user's own splits (regression on 3 tokens of 2 features)."""
    rng = np.random.default_rng(2)
    X_train, X_test = rng.normal(size=(12, 3, 2)) + shift, rng.normal(size=(6, 3, 2))
    np.savez(path, X_train=X_train, y_train=X_train[:, 1, 0], X_test=X_test, y_test=X_test[:, 1, 0])
    return path


def test_bench_runs_on_the_users_own_arrays(tmp_path, capsys):
    data = _own_data(tmp_path / "mine.npz")
    argv = ["bench", "--data", str(data), "--models", "convex-fista", "--seeds", "0,1"]
    argv += ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    assert "2 runs computed, 0 found" in capsys.readouterr().out
    rows = bench.read_runs(tmp_path / "out" / bench.RUNS_FILE)
    assert {row["task"] for row in rows} == {"mine"} and all(r["test_metric"] > 0.9 for r in rows)
    assert main(argv) == 0  # resumed: the same arrays
    assert "0 runs computed, 2 found" in capsys.readouterr().out
    _own_data(data, shift=1.0)
    assert main(argv) == 0  # other arrays under the same name are other configurations
    assert "2 runs computed, 0 found" in capsys.readouterr().out


def _lacking(tmp_path):
    np.savez(tmp_path / "mine.npz", X_train=np.zeros((4, 2, 2)), y_train=np.zeros(4))
    return tmp_path / "mine.npz", "lacks ['X_test', 'y_test']"


def _mismatched(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(4, 2, 2)), "X_test": rng.normal(size=(3, 2, 5))}
    np.savez(tmp_path / "mine.npz", y_train=np.zeros(4), y_test=np.zeros(3), **arrays)
    return tmp_path / "mine.npz", "mine.npz: X_test must have X_train's (n, d) = (2, 2)"


def _registered_name(tmp_path):
    return _own_data(tmp_path / "digits.npz"), "have the names of registered tasks"


@pytest.mark.parametrize("mistake", [_lacking, _mismatched, _registered_name])
def test_bench_checks_the_users_arrays_before_any_run(tmp_path, capsys, mistake):
    data, message = mistake(tmp_path)
    argv = ["bench", "--data", str(data), "--models", "convex-fista", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("convextx bench: error: ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_bench_needs_tasks_or_data(tmp_path, capsys):
    assert main(["bench", "--models", "gss", "--out", str(tmp_path / "o")]) == 2
    assert "give --tasks, --data or both" in capsys.readouterr().err


def test_progress_bars_leave_a_log_free_of_escape_codes(tmp_path):
    """Piped output (not a terminal) gets no progress bars, so no carriage returns or escapes."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "convextx.cli", "demo", "--quick", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert "\r" not in done.stderr + done.stdout and "\x1b[" not in done.stderr + done.stdout
    assert "convex-fista" in done.stdout
