"""experiments.bench_keel: the KEEL problems are the peers' setting (their optimum checked by
cvxpy), the performance profile and its verdict, one warm runner serving several problems.

The end-to-end run with every peer is slow (``pytest -m slow tests/test_bench_keel.py``); the
default tests run this package's own runner only.
"""

import argparse
import math

import cvxpy as cp
import numpy as np
import pytest

from experiments import bench_keel, bench_peers


def test_performance_profile_counts_the_problems_within_tau_of_the_fastest():
    times = [
        {"a": 1.0, "b": 2.0},
        {"a": 3.0, "b": 1.0},
        {"a": None, "b": 5.0},
        {"a": None, "b": None},  # solved by no one: left out
    ]
    profile = bench_keel.performance_profile(times, np.array([1.0, 2.0, 3.0, 100.0]))
    np.testing.assert_allclose(profile["a"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(profile["b"], [2 / 3, 1.0, 1.0, 1.0])


def test_the_package_line_is_its_fastest_method_and_decides_p3():
    line = bench_keel.with_package_line({"fista": 0.3, "working_set": 0.2, "celer": 0.25})
    assert line["convextx"] == 0.2
    assert bench_keel.with_package_line({"fista": None, "celer": 1.0})["convextx"] is None
    first = [{"seconds": {"fista": 1.0, "celer": 2.0}, "variables": 5000} for _ in range(9)]
    last = [{"seconds": {"fista": 3.0, "celer": 2.0}, "variables": 100}]
    summary = bench_keel.summarize(first + last)
    assert summary["P3"]["verdict"] == "holds"  # 9 of 10 first
    assert summary["package_first_by_size"] == {
        "< 1e+03 variables": {"problems": 1, "share_first": 0.0},
        ">= 1e+03 variables": {"problems": 9, "share_first": 1.0},
    }
    assert bench_keel.summarize(first[:8] + 2 * last)["P3"]["verdict"] == "fails"  # 8 of 10


def test_datasets_are_spread_over_the_size_ranking():
    everything = bench_keel.datasets(2000, None, seed=0)
    spread = bench_keel.datasets(2000, 5, seed=0)
    assert len(spread) == 5 and spread[0] == everything[0] and spread[-1] == everything[-1]
    assert [everything.index(n) for n in spread] == sorted(everything.index(n) for n in spread)


def test_a_keel_problem_has_the_optimum_of_the_peers_formulation_by_cvxpy():
    program, instance = bench_keel.build(bench_keel.Problem("iris", 0.1), gates=8, seed=0)
    assert set(np.unique(instance.y)) == {-1.0, 1.0} and instance.N == 120
    ref = bench_peers.reference(program)
    w = cp.Variable(instance.P * instance.d)
    groups = cp.reshape(w, (instance.P, instance.d), order="C")
    peers = cp.sum_squares(instance.y - instance.design() @ w) / (2 * instance.N)
    peers += instance.peer_lambda * cp.sum(cp.norm(groups, 2, axis=1))
    value = cp.Problem(cp.Minimize(peers)).solve(solver="CLARABEL")
    assert math.isclose(value * instance.N, ref["objective"], rel_tol=1e-6)


def test_one_runner_times_two_problems_to_the_target(tmp_path):
    args = argparse.Namespace(gates=8, seed=0, reference_seconds=10.0, repeats=2)
    pool = bench_keel.Pool(["fista"], tmp_path, bench_peers.ADELIE_DEFAULT, timeout=120)
    try:
        records = [
            bench_keel.time_problem(bench_keel.Problem(name, 0.1), args, pool)
            for name in ("iris", "hayes-roth")
        ]
    finally:
        pool.close()
    for record in records:
        row = record["runs"]["fista"][-1]
        assert row["subopt"] <= bench_keel.TARGET_EPS and len(row["seconds"]) == 2
        assert record["seconds"]["fista"] == np.median(row["seconds"])
        assert record["optimum_bound"] <= 2 * bench_keel.REFERENCE_TOL  # the reference certifies F*
    summary = bench_keel.summarize(records)
    assert summary["P3"]["verdict"] == "holds" and summary["shares"]["fista"]["within 1x"] == 1


@pytest.mark.slow
def test_quick_profile_end_to_end_with_every_peer(tmp_path):
    out = tmp_path / "keel.json"
    results = bench_keel.main(["--quick", "--out", str(out)])
    assert out.exists() and out.with_suffix(".md").exists() and out.with_suffix(".png").exists()
    assert results["summary"]["problems"] == len(bench_keel.QUICK_SETS)
    assert not results["skipped"], results["skipped"]
