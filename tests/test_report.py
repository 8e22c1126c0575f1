"""Leaderboard flags and the plots' honesty: measured times only, certified suboptimality."""

import numpy as np
import pytest

from convextx import report


def _run(model, times, objectives, optimum=None, gap=None, steps=None, wall=2.0):
    history = {"time": list(times), "objective": list(objectives)}
    if steps is not None:
        history["step"] = list(steps)
    return {
        "task": "t", "model": model, "seed": 0, "metric": "accuracy", "test_metric": 0.9,
        "objective": objectives[-1], "objective_terms": "sum", "certified_optimum": optimum,
        "gap": gap, "wall_seconds": wall, "history": history,
    }  # fmt: skip


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would save, kept open for inspection."""
    saved = []
    monkeypatch.setattr(report, "_save", lambda fig, plt, path: saved.append(fig) or path)
    return saved


def test_a_run_without_optimizer_steps_is_flagged():
    rows = [
        _run("adam", [0.0], [5.0], steps=[0]),
        _run("adam", [0.0, 0.1], [5.0, 4.0], steps=[0, 50]) | {"seed": 1},
        _run("convex", [0.1], [3.0], 3.0, 1e-6),
    ]
    lines = report.leaderboard(rows).splitlines()
    assert any("| adam (0 steps in 1 of 2) | 2 |" in line for line in lines)
    assert any("| convex | 1 |" in line for line in lines)


def test_curves_leave_out_unmeasured_times_instead_of_moving_them(figures):
    row = _run("adam", [0.0, 0.01, 0.1], [9.0, 5.0, 4.0], 3.0, 1e-3)
    report.plot_objective([row], "unused.png")
    (fig,) = figures
    ax = fig.axes[0]
    (curve,) = [line for line in ax.get_lines() if line.get_label().startswith("adam")]
    np.testing.assert_array_equal(curve.get_xdata(), [0.01, 0.1])  # no point at t = 1e-4
    assert "fit 2 s with compile" in curve.get_label()
    (optimum,) = [line for line in ax.get_lines() if line.get_label() == "certified optimum"]
    assert optimum.get_color() == "black" and optimum.get_linestyle() == "--"
    np.testing.assert_array_equal(optimum.get_ydata(), [3.0, 3.0])


def test_suboptimality_is_measured_against_the_certified_lower_bound(figures):
    assert report.plot_suboptimality([_run("softmax", [0.1], [1.0])], "unused.png") is None
    row = _run("convex", [0.01, 0.1, 1.0], [8.0, 4.0, 3.5], optimum=3.5, gap=0.5)
    report.plot_suboptimality([row], "unused.png")
    (line,) = figures[0].axes[0].get_lines()
    bound = 3.5 - 0.5
    np.testing.assert_allclose(line.get_ydata(), (np.array([8.0, 4.0, 3.5]) - bound) / bound)
    assert figures[0].axes[0].get_xscale() == figures[0].axes[0].get_yscale() == "log"


def test_the_metric_plot_zooms_in_and_writes_the_values(figures):
    rows = [_run("a", [1.0], [1.0]) | {"test_metric": 0.95}, _run("b", [1.0], [1.0])]
    rows[1] |= {"test_metric": 0.96}
    report.plot_metric(rows, "unused.png")
    ax = figures[0].axes[0]
    low, high = ax.get_xlim()
    assert 0.9 < low < 0.95 and 0.96 < high < 1.0  # a 0.01 difference spans the axis
    assert {t.get_text() for t in ax.texts} == {"0.9500", "0.9600"}
