"""The benchmark harness: a grid end to end, resume without recomputation, leaderboard, errors."""

import json
from itertools import product

import jax
import pytest

from convextx import bench, report
from convextx.zoo import base

TASKS = ["student_teacher", "modular"]
MODELS = ["simplex-adam", "simplex-sgd", "convex-fista"]
# both tasks have X (10, 5, 13) and 5 classes: the second reuses the first's compilations
TASK_CFG = {
    "student_teacher": {
        "N_train": 10, "N_test": 10, "n": 5, "d": 13, "c": 5, "problem": "classification",
    },
    "modular": {"p": 5},
}  # fmt: skip
MODEL_CFG = {"simplex-adam": {"steps": 200}, "simplex-sgd": {"steps": 100}}
FIELDS = {
    "task", "model", "seed", "metric", "train_metric", "test_metric", "objective",
    "objective_terms", "certified_optimum", "gap", "status", "parameters", "wall_seconds",
    "cpu_seconds", "device", "history", "model_cfg", "task_cfg",
}  # fmt: skip


@pytest.fixture
def fit_counter(monkeypatch):
    """Counts every Model.fit call."""
    calls = []
    fit = base.Model.fit

    def counting(self, task, budget_seconds=None):
        calls.append((task.name, self.name))
        return fit(self, task, budget_seconds)

    monkeypatch.setattr(base.Model, "fit", counting)
    return calls


def _run(out, **kwargs):
    return bench.run(
        TASKS, MODELS, [0], out, task_cfg=TASK_CFG, model_cfg=MODEL_CFG, progress=False, **kwargs
    )


def test_grid_end_to_end_then_resumes_without_recomputing(tmp_path, fit_counter):
    result = _run(tmp_path)
    assert (result.ran, result.skipped) == (6, 0)
    runs = tmp_path / bench.RUNS_FILE
    lines = runs.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 6 and len(fit_counter) == 6
    assert {(r["task"], r["model"], r["seed"]) for r in rows} == set(product(TASKS, MODELS, [0]))
    for row in rows:
        assert "error" not in row and set(row) >= FIELDS
        assert 0.0 <= row["test_metric"] <= 1.0 and row["wall_seconds"] > 0
    for row in (r for r in rows if r["model"] == "simplex-adam"):
        assert row["objective"] >= row["certified_optimum"] - row["gap"]
    board = (tmp_path / bench.LEADERBOARD_FILE).read_text()
    table = [line for line in board.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + 6  # header + one line per (task, model)
    for task, model in product(TASKS, MODELS):
        assert any(f"| {task} | {model} | 1 |" in line for line in table)
    for name in ("objective_student_teacher.png", "objective_modular.png", bench.METRIC_PLOT):
        assert (tmp_path / name).stat().st_size > 1000

    before = runs.read_bytes()
    again = _run(tmp_path)
    assert (again.ran, again.skipped) == (0, 6)
    assert len(fit_counter) == 6  # nothing refitted
    assert runs.read_bytes() == before
    assert len(again.rows) == 6

    runs.write_text("\n".join(lines[:-1]) + "\n")  # as if killed before the last run
    resumed = _run(tmp_path)
    assert (resumed.ran, resumed.skipped) == (1, 5)
    assert fit_counter[-1] == (rows[-1]["task"], rows[-1]["model"]) and len(fit_counter) == 7
    assert len(bench.read_runs(runs)) == 6


def test_a_failing_run_is_recorded_and_listed(tmp_path):
    task_cfg = {"student_teacher": {"N_train": 10, "N_test": 5, "n": 2, "d": 2}}  # regression
    result = bench.run(
        ["student_teacher"], ["repair-merged"], [3], tmp_path, task_cfg=task_cfg, progress=False
    )
    (row,) = result.rows
    assert row["seed"] == 3 and "fits problems" in row["error"]
    assert "Failed runs" in (tmp_path / bench.LEADERBOARD_FILE).read_text()


def test_bad_grids_are_refused_with_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown tasks \['digitz'\].*'digits'"):
        bench.run(["digitz"], ["convex-fista"], [0], tmp_path)
    with pytest.raises(ValueError, match=r"unknown models \['cnn'\].*'simplex-adam'"):
        bench.run(["digits"], ["convex-fista", "cnn"], [0], tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        bench.run(["digits"], ["convex-fista"], [0, 0], tmp_path)
    with pytest.raises(ValueError, match="must not set 'seed'"):
        bench.run(["digits"], ["gss"], [0], tmp_path, model_cfg={"gss": {"seed": 1}})
    with pytest.raises(ValueError, match="not in the grid"):
        bench.run(["digits"], ["gss"], [0], tmp_path, model_cfg={"moe": {}})
    with pytest.raises(TypeError, match="unknown settings"):
        bench.run(["digits"], ["gss"], [0], tmp_path, model_cfg={"gss": {"widht": 8}})
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        bench.select_device("tpu")
    assert not (tmp_path / bench.RUNS_FILE).exists()


def test_gpu_is_refused_clearly_when_absent():
    platforms = {d.platform for d in jax.devices()}
    if "gpu" in platforms:
        assert bench.select_device("gpu").platform == "gpu"
    else:
        with pytest.raises(ValueError, match="no GPU"):
            bench.select_device("gpu")
    assert bench.select_device("cpu").platform == "cpu"


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    path = tmp_path / bench.RUNS_FILE
    row = {"task": "a", "model": "m", "seed": 0, "error": "ValueError: no"}
    path.write_text(json.dumps(row) + '\n{"task": "b", "mo')
    with pytest.warns(UserWarning, match=rf"{path}:2: skipping an unreadable line"):
        assert bench.read_runs(path) == [row]


def _row(task, model, seed, metric, objective, optimum=None, gap=None):
    return {
        "task": task, "model": model, "seed": seed, "metric": "accuracy",
        "test_metric": metric, "objective": objective, "certified_optimum": optimum,
        "gap": gap, "wall_seconds": 1.0 + seed,
    }  # fmt: skip


def test_leaderboard_averages_seeds_and_ranks_by_test_metric():
    rows = [
        _row("t", "slow", 0, 0.5, 10.0),
        _row("t", "best", 0, 0.9, 4.0, 3.0, 1e-6),
        _row("t", "best", 1, 0.7, 6.0, 5.0, 3e-6),
        {"task": "t", "model": "broken", "seed": 0, "error": "ValueError: no"},
    ]
    lines = report.leaderboard(rows).splitlines()
    best, slow = lines[2], lines[3]
    # certified excess: mean of objective - (optimum - gap) = (1 + 1e-6 + 1 + 3e-6) / 2
    assert best.startswith("| t | best | 2 | accuracy 0.8000 +- 0.100 | 5 | 4 | 2e-06 | 1 | 1.5 |")
    assert slow.startswith("| t | slow | 1 | accuracy 0.5000 | 10 | - | - | - | 1 |")
    assert "- t / broken / seed 0: ValueError: no" in lines
