"""experiments.bench_linear: every contestant re-scored against one reference optimum."""

import pytest

from experiments import bench_linear


def test_every_solver_reaches_the_true_target_and_the_scores_are_honest():
    row = bench_linear.small_instance(32, 4, 3, 2, "cross_entropy", repeats=1)
    for solver in ("fista", "scs", "clarabel"):
        assert row[solver]["tol"] is not None, solver
        assert -1e-12 <= row[solver]["suboptimality"] <= 1e-6  # F* is a true optimum
    assert row["fista_certified"]["status"] == "optimal"
    assert row["reference_gap"] <= 1e-11


def test_true_suboptimality_is_measured_against_the_reference():
    prog = bench_linear.program(32, 4, 3, 2, "squared")
    optimum = prog.solve(tol=1e-11, max_iter=100_000).objective
    assert bench_linear.true_suboptimality(prog, prog.problem.zeros(), optimum) > 0.1
    rough = prog.solve(tol=1e-2, max_iter=100_000)
    assert bench_linear.true_suboptimality(prog, rough.x, optimum) == pytest.approx(
        (rough.objective - optimum) / optimum
    )


def test_the_d_ladder_stops_at_the_first_slow_or_failed_solve():
    rows = bench_linear.largest_d([4, 6], limit=1e-9)  # nothing certifies within 1e-9 s
    assert len(rows) == 1 and "warm_seconds" not in rows[0]
