"""experiments.bench_solvers runs end to end at micro size: JSON, Markdown, plot, verdicts."""

import json

from experiments import bench_solvers
from experiments._bench_report import FISTA_METHODS


def test_bench_solvers_micro_end_to_end(tmp_path):
    out = bench_solvers.main(
        ["--micro", "--suites", "epsilon", "--out", str(tmp_path), "--no-progress"]
    )
    rows = json.loads((tmp_path / "bench_solvers.json").read_text())["rows"]
    methods = {row["method"] for row in rows.values()}
    assert {"fista", "fista/working_set", "cvxpy/CLARABEL", "cvxpy/SCS", "adam", "sgd"} <= methods
    fista, ws = (next(r for r in rows.values() if r["method"] == m) for m in FISTA_METHODS)
    for row in (fista, ws):
        assert row["status"] == "optimal" and row["t_1e-08"] is not None
        assert row["t_1e-04"] <= row["t_1e-06"] <= row["t_1e-08"] <= row["seconds_warm"]
        assert row["t_cold_1e-08"] == row["t_1e-08"] + row["compile_s"]
    assert ws["objective"] <= fista["objective"] + 1e-8 * max(1.0, abs(fista["objective"]))
    assert fista["objective"] <= ws["objective"] + 1e-8 * max(1.0, abs(ws["objective"]))
    markdown = (tmp_path / "bench_solvers.md").read_text()
    assert "Time to relative gap" in markdown and "FISTA WS warm" in markdown
    assert (tmp_path / "bench_solvers_epsilon.png").stat().st_size > 0
    assert set(out["targets"]) == {"T1", "T2", "T3", "T4"}
    again = bench_solvers.main(  # resume: every row is already there, nothing is re-measured
        ["--micro", "--suites", "epsilon", "--out", str(tmp_path), "--no-progress", "--no-plots"]
    )
    assert again["store"]["rows"].keys() == rows.keys()
