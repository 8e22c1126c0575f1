"""Interpolation, REPAIR, the barrier metric and REPAIR-merged MLPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import align, mlp, repair

CFG = mlp.MLPConfig(6, (16, 16, 16), 3)


def _net(seed: int, layer_norm: bool = False) -> mlp.Params:
    cfg = mlp.MLPConfig(CFG.in_dim, CFG.widths, CFG.out_dim, layer_norm=layer_norm)
    params = mlp.init(jax.random.PRNGKey(seed), cfg)
    rng = np.random.default_rng(seed)
    for layer in params["layers"][:-1]:
        layer["b"] = layer["b"] + jnp.asarray(rng.normal(0, 0.3, layer["b"].shape))
        for name in ("ln_scale", "ln_bias") if layer_norm else ():
            layer[name] = layer[name] + jnp.asarray(rng.uniform(0.2, 0.8, layer[name].shape))
    return params


def _inputs(n: int = 400, seed: int = 7) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), (n, CFG.in_dim))


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
    b = align.align_mlp(a, b, _inputs())
    X, alpha = _inputs(), 0.4
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
    X = _inputs()
    at_a = repair.repair_interpolate(a, b, 0.0, X)
    np.testing.assert_allclose(mlp.apply(at_a, X), mlp.apply(a, X), rtol=0, atol=1e-10)


def test_repair_checks_its_arguments():
    a = _net(0)
    X = _inputs()
    with pytest.raises(ValueError, match="site"):
        repair.neuron_stats(a, X, site="output")
    with pytest.raises(ValueError, match="LayerNorm"):
        repair.neuron_stats(a, X, site="norm")
    with pytest.raises(ValueError, match="targets"):
        repair.repair(a, X, repair.neuron_stats(a, X)[:-1])
    with pytest.raises(ValueError, match="X must have shape"):
        repair.neuron_stats(a, X[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        repair.neuron_stats(a, X.at[0, 0].set(jnp.nan))


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
