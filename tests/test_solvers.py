"""solvers: FISTA vs cvxpy, certificates, beta_max, paths, support reduction, bad input."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import solvers

N, n, d, c = 24, 5, 3, 3


def tokens_predict(X, Z):
    """(N, n, d) x (n, d) -> (N,): sum_k <x_ik, z_k>."""
    return jnp.einsum("ikq,kq->i", X, Z)


def multi_output_predict(X, Z):
    """(N, n, d) x (c, n, d) -> (N, c)."""
    return jnp.einsum("ikq,lkq->il", X, Z)


def stochastic_predict(X, C):
    """(N, n, d) x (2, c, n, n) -> (N, c): output token 0 of sum_q (C+ - C-) X (d = c here)."""
    mixed = jnp.einsum("lrk,ikl->irl", C[0] - C[1], X[:, :, :c])
    return mixed[:, 0, :] + mixed[:, -1, :]


def stochastic_first_output(X, C):
    return stochastic_predict(X, C)[:, 0]


def make_loss(name, rng):
    if name == "squared":
        return solvers.SquaredLoss(rng.standard_normal((N, c))), (c,)
    if name == "logistic":
        return solvers.LogisticLoss(rng.choice([-1.0, 1.0], N)), ()
    return solvers.SoftmaxCrossEntropy(rng.integers(0, c, N)), (c,)


def make_problem(loss_name, penalty_name, seed=0, beta=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    loss, out = make_loss(loss_name, rng)
    if penalty_name == "stochastic":
        if out == ():
            predict, shape = Partial(stochastic_first_output, X), (2, 1, n, n)
        else:
            predict, shape = Partial(stochastic_predict, X), (2, c, n, n)
        penalty = solvers.StochasticGauge(1.0)
        constraint = None
    else:
        if out == ():
            predict, shape = Partial(tokens_predict, X), (n, d)
        else:
            predict, shape = Partial(multi_output_predict, X), (c, n, d)
        group = penalty_name.startswith("group")
        penalty = solvers.GroupL2(1.0, axis=-1) if group else solvers.L1(1.0)
        constraint = solvers.NonNegative() if penalty_name.endswith("nonneg") else None
    problem = solvers.Problem(predict, shape, loss, penalty, constraint=constraint)
    top = solvers.beta_max(problem)
    return problem.with_beta(beta if beta is not None else 0.5 * top)


LOSSES = ["squared", "logistic", "cross_entropy"]
PENALTIES = ["group", "l1", "group_nonneg", "l1_nonneg", "stochastic"]


@pytest.mark.parametrize("penalty_name", PENALTIES)
@pytest.mark.parametrize("loss_name", LOSSES)
def test_fista_and_cvxpy_agree_with_certified_gaps(loss_name, penalty_name):
    problem = make_problem(loss_name, penalty_name)
    fista = solvers.solve(problem, method="fista", tol=1e-9, max_iter=20_000)
    exact = solvers.solve(problem, method="cvxpy", tol=1e-9)
    assert fista.status == "optimal", fista
    assert 0 <= fista.gap <= 1e-9 * max(1, abs(fista.objective))
    assert exact.gap >= 0
    assert abs(fista.objective - exact.objective) <= 1e-6 * abs(exact.objective)
    # Every dual value is a lower bound on every primal value.
    assert fista.dual <= exact.objective + 1e-9 and exact.dual <= fista.objective + 1e-9
    # The solution is sparse over groups: some groups are exactly zero, some are not.
    norms = np.asarray(problem.penalty.group_norms(fista.x))
    assert np.any(norms == 0) and np.any(norms > 0)


@pytest.mark.parametrize("penalty_name", ["group", "stochastic"])
def test_gap_is_a_certificate_perturbation_raises_it(penalty_name):
    problem = make_problem("squared", penalty_name)
    result = solvers.solve(problem, tol=1e-10, max_iter=20_000)
    rng = np.random.default_rng(1)
    for scale in (1e-3, 1e-2):
        # Perturb inside the penalty's domain (the prox maps any point into it).
        noisy = result.x + scale * rng.standard_normal(problem.shape)
        perturbed = problem.penalty.prox(jnp.asarray(noisy), 0.0)
        cert = solvers.duality_gap(problem, perturbed)
        assert cert.gap > result.gap
        # The gap bounds the suboptimality: primal - gap <= optimum.
        assert cert.primal - cert.gap <= result.objective + 1e-9
        assert cert.primal >= result.objective - 1e-9


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("penalty_name", ["group", "l1_nonneg", "stochastic"])
def test_beta_at_least_beta_max_gives_exact_zero(loss_name, penalty_name):
    base = make_problem(loss_name, penalty_name)
    top = solvers.beta_max(base)
    assert top > 0
    at_max = solvers.solve(base.with_beta(top * (1 + 1e-9)), tol=1e-10)
    assert at_max.status == "optimal"
    assert np.all(np.asarray(at_max.x) == 0.0)
    below = solvers.solve(base.with_beta(0.9 * top), tol=1e-8, max_iter=20_000)
    assert np.any(np.asarray(below.x) != 0.0)


def test_max_iter_reports_status_and_gap():
    problem = make_problem("cross_entropy", "group", beta=1e-3)
    result = solvers.solve(problem, tol=1e-12, max_iter=5)
    assert result.status == "max_iter"
    assert result.iterations == 5
    assert np.isfinite(result.gap) and result.gap > 1e-12
    assert result.history["gap"].shape == (5,)


@pytest.mark.parametrize("loss_name", LOSSES)
def test_fista_reports_the_prediction_of_its_solution(loss_name):
    """``SolveResult.prediction`` is A x of the returned x (carried by the iterations, not
    recomputed), in float64 and float32; a polished result, whose x the Newton steps moved,
    reports None."""
    problem = make_problem(loss_name, "group")
    for dtype, rtol in ((jnp.float64, 1e-10), (jnp.float32, 1e-4)):
        cast = solvers.Problem(
            problem.predict, problem.shape, problem.loss, problem.penalty, dtype=dtype
        )
        result = solvers.solve(cast, tol=1e-6, max_iter=5000)
        assert result.prediction is not None and result.prediction.dtype == dtype
        scale = float(np.max(np.abs(np.asarray(cast.predict(result.x)))))
        np.testing.assert_allclose(
            np.asarray(result.prediction), np.asarray(cast.predict(result.x)), atol=rtol * scale
        )
    polished = solvers.solve(problem, tol=1e-10, max_iter=5000, polish=True)
    assert polished.method == "fista+newton" and polished.prediction is None


def test_history_records_objective_and_gap_per_iteration_or_checkpoint():
    problem = make_problem("logistic", "group")
    result = solvers.solve(problem, tol=1e-8, max_iter=4096)
    np.testing.assert_array_equal(result.history["iteration"], np.arange(1, result.iterations + 1))
    assert result.history["gap"][-1] == pytest.approx(result.gap)
    assert result.history["gap"][0] > result.history["gap"][-1]
    # A long budget records every ceil(max_iter / 4096) iterations, same trajectory.
    long = solvers.solve(problem, tol=1e-8, max_iter=5 * 4096)
    assert long.iterations == result.iterations
    np.testing.assert_array_equal(long.history["iteration"] % 5, 0)
    every_fifth = result.history["objective"][4::5]
    np.testing.assert_allclose(long.history["objective"], every_fifth, rtol=1e-12)


def test_float32_solve_reaches_its_tolerance():
    problem64 = make_problem("squared", "group")
    problem32 = solvers.Problem(
        problem64.predict, problem64.shape, problem64.loss, problem64.penalty, dtype=jnp.float32
    )
    r32 = solvers.solve(problem32, tol=1e-5, max_iter=20_000)
    r64 = solvers.solve(problem64, tol=1e-10, max_iter=20_000)
    assert r32.x.dtype == jnp.float32
    assert r32.status == "optimal"
    assert abs(r32.objective - r64.objective) <= 1e-4 * abs(r64.objective)


def test_warm_started_path_from_beta_max():
    problem = make_problem("squared", "group")
    path = solvers.regularization_path(problem, num=6, min_ratio=0.05, tol=1e-9)
    assert path.betas[0] == pytest.approx(solvers.beta_max(problem))
    assert np.all(np.diff(path.betas) < 0)
    assert all(r.status == "optimal" for r in path.results)
    assert np.all(np.asarray(path.results[0].x) == 0)
    # Smaller beta -> smaller optimum, and more active groups (weakly).
    assert np.all(np.diff(path.objectives) < 0)
    active = [solvers.active_groups(problem, r.x).size for r in path.results]
    assert active[-1] > active[0] == 0
    # The path warm-starts: its last solve begins far closer to the optimum than a cold one
    # (from the previous solution, not 0) and needs fewer iterations.
    last = problem.with_beta(path.betas[-1])
    cold = solvers.solve(last, tol=1e-9)
    warm_start_excess = solvers.certify(last, path.results[-2].x).primal - cold.objective
    cold_start_excess = solvers.certify(last, last.zeros()).primal - cold.objective
    assert 0 <= warm_start_excess < 0.1 * cold_start_excess
    assert path.results[-1].iterations < cold.iterations


def test_support_reduction_keeps_the_optimum_with_independent_atoms():
    rng = np.random.default_rng(3)
    Nsmall, ntok = 3, 12
    base = rng.standard_normal((Nsmall, 4, 2))
    X = np.concatenate([base] * 3, axis=1)  # every token appears three times
    y = rng.standard_normal(Nsmall)
    problem = solvers.Problem(
        Partial(tokens_predict, X), (ntok, 2), solvers.SquaredLoss(y), solvers.GroupL2(0.05)
    )
    result = solvers.solve(problem, tol=1e-11, max_iter=50_000)
    before = solvers.active_groups(problem, result.x).size
    reduced = solvers.reduce_support(problem, result.x)
    after = solvers.active_groups(problem, reduced).size
    assert before > Nsmall + 1  # FISTA spreads weight over the duplicated tokens
    assert after <= Nsmall + 1
    np.testing.assert_allclose(problem.predict(reduced), problem.predict(result.x), atol=1e-10)
    assert float(problem.objective(reduced)) == pytest.approx(result.objective, rel=1e-10)


@pytest.mark.parametrize("penalty_name", ["group", "l1", "group_nonneg", "stochastic"])
def test_prox_satisfies_moreau_identity_with_dual_norm(penalty_name):
    """v = prox(v) + w with Omega°(w) <= t beta and <w, prox(v)> = t beta Omega(prox(v))."""
    problem = make_problem("squared", penalty_name)
    penalty = problem.penalty
    rng = np.random.default_rng(5)
    for step in (0.01, 0.1):
        v = jnp.asarray(rng.standard_normal(problem.shape))
        p = penalty.prox(v, step)
        w = v - p
        tb = step * float(penalty.beta)
        assert float(penalty.dual_norm(w)) <= tb * (1 + 1e-8)
        assert float(jnp.vdot(w, p)) == pytest.approx(step * float(penalty.value(p)), abs=1e-8)


def test_stochastic_prox_matches_cvxpy():
    import cvxpy as cp

    rng = np.random.default_rng(7)
    v = rng.standard_normal((3, 4, 5))
    penalty = solvers.StochasticGauge(0.7)
    prox = np.asarray(penalty.prox(jnp.asarray(v), 0.5))
    x = cp.Variable(v.size)
    reg, cons = penalty.cvxpy(x, v.shape)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - v.ravel()) + 0.5 * reg), cons).solve(
        solver="CLARABEL"
    )
    np.testing.assert_allclose(prox, x.value.reshape(v.shape), atol=1e-6)
    row_sums = prox.sum(axis=-1)
    np.testing.assert_allclose(row_sums, row_sums[..., :1] * np.ones_like(row_sums), atol=1e-12)


# ---------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, n, d))
    y = rng.standard_normal(N)
    predict = Partial(tokens_predict, X)
    good = dict(
        predict=predict, shape=(n, d), loss=solvers.SquaredLoss(y), penalty=solvers.GroupL2(1.0)
    )

    def build(**overrides):
        return solvers.Problem(**{**good, **overrides})

    Xnan = X.copy()
    Xnan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        build(predict=Partial(tokens_predict, Xnan))
    ybad = y.copy()
    ybad[3] = np.inf
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        solvers.SquaredLoss(ybad)
    with pytest.raises(ValueError, match="predict\\(x\\) has shape"):
        build(loss=solvers.SquaredLoss(y[:-1]))
    with pytest.raises(ValueError, match="predict failed"):
        build(shape=(n + 1, d))
    for beta in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="beta must be a finite number > 0"):
            solvers.GroupL2(beta)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        build(
            predict=Partial(multi_output_predict, X),
            shape=(c, n, d),
            loss=solvers.SoftmaxCrossEntropy(np.full(N, 3)),
        )
    with pytest.raises(TypeError, match="integers"):
        solvers.SoftmaxCrossEntropy(np.zeros(N))
    with pytest.raises(ValueError, match="-1 or \\+1"):
        solvers.LogisticLoss(rng.integers(0, 2, N))
    with pytest.raises(ValueError, match="linear in x"):
        build(predict=Partial(lambda X, Z: tokens_predict(X, Z) ** 2, X))
    with pytest.raises(ValueError, match="no offset"):
        build(predict=Partial(lambda X, Z: tokens_predict(X, Z) + 1.0, X))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        build(penalty=solvers.GroupL2(1.0, axis=2))
    with pytest.raises(ValueError, match="weights must be > 0"):
        solvers.SquaredLoss(y, weights=np.zeros(N))
    with pytest.raises(TypeError, match="cannot be combined with a NonNegative"):
        build(
            predict=Partial(stochastic_first_output, X),
            shape=(2, 1, n, n),
            penalty=solvers.StochasticGauge(1.0),
            constraint=solvers.NonNegative(),
        )
    problem = build()
    with pytest.raises(ValueError, match="unknown method 'newton'"):
        solvers.solve(problem, method="newton")
    with pytest.raises(ValueError, match="x0 must have the problem shape"):
        solvers.solve(problem, x0=np.zeros((n, d + 1)))
    with pytest.raises(ValueError, match="unknown cvxpy solver .*; expected one of"):
        solvers.solve(problem, method="cvxpy", solver="MOSEK")
    with pytest.raises(ValueError, match="tol must be a finite number in \\(0, 1\\)"):
        solvers.solve(problem, tol=0)
    with pytest.raises(ValueError, match="unknown loss"):
        solvers.make_loss("hinge", y)


def test_weighted_loss_equals_duplicated_samples():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((N, n, d))
    y = rng.standard_normal(N)
    weights = rng.integers(1, 3, N).astype(float)
    repeat = weights.astype(int)
    weighted = solvers.Problem(
        Partial(tokens_predict, X), (n, d), solvers.SquaredLoss(y, weights), solvers.GroupL2(2.0)
    )
    duplicated = solvers.Problem(
        Partial(tokens_predict, np.repeat(X, repeat, axis=0)),
        (n, d),
        solvers.SquaredLoss(np.repeat(y, repeat)),
        solvers.GroupL2(2.0),
    )
    a = solvers.solve(weighted, tol=1e-10)
    b = solvers.solve(duplicated, tol=1e-10)
    assert a.objective == pytest.approx(b.objective, rel=1e-8)


def test_problem_is_a_pytree_and_beta_change_does_not_recompile():
    problem = make_problem("squared", "group")
    leaves = jax.tree_util.tree_leaves(problem)
    assert any(
        np.shape(leaf) == (N, n, d) for leaf in leaves
    )  # data is an argument, not a constant
    solvers.solve(problem, tol=1e-6)
    size = solvers.fista._advance_jit._cache_size(), solvers.fista._init_jit._cache_size()
    solvers.solve(problem.with_beta(0.5 * float(problem.penalty.beta)), tol=1e-6)
    assert (solvers.fista._advance_jit._cache_size(), solvers.fista._init_jit._cache_size()) == size


def test_an_initial_lipschitz_estimate_skips_the_power_method_and_keeps_the_optimum():
    problem = make_problem("squared", "group")
    reference = solvers.solve(problem, tol=1e-10)
    x0 = problem.zeros()
    assert float(solvers.FISTA(lipschitz=3.5).init(problem, x0).lipschitz) == 3.5
    estimated = float(solvers.FISTA().init(problem, x0).problem_lipschitz)
    exact = float(problem.loss.lipschitz()) * np.linalg.norm(solvers.materialize(problem), 2) ** 2
    assert 0.95 * exact <= estimated <= 1.03 * exact  # power method with a 2% safety margin
    # Under- and overestimates alike: backtracking doubles, the decay shrinks, same optimum.
    for guess in (1e-6 * estimated, estimated, 1e4 * estimated):
        result = solvers.solve(problem, tol=1e-10, lipschitz=guess)
        assert result.status == "optimal"
        assert result.objective == pytest.approx(reference.objective, rel=1e-8)
    # A given estimate (any value) is one compiled solver without the power method.
    size = solvers.fista._advance_jit._cache_size(), solvers.fista._init_jit._cache_size()
    solvers.solve(problem, tol=1e-6, lipschitz=2.0 * estimated)
    assert (solvers.fista._advance_jit._cache_size(), solvers.fista._init_jit._cache_size()) == size
    with pytest.raises(ValueError, match="lipschitz"):
        solvers.solve(problem, lipschitz=-1.0)


def test_a_fista_fit_never_imports_cvxpy():
    """cvxpy (about 1 s to import) is loaded by the cvxpy route only: importing the package
    and fitting by FISTA leave it out of sys.modules."""
    script = (
        "import sys\n"
        "import numpy as np\n"
        "import convextx as cx\n"
        "rng = np.random.default_rng(0)\n"
        "X, y = rng.standard_normal((20, 3, 2)), rng.standard_normal(20)\n"
        "cx.ConvexAttention(kind='scalar', solver='fista').fit(X, y)\n"
        "print('CVXPY', 'cvxpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "CVXPY False" in done.stdout


def test_a_jax_solve_pauses_garbage_collection_and_restores_the_collector():
    """Under a threshold that collects every few allocations, a FISTA or working-set solve runs
    no cyclic collection while JAX traces or compiles (tracing would trigger full ones; the
    counts it accumulated are collected once, on the way out); afterwards, also after a bad
    argument raised inside the paused block, the collector is as the caller left it."""
    import gc
    import traceback

    problem = make_problem("squared", "group")
    collections = []

    def record(phase, info):
        if phase == "start":
            inside_jax = any("/jax/" in frame.filename for frame in traceback.extract_stack())
            collections.append(inside_jax)

    threshold = gc.get_threshold()
    gc.callbacks.append(record)
    try:
        gc.set_threshold(10, 1, 1)
        [[] for _ in range(100)]
        assert collections == [False] * len(collections) != [], "the recorder sees collections"
        for method in ("fista", "working_set"):
            collections.clear()
            result = solvers.solve(problem, method=method, tol=1e-6, max_iter=2000)
            assert result.optimal, method
            assert not any(collections), method
            assert gc.isenabled()
        with pytest.raises(ValueError, match="x0"):
            solvers.solve(problem, x0=np.zeros((1, 1)))
        assert gc.isenabled()
        gc.disable()
        solvers.solve(problem, tol=1e-6)
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.set_threshold(*threshold)
        gc.callbacks.remove(record)
