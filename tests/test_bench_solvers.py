"""experiments.bench_solvers runs end to end at micro size: JSON, Markdown, plot, verdicts."""

import json

from experiments import bench_solvers


def test_bench_solvers_micro_end_to_end(tmp_path):
    out = bench_solvers.main(
        ["--micro", "--suites", "epsilon", "--out", str(tmp_path), "--no-progress"]
    )
    rows = json.loads((tmp_path / "bench_solvers.json").read_text())["rows"]
    methods = {row["method"] for row in rows.values()}
    assert {"fista", "cvxpy/CLARABEL", "cvxpy/SCS", "adam", "sgd"} <= methods
    fista = next(row for row in rows.values() if row["method"] == "fista")
    assert fista["status"] == "optimal" and fista["t_1e-08"] is not None
    assert "Time to relative gap" in (tmp_path / "bench_solvers.md").read_text()
    assert (tmp_path / "bench_solvers_epsilon.png").stat().st_size > 0
    assert set(out["targets"]) == {"T1", "T2", "T3", "T4"}
    again = bench_solvers.main(  # resume: every row is already there, nothing is re-measured
        ["--micro", "--suites", "epsilon", "--out", str(tmp_path), "--no-progress", "--no-plots"]
    )
    assert again["store"]["rows"].keys() == rows.keys()
