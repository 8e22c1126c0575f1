"""Trust regressions (issue 14): every class of bad or odd input gets a clear error or an
honest result. The CLI and bench-store classes live in test_cli.py / test_bench_store.py, SGD
divergence in test_train.py; this file covers the solvers and the estimator, and ends with a
property-based test against independent cvxpy solves."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import StratifiedKFold, check_cv

import convextx as cx
import solvers

N, n, d, c = 12, 4, 3, 3


def data(seed=0, samples=N, classes=c):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, n, d)), rng.integers(0, classes, samples)


def program(kind="vector", loss="cross_entropy", seed=0, fraction=0.3, X=None, y=None, **kw):
    X0, y0 = data(seed)
    X = X0 if X is None else X
    y = y0 if y is None else y
    if kind == "sequence":
        y = np.random.default_rng(seed).integers(0, c, (X.shape[0], n))
    probe = cx.convex_program(X, y, kind, 1.0, loss, **kw)
    return probe.with_beta(fraction * solvers.beta_max(probe.problem))


def optimum(problem):
    """The optimum by the independent route (cvxpy + Clarabel), tightly."""
    return solvers.solve(problem, method="cvxpy", tol=1e-9, max_iter=500).objective


# ----------------------------------------------------------------- precision and tolerance


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_refused(dtype):
    problem = program().problem
    with pytest.raises(TypeError, match="dtype"):
        solvers.Problem(problem.predict, problem.shape, problem.loss, problem.penalty, dtype=dtype)


def test_float32_certificate_is_honest_at_a_tol_it_cannot_reach():
    problem = program(dtype="float32").problem
    result = solvers.solve(problem, tol=1e-10, max_iter=3000)
    true = optimum(program().problem)
    assert result.status != "optimal"  # float32 cannot certify 1e-10
    assert result.gap >= result.objective - true - 1e-9 * abs(true)


@pytest.mark.parametrize("tol", [np.inf, np.nan, True, 10, 1.0, 0.0, -1e-3, "1e-6", None])
def test_tol_must_be_a_finite_real_in_the_open_unit_interval(tol):
    problem = program().problem
    error = TypeError if isinstance(tol, bool | str) or tol is None else ValueError
    with pytest.raises(error, match="tol"):
        solvers.solve(problem, tol=tol)
    X, y = data()
    with pytest.raises(error, match="tol"):
        cx.ConvexAttention(tol=tol if tol is not None else "x").fit(X, y)


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), (2**31, ValueError), ("a", TypeError), (0, ValueError), (2.0, TypeError)],
)
def test_max_iter_is_a_positive_int32(value, error):
    problem = program().problem
    with pytest.raises(error, match="max_iter"):
        solvers.solve(problem, max_iter=value)
    X, y = data()
    with pytest.raises(error, match="max_iter"):
        cx.ConvexAttention(max_iter=value).fit(X, y)


def test_numpy_scalars_are_accepted():
    X, y = data()
    est = cx.ConvexAttention(
        beta=np.float64(0.05), tol=np.float32(1e-6), max_iter=np.int64(5000), seed=np.int32(2)
    ).fit(X, y)
    reference = cx.ConvexAttention(beta=0.05, tol=1e-6, max_iter=5000, seed=2).fit(X, y)
    assert est.status_ == "optimal"
    assert est.objective_ == pytest.approx(reference.objective_, rel=1e-9)


@pytest.mark.parametrize(
    ("params", "error", "name"),
    [
        (dict(beta=True), TypeError, "beta"),
        (dict(beta=-1.0), ValueError, "beta"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed="a"), TypeError, "seed"),
        (dict(heads=True), TypeError, "heads"),
        (dict(warm_start=1), TypeError, "warm_start"),
        (dict(solver="newton"), ValueError, "solver"),
        (dict(kind="softmax"), ValueError, "kind"),
        (dict(dtype="float16"), ValueError, "dtype"),
        (dict(time_limit=0.0), ValueError, "time_limit"),
    ],
)
def test_bad_hyperparameters_are_named(params, error, name):
    X, y = data()
    with pytest.raises(error, match=name):
        cx.ConvexAttention(**params).fit(X, y)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (dict(power_iterations=-1), ValueError),
        (dict(power_iterations=True), TypeError),
        (dict(step_size=0.0), ValueError),
    ],
)
def test_bad_fista_options_are_named(options, error):
    (name,) = options
    with pytest.raises(error, match=name):
        solvers.solve(program().problem, **options)


@pytest.mark.parametrize(("beta", "error"), [("x", TypeError), (True, TypeError), (-1, ValueError)])
def test_penalty_strength_is_checked(beta, error):
    with pytest.raises(error, match="beta"):
        solvers.GroupL2(beta)


# ------------------------------------------------------------------------- the cvxpy route


@pytest.mark.parametrize(("tol", "max_iter"), [(1e-2, 500), (1e-6, 500), (1e-6, 3)])
def test_cvxpy_sequence_points_are_feasible_and_honest(tol, max_iter):
    prog = program("sequence")
    result = prog.solve(method="cvxpy", tol=tol, max_iter=max_iter)
    x = np.asarray(result.x)
    assert x.min() >= 0  # the stochastic gauge's cone: nonnegative ...
    rows = x.sum(axis=-1)  # ... with equal row sums in each (R, K) block
    np.testing.assert_allclose(rows, np.broadcast_to(rows[..., :1], rows.shape), atol=1e-12)
    true = prog.solve(tol=1e-10, max_iter=50_000)
    assert true.status == "optimal"
    assert result.gap >= 0 and result.gap >= result.objective - true.objective - 1e-12
    if result.status == "optimal":
        assert result.objective - true.objective <= 10 * tol * abs(true.objective)
    W1 = cx.recover_heads(prog, result.x)["W1"]
    assert W1.min() >= 0
    np.testing.assert_allclose(W1.sum(axis=-1), 1.0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_cvxpy_active_tokens_match_fista(seed):
    prog = program("vector", seed=seed, fraction=0.5)
    exact = prog.solve(method="cvxpy", tol=1e-6)
    fista = prog.solve(tol=1e-9, max_iter=50_000)
    np.testing.assert_array_equal(prog.active_tokens(exact.x), prog.active_tokens(fista.x))


# ----------------------------------------------------------- zero maps and extreme scaling


@pytest.mark.parametrize("kind", ["scalar", "vector", "sequence"])
def test_a_zero_map_has_the_certified_solution_zero(kind):
    X = np.zeros((N, n, d))
    y = data()[1] if kind != "scalar" else 2.0 * (np.arange(N) % 2) - 1
    loss = "logistic" if kind == "scalar" else "cross_entropy"
    if kind == "sequence":
        y = np.tile(np.arange(n) % 2, (N, 1))
    result = cx.convex_program(X, y, kind, 0.1, loss).solve()
    assert result.status == "optimal" and result.gap <= 1e-6 * abs(result.objective)
    assert not np.any(np.asarray(result.x))


def test_a_gate_off_for_every_sample_is_harmless():
    X, y = data()
    X = np.abs(X) + 0.1  # positive: u1^T X u2 < 0 for u2 < 0, so the first gate is always off
    gates = cx.Gates(np.ones((2, n)), np.array([-np.ones(d), np.ones(d)]))
    assert not np.any(np.asarray(gates.patterns(X))[:, 0])
    est = cx.ConvexAttention(kind="gated", gates=gates, beta=0.05).fit(X, y)
    assert est.status_ == "optimal" and np.all(np.isfinite(est.coef_))
    assert np.all(np.isfinite(est.decision_function(X)))


@pytest.mark.parametrize("scale", [1e100, 1e-160])
def test_extreme_scaling_reaches_the_scaled_optimum(scale):
    X, y = data()
    Y = np.eye(c)[y]  # squared loss on one-hot targets: the scaling moves into the map only
    base = cx.convex_program(X, Y, "vector", 1.0, "squared")
    beta = 0.3 * solvers.beta_max(base.problem)
    plain = base.with_beta(beta).solve(tol=1e-8, max_iter=20_000)
    scaled = cx.convex_program(X * scale, Y, "vector", beta * scale, "squared")
    result = scaled.solve(tol=1e-8, max_iter=20_000)
    assert result.status == "optimal"
    assert result.objective == pytest.approx(plain.objective, rel=1e-6)
    np.testing.assert_allclose(np.asarray(result.x) * scale, np.asarray(plain.x), atol=1e-6)


# --------------------------------------------------------------------------- the estimator


def test_a_failed_refit_leaves_the_fitted_state_whole():
    X, y = data()
    est = cx.ConvexAttention(beta=0.05).fit(X, y)
    before = {k: v for k, v in vars(est).items() if k.endswith("_")}
    predictions = est.predict(X)
    for bad in (y[:-1], np.r_[y[:-1], np.nan]):
        with pytest.raises(ValueError):
            est.fit(X, bad)
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    np.testing.assert_array_equal(est.predict(X), predictions)


@pytest.mark.parametrize(
    ("X", "y", "error", "name"),
    [
        ("ok", np.r_[np.zeros(N - 1), np.nan], ValueError, "y"),
        ("ok", np.arange(N) + 1j, TypeError, "y"),
        ("ok", np.array([object()] * N), TypeError, "y"),
        (np.zeros((N, n, d)) + 1j, "ok", TypeError, "X"),
        ([[[0.0, 1.0]], [[0.0]]], np.arange(2), ValueError, "X"),
        (np.zeros((N, n, d), dtype=bool), "ok", TypeError, "X"),
        (np.zeros((N, n)), "ok", ValueError, "X"),
    ],
)
def test_bad_data_is_refused_not_coerced(X, y, error, name):
    X0, y0 = data()
    X = X0 if isinstance(X, str) else X
    y = y0 if isinstance(y, str) else y
    with pytest.raises(error, match=rf"\b{name}\b"):
        cx.ConvexAttention().fit(X, y)


def test_score_checks_the_shape_and_weights_of_its_arguments():
    X, y = data()
    est = cx.ConvexAttention(beta=0.05).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        est.score(X, y[:, None])
    with pytest.raises(ValueError, match="shape"):
        est.score(X, y[:-1])
    with pytest.raises(ValueError, match="sample_weight"):
        est.score(X, y, sample_weight=np.ones(N - 1))
    with pytest.raises(ValueError, match="sample_weight"):
        est.fit(X, y, sample_weight=np.ones(N + 1))
    weights = np.arange(1, N + 1, dtype=float)
    assert est.score(X, y, sample_weight=weights) == pytest.approx(
        np.average(est.predict(X) == y, weights=weights)
    )


def test_not_fitted_and_estimator_type():
    X, _ = data()
    for method in ("predict", "decision_function", "predict_proba"):
        with pytest.raises(NotFittedError):
            getattr(cx.ConvexAttention(), method)(X)
    classifier = cx.ConvexAttention(loss="cross_entropy")
    assert is_classifier(classifier) and not is_regressor(classifier)
    assert is_regressor(cx.ConvexAttention(loss="squared"))
    cv = check_cv(3, data()[1], classifier=is_classifier(classifier))
    assert isinstance(cv, StratifiedKFold)  # what cross_val_score uses for this estimator


def test_convergence_warning_points_at_the_caller():
    X, y = data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cx.ConvexAttention(beta=1e-4, max_iter=2).fit(X, y)
    (warning,) = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert warning.filename == __file__


# ------------------------------------------------------------ property-based, against cvxpy

TOLS = [1e-8, 1e-6, 1e-4, 1e-2, np.float32(1e-5), 0.0, -1.0, 1.0, 10, np.inf, np.nan, True, "a"]
MAX_ITERS = [1, 3, 40, 5000, np.int64(300), 0, -2, True, 2**31, 2.5, "100"]
BETA_FRACTIONS = [1e-3, 0.1, 0.5, 0.99, 2.0, 0.0, -0.5, np.nan, np.inf]
SCALES = [1.0, 1e-8, 1e8]


def _named_error(err: Exception, names: tuple[str, ...]) -> bool:
    return isinstance(err, ValueError | TypeError) and any(k in str(err) for k in names)


def _check_honest(result, problem, tol):
    """'optimal' only within 10 tol of the cvxpy optimum; the gap bounds the suboptimality."""
    true = optimum(problem)
    slack = 1e-9 * max(1.0, abs(true))  # the reference's own accuracy
    assert result.gap >= result.objective - true - slack
    if result.status == "optimal":
        assert result.objective - true <= 10 * float(tol) * abs(true) + slack


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["scalar", "vector", "gated", "sequence"]),
    seed=st.integers(0, 3),
    fraction=st.sampled_from(BETA_FRACTIONS),
    scale=st.sampled_from(SCALES),
    tol=st.sampled_from(TOLS),
    max_iter=st.sampled_from(MAX_ITERS),
    method=st.sampled_from(["fista", "working_set", "cvxpy"]),
)
def test_solve_is_honest_or_names_the_argument(kind, seed, fraction, scale, tol, max_iter, method):
    loss = "logistic" if kind == "scalar" else "cross_entropy"
    X, y = data(seed)
    X = X * scale
    y = 2.0 * (y % 2) - 1 if kind == "scalar" else y
    if kind == "sequence":
        y = np.random.default_rng(seed).integers(0, c, (N, n))
    gates = 4 if kind == "gated" else None
    probe = cx.convex_program(X, y, kind, 1.0, loss, gates=gates)
    try:
        prog = probe.with_beta(fraction * solvers.beta_max(probe.problem))
        result = prog.solve(method=method, tol=tol, max_iter=max_iter)
    except (ValueError, TypeError) as err:
        assert _named_error(err, ("beta", "tol", "max_iter", "method", "kind")), err
        return
    _check_honest(result, prog.problem, tol)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["vector", "sequence", "bogus"]),
    beta=st.sampled_from([1e-3, 0.05, 0.5, 0.0, -1.0, np.nan, True, "0.1"]),
    tol=st.sampled_from(TOLS),
    max_iter=st.sampled_from(MAX_ITERS),
    labels=st.sampled_from(["ints", "names", "nan", "complex", "one_class"]),
)
def test_fit_is_honest_or_names_the_argument(kind, beta, tol, max_iter, labels):
    X, y = data()
    if kind == "sequence":
        y = np.random.default_rng(0).integers(0, c, (N, n))
    y = {
        "ints": y,
        "names": np.array(["ab", "cd", "ef"])[y % 3],
        "nan": np.where(y == 0, np.nan, y),
        "complex": y + 0j,
        "one_class": np.zeros_like(y),
    }[labels]
    est = cx.ConvexAttention(kind=kind, beta=beta, tol=tol, max_iter=max_iter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    except (ValueError, TypeError) as err:
        assert _named_error(err, ("kind", "beta", "tol", "max_iter", "y", "class")), err
        return
    assert labels in ("ints", "names")
    _check_honest(est.solve_result_, est.program_.problem, tol)
