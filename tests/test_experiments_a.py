"""experiments.student_teacher and experiments.sparsity end to end at tiny size, and _common."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import _common, sparsity, student_teacher


def test_common_cli_sizes_and_json_roundtrip(tmp_path):
    args = _common.parse_args("x", argv=["--quick", "--seed", "3", "4"])
    assert (args.size, args.seeds, args.resume) == ("quick", [3, 4], False)
    assert _common.parse_args("x", argv=[]).size == "default"
    assert _common.out_path(_common.parse_args("x", argv=["--full"]), "a").name == "a_full.json"
    with pytest.raises(SystemExit):
        _common.parse_args("x", argv=["--quick", "--full"])
    with pytest.raises(SystemExit):
        _common.parse_args("x", argv=["--seeds", "1", "1"])
    obj = {"a": np.arange(3), "b": np.float64(np.nan), "c": (np.int32(2), 1.5), 4: np.ones(())}
    path = _common.write_json(tmp_path / "r.json", obj)
    assert _common.read_json(path) == {"a": [0, 1, 2], "b": None, "c": [2, 1.5], "4": 1.0}
    assert _common.read_json(tmp_path / "missing.json") is None


def check_student_teacher(results, path):
    data = json.loads(path.read_text())
    assert data["config"]["size"] == "quick"
    assert data["summary"]["all_nonconvex_above_certified_bound"] is True
    assert data["summary"]["diverged_runs"] == 0
    for unit in data["units"]:
        convex = unit["convex"]
        optimum, bound = convex["objective"], convex["lower_bound"]
        assert convex["status"] == "optimal"
        assert 0 <= optimum - bound <= 1e-9 * abs(optimum)
        # The recovered heads reach p*, and cvxpy agrees (interior point: looser).
        assert convex["recovered_objective"] == pytest.approx(optimum, rel=1e-6)
        assert convex["cvxpy"]["objective"] == pytest.approx(optimum, rel=1e-4)
        assert np.all(np.count_nonzero(np.asarray(convex["attention"]), axis=1) == 1)
        assert convex["attention_entropy"] == 0.0
        methods = {(r["optimizer"], r["parameterization"]) for r in unit["nonconvex"]}
        assert methods == {(o, p) for o in ("adam", "sgd") for p in ("softmax", "projection")}
        for run in unit["nonconvex"]:
            # The certificate: no nonconvex objective below p* (up to float rounding).
            tol = 1e-6 * max(1.0, abs(bound))
            assert run["objective"] >= bound - tol
            assert min(run["curve"]["objective"]) >= bound - tol
            assert run["relative_suboptimality"] >= -1e-6
            assert {"time_to_threshold", "steps_to_threshold", "test_error"} <= set(run)
            assert len(run["curve"]["step"]) == len(run["curve"]["objective"])
        assert all(run["test_error"] >= 0 for run in unit["softmax_attention"])
        assert unit["path"]["records"][0]["active_tokens"] == 0  # beta_max: the zero solution
    assert all(p.endswith(".png") for p in results["plots"])
    assert all(Path(p).exists() for p in results["plots"])


def test_student_teacher_quick_classification(tmp_path):
    """Cross-entropy (P2): the case the equivalence was least sure of."""
    path = tmp_path / "st.json"
    argv = ["--quick", "--teachers", "convex", "--problems", "classification"]
    argv += ["--softmax-restarts", "0"]  # the transformer (slow to compile): in the slow test
    results = student_teacher.main([*argv, "--out", str(path), "--no-progress"])
    check_student_teacher(results, path)
    # --resume with the same settings finds every unit done.
    again = student_teacher.main([*argv, "--out", str(path), "--no-progress", "--resume"])
    assert [u["key"] for u in again["units"]] == [u["key"] for u in results["units"]]


@pytest.mark.slow
def test_student_teacher_quick_all_settings(tmp_path):
    path = tmp_path / "st.json"
    results = student_teacher.main(["--quick", "--out", str(path), "--no-progress"])
    assert len(results["units"]) == 4
    assert all(len(unit["softmax_attention"]) == 1 for unit in results["units"])
    check_student_teacher(results, path)


def test_sparsity_quick(tmp_path):
    path = tmp_path / "sp.json"
    results = sparsity.main(["--quick", "--out", str(path), "--no-progress"])
    data = json.loads(path.read_text())
    assert (
        data["summary"]["scalar"]["all_within_bound"]
        and data["summary"]["vector"]["all_within_bound"]
    )
    n = data["config"]["n"]
    for r in data["records"]:
        assert r["bound"] == min(n, r["N"] + 1)
        assert r["reduced_tokens_per_output"] <= r["bound"]
        assert r["heads"] <= r["heads_bound"]
        assert r["reduced_tokens"] <= r["active_tokens"]  # reduction never adds tokens
        assert r["reduced_tokens_per_output"] <= r["active_tokens_per_output"]
        assert r["relative_gap"] <= 1e-8
    sweeps = {(r["sweep"], r["kind"]) for r in data["records"]}
    assert sweeps == {(s, k) for s in ("beta", "N", "N_duplicated") for k in ("scalar", "vector")}
    # Duplicated tokens: the solver's optimum spreads over copies; the reduction removes some.
    assert (
        sum(
            data["summary"][k]["reduction_removed_tokens"]["N_duplicated"]
            for k in ("scalar", "vector")
        )
        > 0
    )
    # Largest beta on the path: beta_max, no active token; smallest N: the bound N + 1 binds.
    assert min(r["active_tokens"] for r in data["records"] if r["sweep"] == "beta") == 0
    assert results["plot"].endswith(".png")
