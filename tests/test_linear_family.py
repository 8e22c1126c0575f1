"""Kind "linear" (P5): multi-head linear attention as a nuclear-norm program (issue 17).

Every check compares against an independent route: cvxpy programs written here from the
definition of the network (a loop over tokens, not the family's S = X^T X / n), numpy SVDs,
and a network forward written out head by head.
"""

import functools
import warnings

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import convextx as cx
import solvers
from baselines import linear_attention as la
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.families import linear
from convextx.families.linear import MAX_SDP_SIDE, certified_excess

N, n, d, c = 14, 4, 3, 3


def data(loss, seed=0, samples=N, outputs=c):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, n, d))
    if loss == "cross_entropy":
        y = rng.integers(0, outputs, samples)
        y[:outputs] = np.arange(outputs)  # every class present
    else:
        y = rng.standard_normal((samples, outputs))
    weights = rng.uniform(0.5, 2.0, samples)
    return X, y, weights


def features(X, query=-1):
    """(N, d^2, d): P_i[(a, b), e] = (1/n) sum_j x_q[a] x_j[b] x_j[e], token by token."""
    samples, length, dim = X.shape
    P = np.zeros((samples, dim * dim, dim))
    for i in range(samples):
        xq = X[i, query]
        for j in range(length):
            P[i] += np.outer(np.kron(xq, X[i, j]), X[i, j]) / length
    return P


def network(heads, X, query=-1):
    """f(X_i) = (1/n) sum_h sum_j (x_q^T A_h x_j) V_h^T x_j, head by head, token by token."""
    A, V = np.asarray(heads["A"]), np.asarray(heads["V"])
    out = np.zeros((X.shape[0], V.shape[2]))
    for i in range(X.shape[0]):
        for h in range(A.shape[0]):
            for j in range(X.shape[1]):
                out[i] += (X[i, query] @ A[h] @ X[i, j]) * (V[h].T @ X[i, j]) / X.shape[1]
    return out


def loss_value(loss, pred, y, weights):
    if loss == "squared":
        per = 0.5 * np.sum((pred - y) ** 2, axis=1)
    else:
        top = pred.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(pred - top).sum(axis=1))
        per = lse - pred[np.arange(len(y)), y]
    return float(np.sum(weights * per))


def cvxpy_optimum(X, y, weights, beta, loss, outputs=c, query=-1):
    """The nuclear-norm program written from the definition, solved by Clarabel."""
    P = features(X, query)
    dim = X.shape[2]
    M = cp.Variable((dim * dim, dim * outputs))
    columns = [M[:, e * outputs : (e + 1) * outputs] for e in range(dim)]  # (d^2, c) each
    preds = [sum(P[i][:, e] @ columns[e] for e in range(dim)) for i in range(X.shape[0])]
    F = cp.vstack(preds)
    if loss == "squared":
        fit = 0.5 * cp.sum(cp.multiply(weights[:, None], cp.square(F - y)))
    else:
        onehot = np.eye(outputs)[y]
        per = cp.log_sum_exp(F, axis=1) - cp.sum(cp.multiply(onehot, F), axis=1)
        fit = cp.sum(cp.multiply(weights, per))
    problem = cp.Problem(cp.Minimize(fit + beta * cp.normNuc(M)))
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return problem.value, M.value


# ------------------------------------------------------------------ penalty


@pytest.mark.parametrize("shape", [(5, 3), (3, 6), (2, 4, 3)])
def test_nuclear_prox_matches_cvxpy(shape):
    rng = np.random.default_rng(1)
    V = rng.standard_normal(shape)
    penalty = solvers.NuclearNorm(0.7)
    step = 0.9
    with jax.enable_x64(True):
        prox = np.asarray(penalty.prox(jnp.asarray(V), jnp.asarray(step)))
        value = float(penalty.value(jnp.asarray(V)))
        dual = float(penalty.dual_norm(jnp.asarray(V)))
    blocks = V.reshape(-1, *shape[-2:])
    expected = []
    for block in blocks:
        Z = cp.Variable(block.shape)
        objective = 0.5 * cp.sum_squares(Z - block) + step * 0.7 * cp.normNuc(Z)
        cp.Problem(cp.Minimize(objective)).solve(solver="CLARABEL", tol_gap_abs=1e-12)
        expected.append(Z.value)
    np.testing.assert_allclose(prox, np.reshape(expected, shape), atol=1e-6)
    singular = np.linalg.svd(blocks, compute_uv=False)
    assert value == pytest.approx(0.7 * singular.sum(), rel=1e-12)
    assert dual == pytest.approx(singular.max(), rel=1e-12)  # the spectral norm
    assert np.all(np.asarray(penalty.project(jnp.asarray(V))) == V)


def _shrink_by_numpy_svd(V, threshold):
    u, s, wt = np.linalg.svd(V, full_matrices=False)
    return (u * np.maximum(s - threshold, 0.0)[..., None, :]) @ wt


@pytest.mark.parametrize("shape", [(300, 40), (40, 300), (3, 60, 25)])
@pytest.mark.parametrize("spread", [1.0, 1e3, 1e7])  # s_max / threshold: 1e7 > GRAM_RATIO
def test_float64_gram_prox_is_exact_on_hard_spectra(shape, spread):
    """The float64 prox (Gram eigenvectors, column-norm singular values) against numpy's SVD:
    low rank, repeated singular values, values straddling the threshold, and a spread beyond
    GRAM_RATIO (the SVD fallback)."""
    rng = np.random.default_rng(4)
    rows, cols = shape[-2:]
    k = min(rows, cols)
    q1 = np.linalg.qr(rng.standard_normal((*shape[:-2], rows, k)))[0]
    q2 = np.linalg.qr(rng.standard_normal((*shape[:-2], cols, k)))[0]
    s = np.geomspace(spread, 1e-3, k)
    s[k // 4 : k // 4 + 5] = s[k // 4]  # a cluster
    s[k // 2 :] = 0.0  # rank k / 2
    s[k // 3] = 1.0 + 1e-9  # just above the threshold 1
    V = (q1 * s[..., None, :]) @ np.swapaxes(q2, -1, -2)
    penalty = solvers.NuclearNorm(0.5)
    with jax.enable_x64(True):
        prox = np.asarray(penalty.prox(jnp.asarray(V), jnp.asarray(2.0)))  # threshold 1
        dual = float(penalty.dual_norm(jnp.asarray(V)))
    expected = _shrink_by_numpy_svd(V, 1.0)
    assert np.max(np.abs(prox - expected)) <= 1e-11 * max(spread, 1.0)
    assert dual == pytest.approx(np.linalg.svd(V, compute_uv=False).max(), rel=1e-13)


def test_nuclear_norm_validates_like_the_other_penalties():
    with pytest.raises(ValueError, match="beta"):
        solvers.NuclearNorm(0.0)
    with pytest.raises(ValueError, match=">= 2 axes"):
        solvers.Problem(lambda x: x, (4,), solvers.SquaredLoss(np.zeros(4)), solvers.NuclearNorm(1))
    penalty = solvers.NuclearNorm(2.0)
    assert float(penalty.with_beta(3.0).beta) == 3.0
    assert float(penalty.scaled(0.5).beta) == 1.0
    leaves, treedef = jax.tree_util.tree_flatten(penalty)
    assert len(leaves) == 1 and jax.tree_util.tree_unflatten(treedef, leaves) == penalty


def test_fista_certificate_bounds_the_true_suboptimality():
    """A generic least-squares problem with a nuclear-norm penalty, against cvxpy."""
    rng = np.random.default_rng(2)
    B = rng.standard_normal((20, 4 * 5))
    b = rng.standard_normal(20)
    beta = 0.8
    Z = cp.Variable((4, 5))
    fit = 0.5 * cp.sum_squares(B @ cp.vec(Z, order="C") - b)
    reference = cp.Problem(cp.Minimize(fit + beta * cp.normNuc(Z)))
    reference.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    with jax.enable_x64(True):
        predict = jax.tree_util.Partial(lambda B, x: B @ x.ravel(), jnp.asarray(B))
        problem = solvers.Problem(
            predict, (4, 5), solvers.SquaredLoss(b), solvers.NuclearNorm(beta), dtype="float64"
        )
        for max_iter in (3, 10, 30, 5000):
            result = solvers.solve(problem, tol=1e-10, max_iter=max_iter)
            assert result.gap >= result.objective - reference.value - 1e-9
            assert result.dual <= reference.value + 1e-9
    assert result.status == "optimal"
    assert result.objective == pytest.approx(reference.value, rel=1e-7)


# ------------------------------------------------------------------ family


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_optimum_and_recovered_heads_match_an_independent_cvxpy_program(loss):
    X, y, weights = data(loss, seed=3)
    beta = 0.3
    optimum, _ = cvxpy_optimum(X, y, weights, beta, loss)
    with jax.enable_x64(True):
        program = cx.convex_program(
            X, y, kind="linear", beta=beta, loss=loss, weights=weights, dtype="float64"
        )
        assert program.shape == (d * d, d * c)
        fista = program.solve(tol=1e-10, max_iter=100_000)
        exact = program.solve(method="cvxpy", tol=1e-8)
    for result in (fista, exact):
        assert result.status == "optimal"
        assert result.objective == pytest.approx(optimum, rel=1e-6)
        assert result.gap >= result.objective - optimum - 1e-9 * abs(optimum)
        heads = cx.recover_heads(program, result.x)
        assert heads["A"].shape[1:] == (d, d) and heads["V"].shape[1:] == (d, c)
        rank = np.linalg.matrix_rank(np.asarray(result.x), tol=1e-6)
        assert heads["A"].shape[0] <= max(rank, 1) + 1
        pred = network(heads, X)
        decay = 0.5 * beta * (np.sum(heads["A"] ** 2) + np.sum(heads["V"] ** 2))
        assert loss_value(loss, pred, y, weights) + decay == pytest.approx(optimum, rel=1e-6)
        excess = certified_excess(program, heads)
        assert excess.objective == pytest.approx(optimum, rel=1e-6)
        assert 0.0 <= excess.excess <= 1e-6 * abs(optimum)
    # without weights, the library's twin objective is the same network's objective
    unweighted = cx.convex_program(X, y, kind="linear", beta=beta, loss=loss)
    heads = cx.recover_heads(unweighted, unweighted.solve(tol=1e-10, max_iter=100_000).x)
    value = cx.nonconvex_objective(heads, X, y, beta, kind="linear", loss=loss)
    decay = 0.5 * beta * (np.sum(heads["A"] ** 2) + np.sum(heads["V"] ** 2))
    assert value == pytest.approx(loss_value(loss, network(heads, X), y, np.ones(N)) + decay)


def test_map_adjoint_and_dense_matrix_agree_with_the_definition():
    X, _, _ = data("squared", seed=4)
    rng = np.random.default_rng(4)
    y = rng.standard_normal((N, c))
    for query in (-1, 0, 2):
        with jax.enable_x64(True):
            program = cx.convex_program(X, y, kind="linear", query=query, dtype="float64")
            M = rng.standard_normal(program.shape)
            pred = np.asarray(program.problem.predict(jnp.asarray(M)))
            P = features(X, query)
            expected = np.einsum("irm,rmk->ik", P, M.reshape(d * d, d, c))
            np.testing.assert_allclose(pred, expected, atol=1e-12)
            matrix = program.family.dense_matrix(program)
            np.testing.assert_allclose(matrix @ M.ravel(), pred.ravel(), atol=1e-12)
            U = rng.standard_normal((N, c))
            adjoint = np.asarray(program.problem.adjoint(jnp.asarray(U)))
            np.testing.assert_allclose(adjoint.ravel(), matrix.T @ U.ravel(), atol=1e-12)


def test_gap_bounds_the_true_suboptimality_along_the_iterations():
    X, y, weights = data("cross_entropy", seed=5)
    beta = 0.2
    optimum, _ = cvxpy_optimum(X, y, weights, beta, "cross_entropy")
    with jax.enable_x64(True):
        program = cx.convex_program(
            X, y, kind="linear", beta=beta, loss="cross_entropy", weights=weights
        )
        for max_iter in (2, 20, 200):
            result = program.solve(tol=1e-12, max_iter=max_iter)
            assert result.objective >= optimum - 1e-9
            assert result.gap >= result.objective - optimum - 1e-9


def test_bad_query_and_too_large_d_are_clear_errors():
    X, y, _ = data("squared")
    with pytest.raises(ValueError, match=r"query must be an integer in \[-4, 3\]; got 4"):
        cx.convex_program(X, y, kind="linear", query=n)
    with pytest.raises(ValueError, match="query"):
        cx.convex_program(X, y, kind="linear", query=-n - 1)
    with pytest.raises(TypeError, match="query must be an integer"):
        cx.convex_program(X, y, kind="linear", query=1.0)
    with pytest.raises(ValueError, match="query"):
        cx.ConvexAttention(kind="vector", query=0).fit(X, y)
    with pytest.raises(ValueError, match="query"):
        cx.ConvexAttention(kind="linear", query=7).fit(X, y)
    big = np.random.default_rng(0).standard_normal((20, 2, 17))  # full rank: no reduction
    program = cx.convex_program(big, np.ones(20), kind="linear")
    assert MAX_SDP_SIDE < 17 * 17 + 17
    with pytest.raises(ValueError, match=r"d=17"):
        program.solve(method="cvxpy")


def test_low_rank_data_are_solved_in_reduced_coordinates_exactly():
    """Tokens in a 2-d subspace of R^4: the program runs on Z (r_q r_s, r_s c) = (4, 6), not
    (16, 12), and matches the full program of the definition; its recovered heads (of the
    original d) compute the convex model's outputs even on inputs outside the subspace."""
    rng = np.random.default_rng(9)
    basis = rng.standard_normal((2, 4))
    X = rng.standard_normal((N, n, 2)) @ basis
    y = rng.standard_normal((N, 3))
    beta = 0.2
    optimum, _ = cvxpy_optimum(X, y, np.ones(N), beta, "squared")
    with jax.enable_x64(True):
        program = cx.convex_program(X, y, kind="linear", beta=beta)
        assert program.shape == (4, 6)
        result = program.solve(tol=1e-10, max_iter=100_000)
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    heads = cx.recover_heads(program, result.x)
    assert heads["A"].shape[1:] == (4, 4)
    assert cx.nonconvex_objective(heads, X, y, beta, kind="linear") == pytest.approx(
        optimum, rel=1e-6
    )
    fresh = rng.standard_normal((6, n, 4))
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            np.asarray(program.predict(result.x, fresh)), network(heads, fresh), atol=1e-8
        )
    M = la.to_matrix(heads)
    np.testing.assert_allclose(linear.full_matrix(program, result.x), M, atol=1e-10)
    np.testing.assert_allclose(linear.reduced_matrix(program, M), result.x, atol=1e-10)


def test_estimator_fit_predict_and_query():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, n, d))
    teacher = {"A": rng.standard_normal((1, d, d)), "V": rng.standard_normal((1, d, 2))}
    labels = np.argmax(network(teacher, X, query=1), axis=1)
    est = cx.ConvexAttention(kind="linear", beta=1e-3, query=1).fit(X, labels)
    assert est.status_ == "optimal"
    assert est.get_params()["query"] == 1 and clone(est).query == 1
    assert est.score(X, labels) == 1.0
    proba = est.predict_proba(X)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(axis=1), 1.0)
    # the recovered heads compute the convex model's outputs, at the same query position
    np.testing.assert_allclose(network(est.heads_, X, query=1), est.decision_function(X), atol=1e-8)
    assert int(est.heads_["query"]) == 1
    assert est.attention_.shape == (est.heads_["A"].shape[0], d, d)
    assert est.active_tokens_.size == n  # every position contributes here
    norms = est.program_.token_norms(est.coef_)
    assert norms.shape == (n,) and np.all(norms > 0)
    with warnings.catch_warnings():  # only its outputs matter here
        warnings.simplefilter("ignore", ConvergenceWarning)
        other = cx.ConvexAttention(kind="linear", beta=1e-3, max_iter=500).fit(X, labels)
    assert not np.allclose(other.decision_function(X), est.decision_function(X))


# ------------------------------------------------------------ nonconvex twin


def _per_sample_cross_entropy(pred, labels):
    return jax.nn.logsumexp(pred, -1) - jnp.take_along_axis(pred, labels[:, None], 1)[:, 0]


def test_adam_never_goes_below_the_certified_optimum_and_excess_is_certified():
    X, y, _ = data("cross_entropy", seed=7)
    beta = 0.2
    optimum, _ = cvxpy_optimum(X, y, np.ones(N), beta, "cross_entropy")
    with jax.enable_x64(True):
        program = cx.convex_program(X, y, kind="linear", beta=beta, loss="cross_entropy")
        certified = program.solve(tol=1e-10, max_iter=100_000)
        objective = la.objective(_per_sample_cross_entropy)
        trainer = Trainer(objective, make_optimizer("adam", 3e-2), penalty=la.WeightDecay(beta))
        assert trainer == Trainer(
            la.objective(_per_sample_cross_entropy), make_optimizer("adam", 3e-2),
            penalty=la.WeightDecay(beta),
        )  # fmt: skip
        finals = []
        for seed, h in enumerate((2, 9)):
            params = la.init_params(jax.random.PRNGKey(seed), h, d, c)
            run = trainer.run(params, (jnp.asarray(X), jnp.asarray(y)), 1500, progress=False)
            assert min(run.history["objective"]) >= certified.dual - 1e-8
            heads = la.to_heads(run.params)
            excess = certified_excess(program, heads)
            true_excess = excess.objective - optimum
            assert excess.objective == pytest.approx(
                cx.nonconvex_objective(heads, X, y, beta, kind="linear", loss="cross_entropy")
            )
            assert excess.excess >= true_excess - 1e-9 >= -1e-8
            assert excess.convex <= excess.objective + 1e-9  # beta |M|_* <= weight decay
            tighter = certified_excess(program, heads, dual=certified.dual)
            assert true_excess - 1e-9 <= tighter.excess <= excess.excess + 1e-12
            finals.append(excess.objective)
        recovered = certified_excess(program, cx.recover_heads(program, certified.x))
        assert abs(recovered.excess) <= 1e-7 * abs(optimum)
    assert min(finals) >= optimum - 1e-8
    assert min(finals) <= 1.05 * optimum  # the runs get close: the bound is informative


def test_twin_forward_penalty_and_matrix():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((5, n, d))
    heads = {"A": rng.standard_normal((2, d, d)), "V": rng.standard_normal((2, d, c))}
    np.testing.assert_allclose(np.asarray(la.forward(heads, X)), network(heads, X), atol=1e-5)
    for query in (0, 2):
        np.testing.assert_allclose(
            np.asarray(la.forward(heads, X, query)), network(heads, X, query), atol=1e-5
        )
    M = la.to_matrix(heads)
    expected = sum(np.outer(heads["A"][h].ravel(), heads["V"][h].ravel()) for h in range(2))
    np.testing.assert_allclose(M, expected)
    decay = float(la.penalty(heads, 0.4))
    assert decay == pytest.approx(0.2 * (np.sum(heads["A"] ** 2) + np.sum(heads["V"] ** 2)))
    assert decay >= 0.4 * np.linalg.svd(M, compute_uv=False).sum()
    with pytest.raises(ValueError, match="query"):
        la.forward(heads, X, query=n)
    with pytest.raises(ValueError, match="heads"):
        la.forward({"A": heads["A"]}, X)
    assert la.objective(functools.partial(_per_sample_cross_entropy)) != la.objective(
        _per_sample_cross_entropy, query=0
    )


def test_twin_forward_and_its_gradient_never_hold_an_n_by_d_tensor_per_head():
    """An (N, h, n, d) intermediate would take 1.7e11 bytes (float64) at N = 4096, n = 128, h = 144, d = 274:
    the largest array the forward or its gradient builds is (N, n, d) or (N, h, max(n, d))."""
    N, n_, d_, h, c_ = 3, 11, 7, 5, 2  # distinct sizes, so that shapes tell the axes apart
    X = jnp.zeros((N, n_, d_))
    params = {"A": jnp.zeros((h, d_, d_)), "V": jnp.zeros((h, d_, c_))}
    limit = max(N * n_ * d_, N * h * max(n_, d_), h * d_ * d_)
    for fn in (
        lambda p: la.forward(p, X),
        jax.grad(lambda p: jnp.sum(la.forward(p, X) ** 2)),
        lambda p: la.attention_scores(p, X),
    ):
        jaxpr = jax.make_jaxpr(fn)(params).jaxpr
        sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
        assert max(sizes) <= limit


@pytest.mark.slow
def test_pairs_context_lets_one_linear_attention_layer_recall():
    """The pair feature makes recall one bilinear match: a convex linear-attention fit."""
    task = cx.tasks.load(
        "associative_recall", N_train=300, N_test=100, num_pairs=2, num_keys=3, num_values=3,
        context="pairs",
    )  # fmt: skip
    est = cx.ConvexAttention(kind="linear", beta=1e-3, max_iter=3000, tol=1e-4)
    est.fit(task.X_train, task.y_train)
    assert est.score(task.X_test, task.y_test) >= 0.95


def test_a_matrix_too_large_for_cvxpy_names_the_sizes():
    X = np.random.default_rng(0).standard_normal((600, 4, 40))
    program = cx.convex_program(X, np.arange(600) % 3, "linear", 0.1, "cross_entropy")
    with pytest.raises(ValueError, match=r"N, n, d = 600, 4, 40: its matrix has 1800 x 192000"):
        program.solve(method="cvxpy")
