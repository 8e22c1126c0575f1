"""experiments.bench_peers: the loss scaling and lambda mapping between this package and the
peers give the same optimum, the re-scoring and the selection of the fastest run, the runner.

The default tests need none of the peers: the mapping is checked against the peers' own
formulation solved by cvxpy. The tests marked slow run each peer (and fail, saying how to
install it, when it is missing): ``pytest -m slow tests/test_bench_peers.py``.
"""

import math
import sys
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

from experiments import _peers, bench_peers
from experiments._peers import CONTESTANTS, PEERS

TINY = bench_peers.Size(N=60, d=3, P=8)


@pytest.fixture(scope="module", params=["squared", "logistic"])
def tiny(request):
    """(program, instance, reference) of a tiny instance, for each loss."""
    program, instance = bench_peers.make_instance(TINY, request.param, 0.1, seed=1)
    return program, instance, bench_peers.reference(program)


def _peer_objective(instance: _peers.Instance, weights: np.ndarray) -> float:
    """The peers' objective: the MEAN loss plus lam sum_j |W_j|_2 (numpy)."""
    pred = instance.design() @ weights.ravel()
    if instance.loss == "squared":
        loss = 0.5 * np.mean((instance.y - pred) ** 2)
    else:
        loss = np.mean(np.logaddexp(0.0, -instance.y * pred))
    return loss + instance.peer_lambda * np.linalg.norm(weights, axis=1).sum()


def test_peer_objective_is_this_packages_over_n_at_any_point(tiny):
    program, instance, _ = tiny
    for seed in range(3):
        weights = np.random.default_rng(seed).standard_normal((instance.P, instance.d))
        ours = bench_peers.objective(program, weights)
        assert math.isclose(_peer_objective(instance, weights), ours / instance.N, rel_tol=1e-12)


def test_the_peers_formulation_solved_by_cvxpy_has_the_reference_optimum(tiny):
    program, instance, ref = tiny
    assert ref["status"] == "optimal" and ref["relative_gap"] <= 1e-10
    w = cp.Variable(instance.P * instance.d)
    pred = instance.design() @ w
    if instance.loss == "squared":
        loss = cp.sum_squares(instance.y - pred) / (2 * instance.N)
    else:
        loss = cp.sum(cp.logistic(-cp.multiply(instance.y, pred))) / instance.N
    groups = cp.reshape(w, (instance.P, instance.d), order="C")
    penalty = instance.peer_lambda * cp.sum(cp.norm(groups, 2, axis=1))
    cp.Problem(cp.Minimize(loss + penalty)).solve(solver="CLARABEL")
    weights = np.asarray(w.value).reshape(instance.P, instance.d)
    value = bench_peers.objective(program, weights)  # re-scored by this package
    assert 0 <= bench_peers.suboptimality(value, ref["objective"]) <= 1e-6
    assert math.isclose(value / instance.N, _peer_objective(instance, weights), rel_tol=1e-12)


def test_instance_round_trips_and_its_design_is_the_programs_dense_matrix(tiny, tmp_path):
    program, instance, _ = tiny
    loaded = _peers.load_instance(_peers.save_instance(tmp_path / "i.npz", instance))
    assert loaded.loss == instance.loss and loaded.beta == instance.beta
    np.testing.assert_array_equal(loaded.X, instance.X)
    np.testing.assert_array_equal(loaded.gate_vectors, instance.gate_vectors)
    np.testing.assert_array_equal(loaded.design(), program.family.dense_matrix(program))
    assert instance.peer_lambda == instance.beta / instance.N


def test_align_gates_puts_weights_back_by_gate_and_zeros_the_dropped_ones():
    G = np.random.default_rng(0).standard_normal((3, 5))
    kept = [4, 0, 2]  # sorted otherwise, gates 1 and 3 dropped
    weights = np.arange(9.0).reshape(3, 3)
    out = _peers.align_gates(G, G[:, kept], weights)
    np.testing.assert_array_equal(out[kept], weights)
    assert not out[[1, 3]].any()
    with pytest.raises(ValueError, match="none of the instance's gates"):
        _peers.align_gates(G, G[:, :1] + 1.0, weights[:1])


def test_this_packages_runner_solves_cold_and_warm(tiny, tmp_path):
    program, instance, ref = tiny
    path = _peers.save_instance(tmp_path / "i.npz", instance)
    cold = _peers.one(CONTESTANTS["fista"], instance, 1e-8, str(tmp_path / "w.npy"))
    assert cold["total_s"] >= cold["import_s"] + cold["setup_s"] + cold["solve_s"] - 1e-6
    value = bench_peers.objective(program, np.load(tmp_path / "w.npy"))
    assert bench_peers.suboptimality(value, ref["objective"]) <= 1e-8
    if instance.loss == "logistic":
        return  # the process round trip once is enough
    command = bench_peers._command(sys.executable, "fista", path, "--serve")
    worker = bench_peers.Worker(command, bench_peers.environment(), tmp_path / "log", 120)
    try:
        assert worker.wait_ready().get("ready"), worker.ready
        for tol in (1e-4, 1e-8):
            reply = worker.solve(path, tol, tmp_path / "v.npy")
            assert reply["tol"] == tol and reply["info"]["status"] == "optimal", reply
            assert "setup_s" not in reply  # the same instance: set up once
        row = bench_peers.Bench(program, path, tmp_path, ref["objective"], Path("."), 60).score(
            reply, tmp_path / "v.npy"
        )
        assert row["subopt"] <= 1e-8
        # the same process moves on to another problem, set up on request
        other, second = bench_peers.make_instance(TINY, "squared", 0.1, seed=2)
        second_path = _peers.save_instance(tmp_path / "j.npz", second)
        reply = worker.solve(second_path, 1e-8, tmp_path / "v.npy")
        assert reply["setup_s"] > 0 and reply["info"]["status"] == "optimal", reply
        second_ref = bench_peers.reference(other)["objective"]
        value = bench_peers.objective(other, np.load(tmp_path / "v.npy"))
        assert 0 <= bench_peers.suboptimality(value, second_ref) <= 1e-8
    finally:
        worker.close()


def _result(cold_package: float, cold_peer: float, warm_package: float) -> dict:
    """A size's result with a package and a peer, each with a loose and a tight tol."""

    def runs(loose_s: float, tight_s: float) -> list[dict]:
        return [
            {"tol": 1e-3, "median_s": loose_s, "subopt": 1e-5},
            {"tol": 1e-7, "median_s": tight_s, "subopt": 1e-9},
        ]

    return {
        "warm": {
            "fista": {"runs": runs(warm_package, 2 * warm_package)},
            "skglm": {"runs": runs(0.5, 1.0)},
        },
        "cold": {
            "fista": {m: runs(cold_package, 2 * cold_package) for m in bench_peers.CACHE_MODES},
            "skglm": {"cold": runs(cold_peer, 2 * cold_peer)},
        },
    }


def test_fastest_run_per_accuracy_and_the_tols_selected_for_cold_runs():
    result = _result(cold_package=1.0, cold_peer=4.0, warm_package=0.5)
    best = bench_peers.summarize(result)
    assert best["fista"]["warm"]["1e-04"] == {"tol": 1e-3, "median_s": 0.5, "subopt": 1e-5}
    assert best["fista"]["warm"]["1e-06"]["tol"] == 1e-7  # the loose run misses 1e-6
    assert bench_peers.selected_tols(result["warm"]["fista"]["runs"], (1e-4, 1e-6, 1e-8)) == [
        1e-3,
        1e-7,
    ]
    assert bench_peers.fastest([{"tol": 1e-2, "median_s": 0.1, "subopt": 1e-3}], 1e-4) is None


@pytest.mark.parametrize(
    ("cold_package", "cold_peer", "warm_package", "p1", "p2"),
    [(1.0, 4.0, 0.8, "holds", "holds"), (1.0, 2.0, 0.8, "fails", "holds"),
     (2.0, 8.0, 0.8, "holds", "fails")],
)  # fmt: skip
def test_verdicts(cold_package, cold_peer, warm_package, p1, p2):
    result = _result(cold_package, cold_peer, warm_package)
    result["best"] = bench_peers.summarize(result)
    verdicts = bench_peers.verdicts(result)
    for mode in bench_peers.CACHE_MODES:
        assert verdicts[f"P1/{mode}"]["verdict"] == p1
        assert verdicts[f"P1/{mode}"]["ratio"] == pytest.approx(cold_peer / cold_package)
        assert verdicts[f"P2/{mode}"]["verdict"] == p2  # at tol 1e-7: 2 c <= 1.3 (2 w) + 0.3?
    overall = bench_peers.overall({"2e3": {"verdicts": verdicts}})
    assert overall["P1/cold_first"].startswith(p1)
    assert ("--large" in overall["P1/cold_first"]) == (p1 == "holds")  # 1e6 could still fail


# --------------------------------------------------------------------- the peers (slow)

TIGHT = {"skglm": 1e-12, "celer": 1e-12, "pyscnn": 1e-16, "adelie": 1e-16}


@pytest.mark.slow
@pytest.mark.parametrize("name", PEERS)
def test_each_peer_reaches_the_reference_optimum_through_the_mapping(name, tiny, tmp_path):
    program, instance, ref = tiny
    contestant = CONTESTANTS[name]
    reason = bench_peers.missing(contestant, _peers.ADELIE_DEFAULT)
    if reason is not None:
        pytest.fail(f"peer not installed: {reason}")
    if instance.loss not in contestant.losses:
        return  # celer and pyscnn solve the squared loss only
    path = _peers.save_instance(tmp_path / "i.npz", instance)
    python = bench_peers.interpreter(contestant, _peers.ADELIE_DEFAULT)
    command = bench_peers._command(
        python, name, path, "--tol", repr(TIGHT[name]), "--weights", str(tmp_path / "w.npy")
    )
    reply = bench_peers.cold_solve(command, bench_peers.environment(), tmp_path / "log", 300)
    assert "error" not in reply, reply
    value = bench_peers.objective(program, np.load(tmp_path / "w.npy"))
    assert abs(bench_peers.suboptimality(value, ref["objective"])) <= 1e-7


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path):
    out = tmp_path / "bench_peers.json"
    data = bench_peers.main(["--quick", "--contestants", "fista", "celer", "--out", str(out)])
    assert out.exists() and set(data["targets"]) == {
        "P1/cold_first", "P1/cold_cached", "P2/cold_first", "P2/cold_cached"
    }  # fmt: skip
    size = data["sizes"]["2e3"]
    assert size["reference"]["relative_gap"] <= 1e-10
    assert size["best"]["fista"]["warm"]["1e-06"]["subopt"] <= 1e-6
    md = out.with_suffix(".md").read_text()
    fastest = size["best"]["fista"]["warm"]["1e-06"]
    header = next(line for line in md.splitlines() if line.startswith("| contestant"))
    row = next(line for line in md.splitlines() if line.startswith("| fista | warm |"))
    column = [c.strip() for c in header.split("|")].index("<= 1e-06")
    cell = [c.strip() for c in row.split("|")][column]
    assert cell == f"{fastest['median_s']:.3g} s (tol {fastest['tol']:.0e})"
    assert out.with_suffix(".png").stat().st_size > 0
    for key, verdict in data["targets"].items():
        assert f"- {key}: **{verdict}**" in md


def test_a_sweep_ends_at_the_target_an_error_or_a_stall():
    tols = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)

    def rows(*subopts):
        return [{"tol": t, "subopt": s} for t, s in zip(tols, subopts, strict=False)]

    done = bench_peers._sweep_done
    assert done(rows(1e-2, 1e-7), tols, 1e-6)  # reached
    assert done([*rows(1e-2), {"tol": 1e-3, "error": "boom"}], tols, 1e-6)
    assert not done(rows(1e-1, 5e-2, 1e-2), tols, 1e-6)  # improving
    assert done(rows(1e-1, 0.95e-1, 1.4e-1), tols, 1e-6)  # two tols without a 10% gain
    assert not done(rows(1e-1, 0.95e-1, 1e-3), tols, 1e-6)
    assert done(rows(1e-1, 5e-2, 1e-2, 1e-3, 1e-4), tols, 1e-6)  # tols used up
