"""experiments/gpu_run.sh: the GPU suite's plan, its smoke run on the CPU, and its refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import gpu_suite
from experiments._bench_plans import TARGET_T5, make_plan

ROOT = Path(__file__).parents[1]


def test_the_gpu_plan_holds_t5_and_the_ladder_without_cvxpy():
    plan = make_plan("gpu")
    assert plan.t5 == TARGET_T5 and TARGET_T5.variables == 10**8
    assert plan.t1 is None and plan.t2 is None  # T1's Clarabel run needs cvxpy
    rows = plan.epsilon
    assert not any(row.cvxpy for row in rows)
    assert max(row.spec.variables for row in rows) == 10**7
    tokens = [row.spec for row in rows if row.spec.n >= 8]
    assert tokens and max(s.variables for s in tokens) >= 10**6
    assert all(row.plain == (row.spec.variables <= 10**6) for row in rows)


def test_the_steps_fit_eight_minutes():
    assert sum(step.seconds for step in gpu_suite.STEPS) <= 7.5 * 60


def test_smoke_run_of_the_shell_script(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run(
        ["bash", str(ROOT / "experiments" / "gpu_run.sh"), str(out), "--smoke"],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, PYTHON=sys.executable),  # the script's default is python3
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "gpu_run.json").read_text())
    assert summary["smoke"] and summary["machine"]["backend"] == "cpu"
    statuses = {row["step"]: row["status"] for row in summary["steps"]}
    assert statuses == {
        "gpu-targets": "ok",
        "gpu-epsilon": "ok",
        "gpu-dtype": "ok",
        "cpu-epsilon": "ok",
        "gpu-sharded": "skipped",  # one device
    }
    rows = json.loads((out / "gpu" / "bench_solvers.json").read_text())["rows"]
    t5 = [row for key, row in rows.items() if key.startswith("targets|T5")]
    assert len(t5) == 1 and t5[0]["target"] == "T5"
    assert any(key.startswith("dtype|") for key in rows)
    assert any(key.startswith("epsilon|") for key in rows)
    cpu_rows = json.loads((out / "cpu" / "bench_solvers.json").read_text())["rows"]
    assert any(key.startswith("epsilon|") for key in cpu_rows)
    assert summary["targets"]["T5"]["verdict"] in ("holds", "fails")  # measured


def test_an_earlier_run_is_kept_without_force(tmp_path):
    (tmp_path / "gpu_run.json").write_text("{}")
    with pytest.raises(SystemExit, match="--force"):
        gpu_suite.main(["--out", str(tmp_path), "--smoke"])
    assert (tmp_path / "gpu_run.json").read_text() == "{}"


def test_no_gpu_is_a_clear_refusal(tmp_path):
    with pytest.raises(SystemExit, match="no GPU visible to JAX"):
        gpu_suite.main(["--out", str(tmp_path)])
    assert not (tmp_path / "gpu_run.json").exists()


def test_a_stopped_step_reports_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "SMOKE_SECONDS", 0.01)
    step = gpu_suite.Step("gpu-dtype", "gpu", ("dtype",), 1.0)
    row = gpu_suite.run_step(step, tmp_path, gpu_suite.environment(), smoke=True, fresh=True)
    assert row["status"] == "time_limit" and row["limit_s"] == 0.01
