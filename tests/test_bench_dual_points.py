"""experiments.bench_dual_points: every dual point it compares is a valid certificate (its gap
never below the true suboptimality against an independent optimum), and it writes its JSON."""

import math

from experiments import bench_dual_points


def test_each_dual_point_bounds_the_true_error_where_it_certifies(tmp_path):
    out = tmp_path / "dual.json"
    results = bench_dual_points.main(["--quick", "--out", str(out)])
    assert out.exists()
    size = results["sizes"]["2e3"]
    rows = size["certified_1e-6"]
    assert set(rows) == {"y", "x", "polish", *(f"extrapolated {k}" for k in (5, 10))}
    for name, row in rows.items():
        assert row["gap"] <= bench_dual_points.TOL, name
        # a certificate: the gap bounds the true error (rounding aside)
        assert row["gap"] >= row["subopt"] - 1e-12, (name, row)
        assert math.isfinite(row["overstatement"])
    # the true error reaches 1e-6 no later than any certificate can say so
    assert size["true_1e-6_at"] <= min(r["iteration"] for n, r in rows.items() if n != "polish")
