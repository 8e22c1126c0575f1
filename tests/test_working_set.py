"""Working sets on the families P1-P3: their data restrictions for working-set FISTA, checked against the
full programs (same predictions on embedded points, same certified optimum)."""

import numpy as np
import pytest
from sklearn.base import clone

import convextx as cx
import solvers
from solvers.screening import gap_safe_screen, group_operator_norms
from solvers.working_set import check_restriction

N, n, d = 40, 24, 3


def _data(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    signal = X[:, 1] @ rng.standard_normal(d) + np.maximum(X[:, 4] @ rng.standard_normal(d), 0)
    if kind == "vector":
        return X, np.stack([signal, -signal + 0.3 * rng.standard_normal(N)], axis=1)
    return X, signal + 0.1 * rng.standard_normal(N)


CASES = [("scalar", None), ("vector", None), ("gated", 8)]


@pytest.mark.parametrize(("kind", "gates"), CASES)
def test_restrictions_match_the_full_program(kind, gates):
    X, y = _data(kind)
    program = cx.convex_program(X, y, kind=kind, beta=0.5, gates=gates)
    restrict = program.family.restriction(program)
    penalty = program.problem.penalty
    groups = penalty.group_indices(program.shape)
    group_of = np.empty(program.problem.size, dtype=int)
    group_of[groups] = np.arange(groups.shape[0])[:, None]
    rng = np.random.default_rng(1)
    for size in (1, 3, groups.shape[0]):
        chosen = np.sort(rng.choice(groups.shape[0], size=size, replace=False))
        # Raises unless whole groups are kept, every chosen one included, and the restricted
        # map and penalty equal the full ones on embedded points.
        sub, index = check_restriction(
            program.problem, restrict(chosen), chosen, group_of, groups.shape[1]
        )
        assert sub.size <= program.problem.size


@pytest.mark.parametrize(("kind", "gates"), CASES)
def test_operator_norm_bounds_bound_the_exact_norms(kind, gates):
    X, y = _data(kind)
    program = cx.convex_program(X, y, kind=kind, beta=0.5, gates=gates)
    bounds = program.family.operator_norm_bounds(program)
    exact = group_operator_norms(program.problem)
    assert bounds.shape == exact.shape
    assert np.all(bounds >= exact * (1 - 1e-12))
    # Each group is a block of d columns: its Frobenius norm is at most sqrt(d) x spectral.
    assert np.all(bounds <= np.sqrt(d) * exact * (1 + 1e-12))


@pytest.mark.parametrize("indexing", ["host", "compiled"])
@pytest.mark.parametrize(("kind", "gates"), CASES)
def test_working_set_solve_reaches_the_plain_optimum(kind, gates, indexing, monkeypatch):
    """On the CPU the working sets gather, embed and find supports in numpy ("host"); the
    compiled route an accelerator takes is forced here ("compiled") and must agree."""
    if indexing == "compiled":
        monkeypatch.setattr(solvers.working_set, "_host_view", lambda x: None)
    X, y = _data(kind)
    program = cx.convex_program(X, y, kind=kind, beta=1.0, gates=gates)
    program = program.with_beta(0.3 * solvers.beta_max(program.problem))
    plain = program.solve(tol=1e-9, max_iter=50_000)
    ws = program.solve(method="working_set", tol=1e-9, max_iter=50_000, initial_size=4)
    assert plain.optimal and ws.optimal and ws.method == "fista/working_set"
    assert ws.objective == pytest.approx(plain.objective, rel=1e-8)
    # The certificate is the full program's: recomputed independently at ws.x, and never
    # below the plain solve's certified lower bound.
    cert = solvers.duality_gap(program.problem, ws.x)
    assert float(cert.primal) == pytest.approx(ws.objective, rel=1e-12)
    assert 0 <= float(cert.gap) <= 1e-6 * max(1.0, abs(ws.objective))
    assert ws.objective >= plain.dual and plain.objective >= ws.dual
    # The working sets stayed below the full set of groups on this sparse solution.
    groups = program.problem.penalty.group_indices(program.shape).shape[0]
    assert max(ws.history["working_set"]) < groups
    # Groups the gap-safe rule screens out are zero in both solutions.
    screen = gap_safe_screen(program.problem, ws.x, program.family.operator_norm_bounds(program))
    norms = np.asarray(program.problem.penalty.group_norms(plain.x))
    assert screen.inactive.any() and np.all(norms[screen.inactive] == 0)


def test_estimator_working_set_matches_plain_fista():
    X, y = _data("vector")
    plain = cx.ConvexAttention(kind="vector", beta=2.0, tol=1e-9).fit(X, y)
    ws = clone(plain).set_params(solver="working_set").fit(X, y)
    assert ws.solve_result_.method == "fista/working_set" and ws.status_ == "optimal"
    assert ws.objective_ == pytest.approx(plain.objective_, rel=1e-8)
    np.testing.assert_allclose(ws.predict(X), plain.predict(X), rtol=1e-5, atol=1e-6)
    assert set(ws.active_tokens_) == set(plain.active_tokens_)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "sequence"}, "kind in"),
        ({"kind": "vector", "solver": "cvxpy"}, "solver 'fista'"),
    ],
)
def test_working_set_rejects_what_it_cannot_do(params, message):
    """The deprecated alias working_set=True warns, and refuses what working sets cannot do."""
    X, y = _data("vector")
    if params["kind"] == "sequence":
        y = np.random.default_rng(0).standard_normal((N, n))
    est = cx.ConvexAttention(working_set=True, **params)
    with pytest.raises(ValueError, match=message), pytest.warns(DeprecationWarning):
        est.fit(X, y)
    program = cx.convex_program(X, y, kind=params["kind"], beta=1.0)
    if params["kind"] == "sequence":
        with (
            pytest.raises(ValueError, match="group-lasso program"),
            pytest.warns(DeprecationWarning),
        ):
            program.solve(working_set=True)
        with pytest.raises(ValueError, match="group-lasso program"):
            program.solve(method="working_set")
        with pytest.raises(ValueError, match="group-lasso program"):
            cx.ConvexAttention(kind="sequence", solver="working_set").fit(X, y)
    else:
        with pytest.raises(ValueError, match="method 'fista'"), pytest.warns(DeprecationWarning):
            program.solve(method="cvxpy", working_set=True)
