"""experiments.bench_solvers runs end to end at micro size: JSON, Markdown, plot, verdicts."""

import json

from experiments import bench_solvers
from experiments._bench_report import FISTA_METHODS, targets, verdict_lines


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
    assert set(out["targets"]) == {"T1", "T2", "T3", "T4", "T5"}
    again = bench_solvers.main(  # resume: every row is already there, nothing is re-measured
        ["--micro", "--suites", "epsilon", "--out", str(tmp_path), "--no-progress", "--no-plots"]
    )
    assert again["store"]["rows"].keys() == rows.keys()


def _t1_rows(plain_cold, ws_cold, clarabel_solver_s):
    fista = {"target": "T1", "seconds_plain_cold": plain_cold, "seconds_plain_warm": 0.5}
    fista |= {"seconds_working_set_cold": ws_cold, "seconds_working_set_warm": 0.25}
    clarabel = {"target": "T1", "runs": [], "timed_out": False, "timeout_s": 600.0}
    clarabel |= {"t_1e-06": clarabel_solver_s + 10.0, "t_solver_1e-06": clarabel_solver_s}
    return {"rows": {"a": fista, "b": clarabel}}


def test_t1_verdict_takes_the_faster_solver_compile_included():
    holds = targets(_t1_rows(plain_cold=2.0, ws_cold=1.0, clarabel_solver_s=250.0))["T1"]
    assert holds["verdict"] == "holds" and holds["ratio"] == 250.0
    assert holds["ratio_warm"] == 1000.0  # over the faster warm solve (working sets here)
    fails = targets(_t1_rows(plain_cold=2.0, ws_cold=3.0, clarabel_solver_s=250.0))["T1"]
    assert fails["verdict"] == "fails" and fails["ratio"] == 125.0


def test_gpu_target_is_a_working_set_solve_and_says_when_it_did_not_run(tmp_path):
    # micro mode runs T5's code path on a tiny problem on the CPU; other modes only on a GPU.
    out = bench_solvers.main(
        ["--micro", "--suites", "targets", "--out", str(tmp_path), "--no-progress", "--no-plots"]
    )
    t5 = out["targets"]["T5"]
    assert t5["verdict"] == "holds" and t5["relative_gap"] <= 1e-4 and t5["seconds_warm"] > 0
    assert "T5 [HOLDS]" in verdict_lines(out["targets"])
    empty = targets({"rows": {}})["T5"]
    assert empty["verdict"].startswith("not measured")
