"""baselines.router_gradients: the samplers' distributions, unbiasedness of LOORF / ARMS / CARMS
against the exact gradient by enumeration (to Monte-Carlo error), the bias of straight-through,
and argument checks.

Unbiasedness is judged by z-scores: with M independent estimates of each coordinate, mean and
standard error s / sqrt(M), |mean - exact| / SE must stay below a Bonferroni bound (family-wise
error 1e-4 over the coordinates of a case), and an estimator that is known to be biased must be
flagged by the same bound (so the check can fail). Last, a smoke run of
experiments.router_gradients.
"""

import functools
import json
import math
from pathlib import Path
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import router_gradients as rg

DRAWS = 40_000  # estimates per (case, method, n)
FAMILY_ERROR = 1e-4


def _bound(coordinates: int) -> float:
    """Two-sided z bound with family-wise error FAMILY_ERROR over ``coordinates`` tests."""
    return NormalDist().inv_cdf(1 - FAMILY_ERROR / (2 * coordinates))


def _table_f(table: jax.Array):
    """f(one-hots (n, V, K)) = table[z_1, ..., z_V], multilinear in the one-hots (so it is also
    defined on the simplex, for straight-through)."""
    letters = "abcdefgh"[: table.ndim]
    spec = ",".join(f"n{c}" for c in letters) + f",{letters}->n"
    return lambda hot: jnp.einsum(spec, *(hot[:, v] for v in range(table.ndim)), table)


def _case(name):
    """(logits (V, K), f): 3 binary gates, one 4-way and two 4-way categoricals, arbitrary f."""
    rng = np.random.default_rng({"binary3": 1, "cat4": 2, "cat4x2": 3}[name])
    if name == "binary3":
        logits = jnp.stack([jnp.zeros(3), jnp.array([-1.2, 0.3, 1.5])], axis=-1)
        table = rng.standard_normal((2, 2, 2))
    elif name == "cat4":
        logits, table = jnp.array([[0.5, -0.7, 1.2, 0.0]]), rng.standard_normal(4)
    else:
        logits = jnp.array([[0.5, -0.7, 1.2, 0.0], [-1.0, 0.4, 0.2, 0.9]])
        table = rng.standard_normal((4, 4))
    return logits, _table_f(jnp.asarray(table))


@functools.cache
def _estimates(name, method, n):
    """(DRAWS estimates (M, V, K), exact gradient (V, K)) for a case."""
    logits, f = _case(name)
    exact = jax.grad(rg.expectation)(logits, f)
    keys = jax.random.split(jax.random.key(7), DRAWS)
    draws = jax.jit(jax.vmap(lambda k: rg.estimate(method, k, logits, f, n)))(keys)
    return np.asarray(draws), np.asarray(exact)


def _max_z(draws, exact):
    se = draws.std(axis=0) / math.sqrt(len(draws))
    return float(np.max(np.abs(draws.mean(axis=0) - exact) / np.where(se > 0, se, np.inf)))


UNBIASED = [
    ("binary3", "reinforce_loo"),
    ("binary3", "arms"),
    ("binary3", "carms"),
    ("cat4", "reinforce_loo"),
    ("cat4", "carms"),
    ("cat4x2", "reinforce_loo"),
    ("cat4x2", "carms"),
]


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize(("name", "method"), UNBIASED)
def test_score_function_estimators_are_unbiased(name, method, n):
    draws, exact = _estimates(name, method, n)
    assert np.all(np.isfinite(draws))
    assert _max_z(draws, exact) < _bound(exact.size)


def test_the_check_flags_a_biased_estimator():
    """LOORF's coefficients on ARMS's antithetic draws (the debiasing factor left out) are
    biased, and the z-score check says so; so does straight-through."""
    logits, f = _case("binary3")
    exact = np.asarray(jax.grad(rg.expectation)(logits, f))

    def loo_on_antithetic(key):
        z = rg.sample_arms(key, logits, 4)
        values = f(jax.nn.one_hot(z, 2))[:, None]
        return rg.score_gradient(logits, z, rg.loo_coefficients(jnp.broadcast_to(values, z.shape)))

    keys = jax.random.split(jax.random.key(8), DRAWS)
    draws = np.asarray(jax.jit(jax.vmap(loo_on_antithetic))(keys))
    assert _max_z(draws, exact) > _bound(exact.size)
    st, exact = _estimates("binary3", "straight_through", 4)
    assert np.all(np.isfinite(st)) and _max_z(st, exact) > _bound(exact.size)


def test_variance_is_measured_per_estimator():
    """Sanity only (the comparison is the experiment's): every estimator has a finite, positive
    variance, and more samples do not raise LOORF's."""
    for name, method in [*UNBIASED, ("cat4", "straight_through")]:
        for n in (2, 4):
            draws, _ = _estimates(name, method, n)
            variance = draws.var(axis=0).sum()
            assert np.isfinite(variance) and variance > 0
    assert (
        _estimates("cat4", "reinforce_loo", 4)[0].var(0).sum()
        < _estimates("cat4", "reinforce_loo", 2)[0].var(0).sum()
    )


def test_expectation_enumerates_and_its_gradient_is_exact():
    logits = jnp.array([[0.2, -0.3, 0.5]])
    values = jnp.array([1.0, -2.0, 0.5])

    def f(hot):
        return hot[:, 0] @ values

    q = jax.nn.softmax(logits[0])
    assert float(rg.expectation(logits, f)) == pytest.approx(float(q @ values), abs=1e-6)
    grad = jax.grad(rg.expectation)(logits, f)[0]
    np.testing.assert_allclose(grad, q * (values - q @ values), atol=1e-6)  # d/dphi of q . v
    with pytest.raises(ValueError, match="configurations to enumerate"):
        rg.expectation(jnp.zeros((17, 2)), f)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_dirichlet_copula_has_uniform_marginals_and_its_bivariate_cdf(n):
    u = np.asarray(rg.dirichlet_copula(jax.random.key(0), n, (100_000,)))
    assert u.shape == (n, 100_000) and u.min() > 0 and u.max() <= 1
    for grid in (0.1, 0.3, 0.5, 0.8):  # P(u_i <= x) = x, within 5 binomial SEs
        np.testing.assert_allclose((u <= grid).mean(axis=1), grid, atol=5 * 0.5 / math.sqrt(1e5))
    for x, y in ((0.3, 0.3), (0.5, 0.7), (0.9, 0.6)):
        joint = float(np.mean((u[0] <= x) & (u[1] <= y)))
        assert joint == pytest.approx(float(rg.dirichlet_copula_cdf(x, y, n)), abs=0.008)
    if n == 2:
        np.testing.assert_allclose(u[0] + u[1], 1.0, atol=1e-6)  # antithetic pair


@pytest.mark.parametrize("n", [2, 3, 5])
def test_carms_draws_have_the_marginal_and_the_pair_pmf_of_the_weights(n):
    logits = jnp.array([0.3, -1.0, 0.8, 0.1])
    q = np.asarray(jax.nn.softmax(logits))
    M = 100_000
    z = np.asarray(rg.sample_carms(jax.random.key(1), jnp.broadcast_to(logits, (M, 4)), n))
    assert z.shape == (n, M)
    np.testing.assert_allclose(np.bincount(z[-1], minlength=4) / M, q, atol=5 * 0.5 / math.sqrt(M))
    pair = np.zeros((4, 4))
    np.add.at(pair, (z[0], z[1]), 1.0 / M)
    w = np.asarray(rg.carms_pair_weights(logits, n))
    assert np.all(np.diag(w) == 0) and np.all(w[~np.eye(4, dtype=bool)] > 0)
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(pair[off], (np.outer(q, q) / np.where(w > 0, w, 1))[off], atol=0.005)
    if n == 2:  # antithetic: the two draws never share the least likely category
        assert pair[np.argmin(q), np.argmin(q)] == 0


def test_arms_draws_have_the_marginal_and_carms_agrees_with_arms_for_two_categories():
    logits = jnp.stack([jnp.zeros(3), jnp.array([-1.5, 0.2, 1.0])], axis=-1)  # p < and > 1/2
    b = np.asarray(rg.sample_arms(jax.random.key(2), jnp.broadcast_to(logits, (50_000, 3, 2)), 4))
    np.testing.assert_allclose(
        b.mean(axis=(0, 1)), jax.nn.sigmoid(logits[:, 1]), atol=5 * 0.5 / math.sqrt(2e5)
    )
    # f of each variable alone: CARMS's pairwise weights reduce to ARMS's debiasing factor
    z = rg.sample_arms(jax.random.key(3), logits, 4)
    f = jnp.asarray(np.random.default_rng(0).standard_normal(2))[z]
    np.testing.assert_allclose(
        rg.carms_coefficients(logits, z, f), rg.arms_coefficients(logits, f), rtol=1e-5, atol=1e-7
    )


def test_surrogate_gradient_is_the_score_gradient_and_reads_zero():
    logits = jnp.array([[0.1, 0.9, -0.4], [0.0, -1.0, 2.0]])
    z = rg.sample_independent(jax.random.key(4), logits, 5)
    c = jnp.asarray(np.random.default_rng(1).standard_normal(z.shape))
    assert float(rg.surrogate(logits, z, c)) == 0.0
    np.testing.assert_allclose(
        jax.grad(rg.surrogate)(logits, z, c), rg.score_gradient(logits, z, c), atol=1e-6
    )
    per_copy = jnp.broadcast_to(logits, (5, *logits.shape))  # one logits set per sample
    np.testing.assert_allclose(
        jax.grad(rg.surrogate)(per_copy, z, c).sum(0), rg.score_gradient(logits, z, c), atol=1e-6
    )


def test_gumbel_softmax_st_is_one_hot_with_the_softmax_marginal():
    logits = jnp.array([0.5, -0.5, 1.0])
    hot = np.asarray(rg.gumbel_softmax_st(jax.random.key(5), logits, 50_000, temperature=0.5))
    assert hot.shape == (50_000, 3)
    np.testing.assert_allclose(hot.sum(-1), 1.0, atol=1e-6)
    assert set(np.unique(hot.round(6))) <= {0.0, 1.0}
    np.testing.assert_allclose(hot.mean(0), jax.nn.softmax(logits), atol=5 * 0.5 / math.sqrt(5e4))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: rg.sample_carms(jax.random.key(0), jnp.zeros(3), 1), ValueError, "num_samples"),
        (
            lambda: rg.sample_independent(jax.random.key(0), jnp.zeros((2, 1)), 2),
            ValueError,
            "K >= 2",
        ),
        (lambda: rg.sample_arms(jax.random.key(0), jnp.zeros((2, 3)), 2), ValueError, "binary"),
        (lambda: rg.loo_coefficients(jnp.zeros((1, 3))), ValueError, "num_samples"),
        (lambda: rg.sample("loo", jax.random.key(0), jnp.zeros(3), 2), ValueError, "method"),
        (
            lambda: rg.gumbel_softmax_st(jax.random.key(0), jnp.zeros(3), 1, 0.0),
            ValueError,
            "temperature",
        ),
        (lambda: rg.dirichlet_copula(jax.random.key(0), 2.0, (3,)), TypeError, "num_samples"),
        (
            lambda: rg.estimate(
                "carms", jax.random.key(0), jnp.zeros((1, 3)), lambda h: h.sum(), 2
            ),
            ValueError,
            "one value per sample",
        ),
    ],
)
def test_bad_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_router_gradients_experiment_quick(tmp_path):
    """experiments.router_gradients end to end at its tiny size: every part has its units, the
    moments are consistent (MSE = variance + |bias|^2), the MoE runs train, and a resume redoes
    nothing."""
    from experiments import router_gradients as experiment

    path = tmp_path / "rg.json"
    results = experiment.main(["--quick", "--out", str(path), "--no-progress"])
    data = json.loads(path.read_text())
    assert Path(results["plot"]).exists()
    records = data["records"]
    assert {experiment.unit_key(r) for r in records} == set(experiment.units(data["config"]))
    for r in records:
        if r["part"] == "moe_training":
            assert r["status"] == "completed" and np.isfinite(r["test_loss"])
            assert r["evaluations_per_step"] == (1 if r["router"] == "topk" else 2)
        else:
            assert r["mse"] == pytest.approx(r["variance"] + r["bias_norm"] ** 2, rel=1e-9)
            assert r["relative_mse"] == pytest.approx(r["mse"] / r["exact_norm"] ** 2, rel=1e-9)
    again = experiment.main(["--quick", "--out", str(path), "--no-progress", "--resume"])

    def timing(r):
        return r.get("seconds", r.get("train_seconds"))

    assert [timing(r) for r in again["records"]] == [timing(r) for r in records]
