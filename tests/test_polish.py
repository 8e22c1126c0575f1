"""Newton polish on the support (solvers.polish): certified to rounding, never a false claim."""

import numpy as np
import pytest

import convextx as cx
import solvers
from solvers.polish import SupportWatch, polish, support

N, n, d, c = 40, 5, 3, 3


def program(kind="vector", loss="cross_entropy", seed=0, fraction=0.2, **kw):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    y = rng.integers(0, c, N) if loss == "cross_entropy" else rng.standard_normal((N, c))
    if kind == "sequence":
        y = rng.integers(0, c, (N, n))
    probe = cx.convex_program(X, y, kind, 1.0, loss, **kw)
    return probe.with_beta(fraction * solvers.beta_max(probe.problem))


@pytest.mark.parametrize(("kind", "loss"), [("vector", "cross_entropy"), ("vector", "squared")])
@pytest.mark.parametrize("seed", [0, 1])
def test_polish_certifies_the_cvxpy_optimum_in_fewer_iterations(kind, loss, seed):
    prog = program(kind, loss, seed)
    plain = prog.solve(tol=1e-10, max_iter=50_000)
    polished = prog.solve(tol=1e-10, max_iter=50_000, polish=True)
    exact = prog.solve(method="cvxpy", tol=1e-9)
    assert polished.status == "optimal" and polished.method == "fista+newton"
    assert polished.objective == pytest.approx(exact.objective, rel=1e-9)
    assert polished.objective <= plain.objective + 1e-12 * abs(plain.objective)
    assert polished.relative_gap <= 1e-12
    assert polished.iterations < plain.iterations
    np.testing.assert_array_equal(support(prog.problem, polished.x), support(prog.problem, plain.x))


def test_a_wrong_support_is_never_claimed():
    prog = program(fraction=0.5)
    optimum = prog.solve(tol=1e-11, max_iter=50_000)
    x = np.array(optimum.x)
    off = np.flatnonzero(~support(prog.problem, x))[0]  # an inactive group ...
    groups = prog.problem.penalty.group_indices(prog.shape)
    x.ravel()[groups[off]] = 1e-3  # ... made active
    z, cert = polish(prog.problem, x)
    assert cert.gap >= cert.primal - optimum.objective - 1e-12  # honest
    assert cert.gap > 1e-8 * abs(cert.primal)  # and it does not certify the wrong support
    watch = SupportWatch(prog.problem, True, x)
    assert watch.attempt(x, float(prog.problem.objective(x)), 1e-8) is None


@pytest.mark.parametrize(
    ("prog", "value"),
    [
        (lambda: program("sequence"), True),  # StochasticGauge: no smooth support form
        (lambda: program(dtype="float32"), True),
        (lambda: program(), "yes"),
        (lambda: program(), None),
    ],
)
def test_polish_refuses_what_it_cannot_do(prog, value):
    with pytest.raises(TypeError, match="polish"):
        prog().solve(polish=value)


def test_a_warm_start_on_the_right_support_is_certified_by_the_predictor_alone():
    prog = program(fraction=0.3)
    previous = prog.solve(tol=1e-11, max_iter=50_000)
    nearby = prog.with_beta(0.999 * prog.beta)
    exact = nearby.solve(method="cvxpy", tol=1e-9)
    warm = nearby.solve(tol=1e-10, max_iter=50_000, polish=True, x0=previous.x)
    np.testing.assert_array_equal(
        support(nearby.problem, warm.x), support(prog.problem, previous.x)
    )
    assert warm.status == "optimal" and warm.method == "fista+newton"
    assert warm.iterations == 0  # Newton on the previous support at the new beta certified it
    assert warm.objective == pytest.approx(exact.objective, rel=1e-9)


def test_a_warm_start_on_a_wrong_support_still_reaches_the_optimum():
    prog = program(fraction=0.5)
    optimum = prog.solve(tol=1e-11, max_iter=50_000)
    x = np.array(optimum.x)
    off = np.flatnonzero(~support(prog.problem, x))[0]
    x.ravel()[prog.problem.penalty.group_indices(prog.shape)[off]] = 1e-2
    warm = prog.solve(tol=1e-10, max_iter=50_000, polish=True, x0=x)
    assert warm.status == "optimal" and warm.iterations > 0  # the predictor did not claim it
    assert warm.objective == pytest.approx(optimum.objective, rel=1e-9)
    np.testing.assert_array_equal(support(prog.problem, warm.x), support(prog.problem, optimum.x))


def test_a_path_polishes_by_default_where_it_can_and_only_there():
    prog = program()
    top = solvers.beta_max(prog.problem)
    betas = np.geomspace(top, 0.1 * top, 4)
    auto = solvers.regularization_path(prog.problem, betas, tol=1e-9, max_iter=50_000)
    plain = solvers.regularization_path(
        prog.problem, betas, tol=1e-9, max_iter=50_000, polish=False
    )
    assert any(r.method == "fista+newton" for r in auto.results)
    assert all(r.method == "fista" for r in plain.results)
    np.testing.assert_allclose(auto.objectives, plain.objectives, rtol=1e-8)
    assert sum(r.iterations for r in auto.results) < sum(r.iterations for r in plain.results)
    f32 = program(dtype="float32")
    assert all(
        r.method == "fista"
        for r in solvers.regularization_path(f32.problem, num=3, tol=1e-4, max_iter=5000).results
    )
    with pytest.raises(ValueError, match="polish applies to methods"):
        solvers.regularization_path(prog.problem, betas, method="cvxpy", polish=True)
