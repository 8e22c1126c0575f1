"""solvers.screening and solvers.working_set: gap-safe rules never discard an active group; working sets reach the
full problem's optimum and only ever claim optimality from the full certificate."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import solvers
from solvers.screening import gap_safe_screen, group_operator_norms
from solvers.working_set import Restriction, restrict_groups


def solve_working_set(problem, restrict=None, **options):
    """The "working_set" method of ``solvers.solve``."""
    return solvers.solve(problem, method="working_set", restrict=restrict, **options)


N, n, d, c = 40, 6, 3, 2


def tokens_predict(X, Z):
    """(N, n, d) x (c, n, d) -> (N, c)."""
    return jnp.einsum("ikq,lkq->il", X, Z)


def make_problem(loss_name="squared", nonneg=False, ratio=0.4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    if loss_name == "squared":
        loss = solvers.SquaredLoss(
            X[:, 0, :c] - 0.5 * X[:, 1, :c] + 0.1 * rng.standard_normal((N, c))
        )
    else:
        loss = solvers.SoftmaxCrossEntropy(rng.integers(0, c, N))
    penalty = solvers.GroupL2(1.0, axis=-1, nonneg=nonneg)
    problem = solvers.Problem(Partial(tokens_predict, X), (c, n, d), loss, penalty)
    return problem.with_beta(ratio * solvers.beta_max(problem)), X


@pytest.mark.parametrize(("loss_name", "nonneg"), [("squared", False), ("cross_entropy", True)])
def test_gap_safe_screening_never_discards_an_active_group(loss_name, nonneg):
    problem, _ = make_problem(loss_name, nonneg)
    exact = solvers.solve(problem, tol=1e-12, max_iter=50_000)
    active = np.asarray(problem.penalty.group_norms(exact.x)) > 1e-9
    assert active.any() and not active.all()
    norms = group_operator_norms(problem)
    for iterations in (1, 5, 20):  # rough points: large gaps, few groups certified
        rough = solvers.solve(problem, tol=1e-30, max_iter=iterations)
        screen = gap_safe_screen(problem, rough.x, norms)
        assert not np.any(screen.inactive & active)
    at_optimum = gap_safe_screen(problem, exact.x, norms)
    assert not np.any(at_optimum.inactive & active)
    assert np.array_equal(at_optimum.inactive, ~active)  # tiny gap: every zero group certified


def test_working_set_reaches_the_certified_optimum():
    problem, _ = make_problem()
    plain = solvers.solve(problem, tol=1e-10, max_iter=50_000)
    ws = solve_working_set(
        problem, tol=1e-10, initial_size=2, operator_norms=group_operator_norms(problem)
    )
    assert ws.status == "optimal" and ws.method == "fista/working_set"
    assert ws.objective == pytest.approx(plain.objective, rel=1e-9)
    full = solvers.duality_gap(problem, ws.x)  # the reported numbers are the full problem's
    assert float(full.primal) == pytest.approx(ws.objective, rel=1e-12)
    assert ws.dual <= plain.objective + 1e-9
    assert ws.history["working_set"][1:].min() < problem.size // d  # some rounds were restricted
    seconds, inner = ws.history["seconds"], ws.history["inner_seconds"]
    assert np.all(np.diff(seconds) > 0) and seconds[-1] <= ws.seconds  # wall time per round
    assert np.all(inner <= seconds) and np.all(np.diff(inner) >= 0)


def slicing_restriction(problem, X, calls=None):
    """Restriction keeping the data of the tokens the groups touch (all c outputs of each);
    records each request's groups in ``calls``."""
    flat = np.arange(problem.size).reshape(problem.shape)

    def restrict(groups):
        if calls is not None:
            calls.append(np.asarray(groups))
        tokens = np.unique(np.unravel_index(groups, (c, n))[1])
        sub = solvers.Problem(
            Partial(tokens_predict, X[:, tokens]),
            (c, tokens.size, d),
            problem.loss,
            problem.penalty,
            check_linear=False,
        )
        return Restriction(sub, flat[:, tokens])

    return restrict


def test_a_data_slicing_restriction_gives_the_same_optimum():
    problem, X = make_problem()
    ws = solve_working_set(problem, slicing_restriction(problem, X), tol=1e-10, initial_size=2)
    plain = solvers.solve(problem, tol=1e-10, max_iter=50_000)
    assert ws.status == "optimal"
    assert ws.objective == pytest.approx(plain.objective, rel=1e-9)


def test_certificates_shrink_to_the_screening_survivors_and_stay_valid():
    problem, X = make_problem(ratio=0.7)
    calls = []
    ws = solve_working_set(
        problem,
        slicing_restriction(problem, X, calls),
        tol=1e-10,
        initial_size=2,
        operator_norms=group_operator_norms(problem),
    )
    plain = solvers.solve(problem, tol=1e-12, max_iter=50_000)
    G = c * n
    screened = ws.history["screened"]
    assert screened[-2] >= G // 2  # survivors <= half the groups before the last round
    # One request per round's working set, plus the survivors' certificate problem(s).
    rounds = len(ws.history["iteration"]) - 1
    assert len(calls) > rounds
    assert any(call.size == G - k for call in calls for k in screened if k > 0)
    assert ws.status == "optimal"
    assert ws.objective == pytest.approx(plain.objective, rel=1e-9)
    full = solvers.duality_gap(problem, ws.x)  # the final claim is the full problem's
    assert float(full.primal) == pytest.approx(ws.objective, rel=1e-12)
    assert float(full.gap) <= 1e-10 * max(1.0, ws.objective) and ws.dual <= plain.objective


@pytest.mark.parametrize("screening", [False, True])
def test_optimality_is_never_claimed_from_a_wrong_restriction(screening):
    problem, X = make_problem()
    norms = group_operator_norms(problem) if screening else None  # True: wrong survivors' maps

    def wrong(groups):  # the right variables, but a map scaled by 2: a different problem
        sub, index = restrict_groups(problem, groups)
        scaled = Partial(lambda f, x: 2.0 * f(x), sub.predict)
        return Restriction(
            solvers.Problem(scaled, sub.shape, sub.loss, sub.penalty, check_linear=False), index
        )

    with pytest.raises(ValueError, match="predict"):
        solve_working_set(problem, wrong, tol=1e-8)
    result = solve_working_set(
        problem, wrong, tol=1e-8, check_restriction=False, max_outer=5, operator_norms=norms
    )
    optimum = solvers.solve(problem, tol=1e-10, max_iter=50_000).objective
    assert result.status != "optimal"
    assert result.objective == pytest.approx(float(solvers.duality_gap(problem, result.x).primal))
    assert result.dual <= optimum + 1e-9 <= result.objective + 2e-9  # a valid certificate


def test_bad_input():
    problem, _ = make_problem()
    with pytest.raises(ValueError, match="whole groups"):
        solve_working_set(problem, lambda g: Restriction(*restrict_groups(problem, g[:1])))
    with pytest.raises(ValueError, match="operator_norms"):
        gap_safe_screen(problem, problem.zeros(), np.ones(3))
    with pytest.raises(ValueError, match="tol"):
        solve_working_set(problem, tol=0.0)
    stochastic = solvers.Problem(
        Partial(
            lambda X, C: jnp.einsum("lrk,ikr->il", C[0] - C[1], X[:, :, :n]), np.ones((N, n, n))
        ),
        (2, c, n, n),
        solvers.SquaredLoss(np.zeros((N, c))),
        solvers.StochasticGauge(1.0),
    )
    with pytest.raises(TypeError, match="GroupL2"):
        solve_working_set(stochastic)
