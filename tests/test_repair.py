"""Interpolation, REPAIR, the barrier metric and REPAIR-merged MLPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_align import inputs, random_mlp

from baselines import align, mlp, repair

WIDTHS = (16, 16, 16)


def _net(seed: int, layer_norm: bool = False) -> mlp.Params:
    return random_mlp(seed, WIDTHS, layer_norm)


def test_interpolate_hits_both_endpoints_and_is_affine():
    a, b = _net(0), _net(1)
    for alpha, expect in ((0.0, a), (1.0, b)):
        for x, y in zip(
            jax.tree_util.tree_leaves(repair.interpolate(a, b, alpha)),
            jax.tree_util.tree_leaves(expect),
            strict=True,
        ):
            np.testing.assert_array_equal(x, y)
    mid = repair.interpolate(a, b, 0.25)
    np.testing.assert_allclose(
        mid["layers"][1]["w"], 0.75 * a["layers"][1]["w"] + 0.25 * b["layers"][1]["w"]
    )
    with pytest.raises(ValueError, match="alpha"):
        repair.interpolate(a, b, 1.5)
    with pytest.raises(ValueError, match="structure"):
        repair.interpolate(a, {"layers": a["layers"][:-1]}, 0.5)


@pytest.mark.parametrize(
    ("layer_norm", "site"), [(False, "linear"), (True, "linear"), (True, "norm")]
)
def test_repair_sets_every_unit_to_its_target_statistics(layer_norm, site):
    a, b = _net(2, layer_norm), _net(3, layer_norm)
    b = align.align_mlp(a, b, inputs())
    X, alpha = inputs(), 0.4
    targets = repair.interpolate_stats(
        repair.neuron_stats(a, X, site=site), repair.neuron_stats(b, X, site=site), alpha
    )
    naive = repair.neuron_stats(repair.interpolate(a, b, alpha), X, site=site)
    # variance collapse: without REPAIR the interpolated net misses the targets
    assert (
        max(float(jnp.abs(s.std - t.std).max()) for s, t in zip(naive, targets, strict=True)) > 0.05
    )
    repaired = repair.repair_interpolate(a, b, alpha, X, site=site)
    assert jax.tree_util.tree_structure(repaired) == jax.tree_util.tree_structure(a)
    for got, want in zip(repair.neuron_stats(repaired, X, site=site), targets, strict=True):
        np.testing.assert_allclose(got.mean, want.mean, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.std, want.std, rtol=1e-10, atol=1e-12)


def test_repair_at_an_endpoint_returns_that_network():
    a, b = _net(4), _net(5)
    X = inputs()
    at_a = repair.repair_interpolate(a, b, 0.0, X)
    np.testing.assert_allclose(mlp.apply(at_a, X), mlp.apply(a, X), rtol=0, atol=1e-10)


def test_repair_checks_its_arguments():
    a = _net(0)
    X = inputs()
    with pytest.raises(ValueError, match="site"):
        repair.neuron_stats(a, X, site="output")
    with pytest.raises(ValueError, match="LayerNorm"):
        repair.neuron_stats(a, X, site="norm")
    with pytest.raises(ValueError, match="targets"):
        repair.repair(a, X, repair.neuron_stats(a, X)[:-1])
    with pytest.raises(ValueError, match="X must have shape"):
        repair.neuron_stats(a, X[:, :3])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        repair.neuron_stats(a, bad)


def test_barrier_matches_a_closed_form_on_a_toy_path():
    """L(p) = 1 - cos(p): along the straight path 0 -> 2 pi the gap is 1 - cos(2 pi a),
    largest (2) at a = 0.5; a custom path p(a) = 2 pi a^2 moves the maximum to a = sqrt(1/2)."""
    eval_fn = lambda p: {"loss": 1.0 - jnp.cos(p["x"])}  # noqa: E731
    a, b = {"x": jnp.array(0.0)}, {"x": jnp.array(2 * np.pi)}
    alphas = np.linspace(0, 1, 21)
    res = repair.barrier(eval_fn, a, b, alphas)
    np.testing.assert_allclose(res.curves["loss"], 1 - np.cos(2 * np.pi * alphas), atol=1e-12)
    assert res.endpoints["loss"] == pytest.approx((0.0, 0.0), abs=1e-12)
    assert res.barrier["loss"] == pytest.approx(2.0)
    assert res.argmax["loss"] == pytest.approx(0.5)
    squared = repair.barrier(
        eval_fn, a, b, np.linspace(0, 1, 101), interpolate=lambda p, q, t: {"x": q["x"] * t**2}
    )
    assert squared.argmax["loss"] == pytest.approx(np.sqrt(0.5), abs=0.01)


def test_barrier_of_a_convex_loss_is_not_positive():
    target = jnp.array([1.0, -2.0, 0.5])
    eval_fn = lambda p: {"sq": jnp.sum((p["w"] - target) ** 2)}  # noqa: E731
    res = repair.barrier(eval_fn, {"w": jnp.zeros(3)}, {"w": jnp.array([3.0, 1.0, -1.0])})
    assert res.barrier["sq"] <= 1e-12
    assert (res.curves["sq"][1:-1] < np.interp(res.alphas, [0, 1], res.endpoints["sq"])[1:-1]).all()


def test_barrier_and_reduction_check_their_arguments():
    eval_fn = lambda p: {"v": p["x"]}  # noqa: E731
    a = {"x": jnp.array(0.0)}
    with pytest.raises(ValueError, match="alphas"):
        repair.barrier(eval_fn, a, a, [0.0, 1.2])
    with pytest.raises(ValueError, match="mapping"):
        repair.barrier(lambda p: p["x"], a, a)
    with pytest.raises(ValueError, match="before"):
        repair.relative_reduction(0.0, 0.1)
    assert repair.relative_reduction(0.4, 0.1) == pytest.approx(0.75)


@pytest.fixture(scope="module")
def digits_pair():
    """Two 64-64-64 ReLU MLPs trained on sklearn digits from different seeds (fit ~100%)."""
    from baselines.optim import make_optimizer
    from baselines.train import Trainer
    from convextx.tasks import digits

    task = digits(seed=0)
    X_train = task.X_train.reshape(task.n_train, -1)
    X_test = task.X_test.reshape(task.n_test, -1)
    cfg = mlp.MLPConfig(X_train.shape[1], (64, 64, 64), 10)
    trainer = Trainer(
        mlp.objective(), make_optimizer("adam", 1e-3), penalty=mlp.WeightDecay(3.0), batch_size=128
    )
    nets = [
        trainer.run(
            mlp.init(jax.random.PRNGKey(seed), cfg),
            (X_train, task.y_train),
            500,
            seed=seed,
            log_every=500,
            progress=False,
        )
        for seed in (0, 1)
    ]
    for net in nets:
        assert net.history["train_accuracy"][-1] > 0.99
    test = jax.jit(
        lambda p: {
            "loss": mlp.cross_entropy(p, X_test, task.y_test),
            "error": mlp.error_rate(p, X_test, task.y_test),
        }
    )
    return nets[0].params, nets[1].params, X_train, test


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_repair_and_alignment_lower_the_barrier_of_trained_mlps(digits_pair, method):
    a, b, X_train, test = digits_pair
    aligned = align.align_mlp(a, b, X_train, method=method)
    alphas = np.linspace(0, 1, 5)
    naive = repair.barrier(test, a, b, alphas)
    permuted = repair.barrier(test, a, aligned, alphas)
    repaired = repair.barrier(
        test,
        a,
        aligned,
        alphas,
        interpolate=lambda p, q, t: repair.repair_interpolate(p, q, t, X_train),
    )
    # measured (float64, this pair): loss barrier naive 1.54, permuted 0.24 (activation) / 0.27
    # (weight), + REPAIR 0.093 / 0.107; error barrier 0.56, 0.061 / 0.072, 0.017 / 0.046
    assert permuted.barrier["loss"] < 0.3 * naive.barrier["loss"]
    assert repaired.barrier["loss"] < 0.6 * permuted.barrier["loss"]
    assert permuted.barrier["error"] < 0.3 * naive.barrier["error"]
    assert repaired.barrier["error"] < permuted.barrier["error"] - 0.01
    assert repair.relative_reduction(permuted.barrier["loss"], repaired.barrier["loss"]) > 0.4


def test_merge_gives_an_ordinary_mlp_as_good_as_the_repaired_midpoint(digits_pair):
    a, b, X_train, test = digits_pair
    merged = repair.merge(a, b, X_train)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(a)
    midpoint = repair.repair_interpolate(a, align.align_mlp(a, b, X_train), 0.5, X_train)
    assert test(merged)["error"] == pytest.approx(float(test(midpoint)["error"]))
    # measured: merged test error 0.049; endpoints 0.031 and 0.033; plain averaging 0.596
    assert test(merged)["error"] < 0.08
    assert test(repair.interpolate(a, b, 0.5))["error"] > 0.3
