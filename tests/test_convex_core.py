"""convextx core: programs P1-P4, recovery, certificates, estimator (issue 3's must-shows)."""

import functools

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone

import convextx as cx
import solvers
from baselines import heads as heads_module
from baselines.optim import make_optimizer
from baselines.train import Trainer

N, n, d, c = 16, 5, 3, 3

CASES = [
    ("scalar", "squared"),
    ("scalar", "logistic"),
    ("vector", "squared"),
    ("vector", "cross_entropy"),
    ("gated", "squared"),
    ("gated", "cross_entropy"),
    ("sequence", "squared"),
    ("sequence", "cross_entropy"),
]


def make_data(kind, loss, seed=0, samples=N):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, n, d))
    if kind == "sequence":
        y = (
            rng.integers(0, c, (samples, n))
            if loss == "cross_entropy"
            else rng.standard_normal((samples, n, c))
        )
    elif loss == "logistic":
        y = rng.choice([-1.0, 1.0], samples)
    elif loss == "cross_entropy":
        y = rng.integers(0, c, samples)
    else:
        y = rng.standard_normal(samples) if kind == "scalar" else rng.standard_normal((samples, c))
    return X, y


def program_for(kind, loss, seed=0, fraction=0.3):
    X, y = make_data(kind, loss, seed)
    gates = 6 if kind == "gated" else None
    probe = cx.convex_program(X, y, kind, 1.0, loss, gates=gates)
    beta = fraction * solvers.beta_max(probe.problem)
    return X, y, probe.with_beta(beta)


@pytest.mark.parametrize(("kind", "loss"), CASES)
def test_recovered_network_reaches_the_convex_optimum(kind, loss):
    X, y, program = program_for(kind, loss)
    result = program.solve(tol=1e-10, max_iter=50_000)
    assert result.status == "optimal"
    exact = program.solve(method="cvxpy", tol=1e-9)  # an independent route to the optimum
    assert result.objective == pytest.approx(exact.objective, rel=1e-6)
    heads = cx.recover_heads(program, result.x)
    objective = cx.nonconvex_objective(heads, X, y, program.beta, kind=kind, loss=loss)
    assert objective == pytest.approx(result.objective, rel=1e-6)
    # Same predictions as the convex model, on the training data and on new data.
    Xnew = np.random.default_rng(9).standard_normal((7, n, d))
    scalar = program.scalar_output
    for data in (X, Xnew):
        convex = np.asarray(program.predict(result.x, data))
        network = np.asarray(cx.nonconvex_predictions(heads, data, kind, scalar))
        np.testing.assert_allclose(network.reshape(convex.shape), convex, atol=1e-9)
    # Every recovered head attends to exactly one token (one-hot row) — except P4's full rows.
    attention = heads["W1" if kind == "sequence" else "w1"]
    if kind == "sequence":
        np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-12)
        assert attention.min() >= 0
    else:
        active = np.abs(heads["a"]).reshape(len(attention), -1).sum(1) > 0
        assert np.all(np.sort(attention[active], axis=1)[:, -1] == 1.0)
        assert np.all(np.count_nonzero(attention[active], axis=1) == 1)


@pytest.mark.parametrize(("kind", "loss"), [("scalar", "squared"), ("vector", "cross_entropy")])
def test_adam_and_sgd_never_go_below_the_certified_optimum(kind, loss):
    X, y, program = program_for(kind, loss, seed=1, fraction=0.2)
    certified = program.solve(tol=1e-10, max_iter=50_000)
    beta = program.beta
    per_sample = {
        "squared": lambda p, t: (
            0.5 * (p - t) ** 2 if p.ndim == 1 else 0.5 * jnp.sum((p - t) ** 2, -1)
        ),
        "cross_entropy": lambda p, t: (
            jax.nn.logsumexp(p, -1) - jnp.take_along_axis(p, t[:, None], 1)[:, 0]
        ),
    }[loss]
    objective = heads_module.objective(kind, per_sample)
    penalty = functools.partial(heads_module.penalty, kind, beta=beta)
    outputs = None if kind == "scalar" else c
    finals = []
    for seed, (optimizer, lr, parameterization) in enumerate(
        [("adam", 3e-2, "softmax"), ("adam", 3e-2, "projection"), ("sgd", 3e-3, "softmax")]
    ):
        params = heads_module.init_params(
            jax.random.PRNGKey(seed), kind, 2 * n * (outputs or 1), n, d, outputs, parameterization
        )
        trainer = Trainer(
            objective, make_optimizer(optimizer, lr), penalty=penalty,
            project=heads_module.project if parameterization == "projection" else None,
        )  # fmt: skip
        run = trainer.run(
            params, (jnp.asarray(X), jnp.asarray(y)), 1500, progress=False, seed=seed
        )  # fmt: skip
        trained = heads_module.to_heads(run.params, kind)
        finals.append(cx.nonconvex_objective(trained, X, y, beta, kind=kind, loss=loss))
        assert min(run.history["objective"]) >= certified.dual - 1e-8
    assert min(finals) >= certified.objective - 1e-8
    # The runs do get close: the bound is informative, not vacuous.
    assert min(finals) <= 1.05 * certified.objective


def test_one_head_counterexample_of_theorem_1():
    """N=2, n=2, d=1, X_1 = e_1, X_2 = e_2, y = (1, -1), beta = 1/8, squared loss."""
    X = np.array([[[1.0], [0.0]], [[0.0], [1.0]]])
    y = np.array([1.0, -1.0])
    beta = 1 / 8
    est = cx.ConvexAttention(kind="scalar", beta=beta, loss="squared", tol=1e-12).fit(X, y)
    assert est.objective_ == pytest.approx(15 / 64, rel=1e-9)  # z = (1 - beta, -(1 - beta))
    assert est.heads_["a"].shape == (2,)  # exact recovery needs two heads
    with pytest.raises(ValueError, match="heads=1 is too few"):
        cx.recover_heads(est.program_, est.coef_, heads=1)
    # Best one-head network: w1 = (lam, 1 - lam), scale s = w2 * a (balanced: penalty beta |s|).
    lam, s = np.meshgrid(np.linspace(0, 1, 401), np.linspace(-2, 2, 1601), indexing="ij")
    one_head = 0.5 * (lam * s - 1) ** 2 + 0.5 * ((1 - lam) * s + 1) ** 2 + beta * np.abs(s)
    assert one_head.min() > est.objective_ + 0.3  # ~0.617 vs 0.234
    one = heads_module.init_params(jax.random.PRNGKey(0), "scalar", 1, 2, 1)
    assert (
        cx.nonconvex_objective(heads_module.to_heads(one, "scalar"), X, y, beta, kind="scalar")
        >= one_head.min() - 1e-9
    )


def test_support_reduction_caps_active_tokens_at_N_plus_one():
    rng = np.random.default_rng(3)
    samples = 3
    base = rng.standard_normal((samples, 4, 2))
    X = np.concatenate([base] * 3, axis=1)  # 12 tokens, each appearing three times
    y = rng.standard_normal(samples)
    raw = cx.ConvexAttention(kind="scalar", beta=0.05, tol=1e-11, max_iter=50_000,
                             reduce_support=False).fit(X, y)  # fmt: skip
    reduced = cx.ConvexAttention(kind="scalar", beta=0.05, tol=1e-11, max_iter=50_000).fit(X, y)
    assert raw.heads_["a"].shape[0] > samples + 1  # FISTA spreads over duplicated tokens
    heads = reduced.heads_
    assert heads["a"].shape[0] <= min(X.shape[1], samples + 1)
    assert np.unique(np.argmax(heads["w1"], axis=1)).size <= samples + 1
    assert reduced.active_tokens_.size <= samples + 1 < raw.active_tokens_.size
    np.testing.assert_array_equal(np.sort(heads["w1"], axis=1)[:, -1], 1.0)  # one-hot heads
    value = cx.nonconvex_objective(heads, X, y, 0.05, kind="scalar")
    assert value == pytest.approx(reduced.objective_, rel=1e-9)


def test_lemma_1_rescaling_balances_the_weight_decay():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((10, n, d))
    params = heads_module.init_params(jax.random.PRNGKey(1), "vector", 6, n, d, c)
    heads = {k: np.asarray(v) for k, v in heads_module.to_heads(params, "vector").items()}
    heads["w2"] = heads["w2"] * rng.uniform(0.2, 5.0, (6, 1))
    w2_norm = np.linalg.norm(heads["w2"], axis=1)
    a_norm = np.abs(heads["a"]).sum(axis=1)
    t = np.sqrt(a_norm / w2_norm)
    balanced = {**heads, "w2": heads["w2"] * t[:, None], "a": heads["a"] / t[:, None]}
    np.testing.assert_allclose(
        heads_module.forward("vector", balanced, X), heads_module.forward("vector", heads, X),
        rtol=1e-12,
    )  # fmt: skip
    beta = 0.3
    product_form = beta * np.sum(w2_norm * a_norm)
    assert float(heads_module.penalty("vector", balanced, beta)) == pytest.approx(product_form)
    assert float(heads_module.penalty("vector", heads, beta)) > product_form  # AM-GM, unbalanced
    for scale in rng.uniform(0.1, 10, 5):  # any other rescaling costs more
        other = {**heads, "w2": balanced["w2"] * scale, "a": balanced["a"] / scale}
        assert float(heads_module.penalty("vector", other, beta)) >= product_form - 1e-12


def test_printed_p4_without_equal_row_sums_is_only_a_lower_bound():
    """The paper's P4 (max row-l1 penalty, no equal-row-sum constraint) can undercut every
    network of eq. 30; the gauge derived from the atoms (equal row sums) is exact."""
    X, y, program = program_for("sequence", "squared", seed=2)
    exact = program.solve(tol=1e-10, max_iter=50_000)
    A = solvers.materialize(program.problem)
    shape = program.shape
    blocks = int(np.prod(shape[:-2]))
    C = cp.Variable((blocks * n, n), nonneg=True)
    rows = cp.reshape(cp.sum(C, axis=1), (blocks, n), order="C")
    relaxed = cp.Problem(cp.Minimize(
        0.5 * cp.sum_squares(A @ cp.vec(C.T, order="F") - y.ravel())
        + program.beta * cp.sum(cp.max(rows, axis=1))
    ))  # fmt: skip
    relaxed.solve(solver="CLARABEL")
    assert relaxed.value < exact.objective - 1e-3
    heads = cx.recover_heads(program, exact.x)
    value = cx.nonconvex_objective(heads, X, y, program.beta, kind="sequence")
    assert value == pytest.approx(exact.objective, rel=1e-8)


# ------------------------------------------------------------------------ estimator


def test_classifier_with_string_labels_and_sklearn_conventions():
    X, labels = make_data("vector", "cross_entropy", seed=5, samples=40)
    names = np.array(["ant", "bee", "cat"])[labels]
    est = cx.ConvexAttention(kind="vector", beta=0.5, tol=1e-8)
    assert clone(est).get_params() == est.get_params()
    est.fit(X, names)
    assert est.status_ == "optimal" and 0 <= est.gap_ <= 1e-8 * max(1, est.objective_)
    assert set(est.predict(X)) <= set(names)
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert est.score(X, names) == np.mean(est.predict(X) == names)
    assert est.attention_.shape == (est.heads_["a"].shape[0], n)
    assert set(est.active_tokens_) <= set(range(n))
    # Same objective whether the labels are names or indices.
    by_index = clone(est).fit(X, labels)
    assert by_index.objective_ == pytest.approx(est.objective_, rel=1e-9)
    # cvxpy route agrees.
    exact = clone(est).set_params(solver="cvxpy").fit(X, names)
    assert exact.objective_ == pytest.approx(est.objective_, rel=1e-6)
    np.testing.assert_array_equal(exact.predict(X), est.predict(X))


def test_binary_scalar_classifier_and_regressor():
    X, y = make_data("scalar", "logistic", seed=6, samples=30)
    est = cx.ConvexAttention(kind="scalar", beta=0.2).fit(X, (y > 0).astype(int))
    assert est.loss_ == "logistic" and list(est.classes_) == [0, 1]
    assert est.predict_proba(X).shape == (30, 2)
    Xr, yr = make_data("vector", "squared", seed=7, samples=30)
    reg = cx.ConvexAttention(kind="vector", beta=0.1).fit(Xr, yr)
    assert reg.classes_ is None and reg.predict(Xr).shape == yr.shape
    assert 0.0 < reg.score(Xr, yr) <= 1.0


def test_warm_started_beta_path():
    X, y = make_data("vector", "squared", seed=8, samples=30)
    result = cx.path(X[:20], y[:20], num=5, min_ratio=0.05, kind="vector", X_test=X[20:],
                     y_test=y[20:])  # fmt: skip
    assert result.records[0]["active_tokens"] == 0  # beta_max: the zero solution
    assert all(r["status"] == "optimal" for r in result.records)
    assert np.all(np.diff(result.column("objective")) < 0)
    assert result.column("active_tokens")[-1] > 0
    assert result.column("train_score")[-1] > result.column("train_score")[0]


def test_gated_gates_are_deduplicated_and_reported():
    X, y = make_data("gated", "squared", seed=0)
    u1 = np.random.default_rng(0).standard_normal((3, n))
    u2 = np.random.default_rng(1).standard_normal((3, d))
    gates = cx.Gates(np.vstack([u1, u1, 2 * u1]), np.vstack([u2, u2, 3 * u2]))  # 9 -> 3 patterns
    program = cx.convex_program(X, y, "gated", 0.5, gates=gates)
    assert program.gates.num == 3 and program.gates.duplicates_removed == 6
    D = np.asarray(program.gates.patterns(X))
    assert np.unique(D.T, axis=0).shape[0] == 3


@pytest.mark.parametrize("N, P", [(1, 4), (7, 30), (64, 200), (1000, 100)])
def test_first_distinct_columns_agree_with_numpy_unique(N, P):
    """The packed-bytes deduplication keeps the same first columns as ``np.unique`` over the
    columns (ascending), whatever N (a multiple of 8 or not)."""
    from convextx.families.gated import first_distinct_columns

    rng = np.random.default_rng(N + P)
    D = (rng.random((N, P // 2)) < 0.5).astype(float)
    D = D[:, rng.integers(0, P // 2, P)]  # repeats, in random order
    _, first = np.unique(D.T, axis=0, return_index=True)
    np.testing.assert_array_equal(first_distinct_columns(D), np.sort(first))


def test_sampled_gates_and_patterns_match_their_definition():
    """The compiled draw equals ``sample_gates`` eagerly from ``PRNGKey(seed)`` (every seed
    of the valid range), and the kept columns of D are the gates' patterns."""
    from baselines.heads import sample_gates
    from convextx.families import gated

    for seed in (0, 7, 2**31, 2**32 - 1):
        drawn = gated.sample(n, d, 5, seed)
        eager = sample_gates(jax.random.PRNGKey(seed), 5, n, d)
        np.testing.assert_array_equal(drawn.u1, np.asarray(eager["u1"]))
        np.testing.assert_array_equal(drawn.u2, np.asarray(eager["u2"]))
    X, y = make_data("gated", "squared", seed=0)
    program = cx.convex_program(X, y, "gated", 0.5, gates=12)
    g = program.gates
    expected = np.einsum("jk,ikq,jq->ij", g.u1, np.asarray(X, dtype=float), g.u2) >= 0
    np.testing.assert_array_equal(np.asarray(program.data.D), expected.astype(float))


def test_bad_inputs_raise_clear_errors():
    X, y = make_data("vector", "squared")
    Xnan = X.copy()
    Xnan[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        cx.ConvexAttention().fit(Xnan, y)
    with pytest.raises(ValueError, match="shape \\(N, n, d\\)"):
        cx.ConvexAttention().fit(X[0], y)
    with pytest.raises(ValueError, match="one entry per sample"):
        cx.ConvexAttention().fit(X, y[:-1])
    for beta in (0, -1.0, np.inf):
        with pytest.raises(ValueError, match="beta must be a finite number > 0"):
            cx.ConvexAttention(beta=beta).fit(X, y)
    with pytest.raises(ValueError, match="unknown kind 'softmax'"):
        cx.ConvexAttention(kind="softmax").fit(X, y)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        cx.ConvexAttention(loss="hinge").fit(X, y)
    with pytest.raises(ValueError, match="unknown solver"):
        cx.ConvexAttention(solver="adam").fit(X, y)
    with pytest.raises(ValueError, match="heads=1 is too few"):
        cx.ConvexAttention(beta=1e-3, heads=1).fit(X, y)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        cx.ConvexAttention(kind="scalar", loss="logistic").fit(X, np.arange(N) % 3)
    with pytest.raises(ValueError, match="out of range for num_classes"):
        cx.convex_program(X, np.arange(N) % 4, "vector", 1.0, "cross_entropy", num_classes=3)
    with pytest.raises(ValueError, match="gates are only used by kind 'gated'"):
        cx.convex_program(X, y, "vector", 1.0, gates=4)
    with pytest.raises(ValueError, match="must have \\(n, d\\)"):
        cx.ConvexAttention(beta=0.5).fit(X, y).predict(X[:, :2])
    with pytest.raises(AttributeError, match="not fitted"):
        cx.ConvexAttention().predict(X)
