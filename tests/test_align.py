"""Neuron alignment: permutations keep the function; matching recovers a known permutation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines import align, mlp

WIDTHS = (12, 10, 12)
_apply = jax.jit(mlp.apply)


def _net(seed: int, layer_norm: bool = False) -> mlp.Params:
    """Random MLP; LayerNorm affines are drawn too (at init they are 1 and 0: a special case)."""
    params = mlp.init(jax.random.PRNGKey(seed), mlp.MLPConfig(6, WIDTHS, 4, layer_norm=layer_norm))
    rng = np.random.default_rng(seed)
    for layer in params["layers"][:-1]:
        for name in ("ln_scale", "ln_bias") if layer_norm else ():
            layer[name] = layer[name] + jnp.asarray(rng.uniform(0.2, 0.8, layer[name].shape))
    return params


def _inputs(n: int = 300) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(99), (n, 6))


def _random_perms(spec, sizes, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(sizes[name]) for name in spec}


def _max_leaf_diff(a, b) -> float:
    return max(
        float(jnp.abs(x - y).max())
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), layer_norm=st.booleans())
def test_permuting_hidden_units_keeps_the_mlp_function(seed, layer_norm):
    params = _net(0, layer_norm)
    spec = align.mlp_spec(params)
    perms = _random_perms(spec, align.perm_sizes(params, spec), seed)
    moved = align.permute(params, spec, perms)
    X = _inputs()
    identity = all(np.array_equal(p, np.arange(len(p))) for p in perms.values())
    assert identity or _max_leaf_diff(moved, params) > 0
    np.testing.assert_allclose(_apply(moved, X), _apply(params, X), rtol=0, atol=1e-12)


def test_a_non_symmetry_does_change_the_function():
    """Control for the test above: permuting only w's columns (not the next layer) breaks f."""
    params = _net(0)
    spec = {"bad": (align.PermAxis(("layers", 0, "w"), 1),)}
    moved = align.permute(params, spec, {"bad": np.roll(np.arange(WIDTHS[0]), 1)})
    X = _inputs()
    assert float(jnp.abs(mlp.apply(moved, X) - mlp.apply(params, X)).max()) > 1e-3


@pytest.mark.parametrize("method", ["activation", "weight"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_matching_recovers_a_known_permutation(method, layer_norm):
    params = _net(1, layer_norm)
    X = _inputs()
    assert all(float(h.max(0).min()) > 0 for h in mlp.trace(params, X).post), "a dead unit"
    spec = align.mlp_spec(params)
    true = _random_perms(spec, align.perm_sizes(params, spec), seed=3)
    copy = align.permute(params, spec, true)
    if method == "activation":
        found = align.activation_matching(
            align.mlp_features(params, X), align.mlp_features(copy, X)
        )
    else:
        found = align.weight_matching(params, copy, spec)
    for name in spec:
        np.testing.assert_array_equal(found[name], np.argsort(true[name]))
    assert _max_leaf_diff(align.align_mlp(params, copy, X, method=method), params) == 0.0


def test_weight_matching_moves_grouped_axes_as_blocks():
    """A spec with group > 1 (heads of size 3) recovers a block permutation of a copy."""
    rng = np.random.default_rng(0)
    params = {"wq": rng.normal(size=(5, 12)), "wo": rng.normal(size=(12, 5))}
    spec = {"heads": (align.PermAxis(("wq",), 1, 3), align.PermAxis(("wo",), 0, 3))}
    assert align.perm_sizes(params, spec) == {"heads": 4}
    true = {"heads": np.array([2, 0, 3, 1])}
    copy = align.permute(params, spec, true)
    np.testing.assert_array_equal(copy["wq"][:, 3:6], params["wq"][:, 0:3])
    found = align.weight_matching(params, copy, spec)
    np.testing.assert_array_equal(found["heads"], np.argsort(true["heads"]))


def test_correlation_is_pearson_for_one_coordinate():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    expected = np.corrcoef(a.T, b.T)[:4, 4:]
    np.testing.assert_allclose(align.correlation(a, b, eps=0.0), expected, atol=1e-12)


def test_activation_matching_beats_identity_on_independent_nets():
    """Two different nets: the matched total correlation is at least the identity's."""
    a, b = _net(4), _net(5)
    X = _inputs()
    fa, fb = align.mlp_features(a, X), align.mlp_features(b, X)
    perms = align.activation_matching(fa, fb)
    for name, p in perms.items():
        corr = align.correlation(fa[name], fb[name])
        assert corr[np.arange(len(p)), p].sum() >= np.trace(corr)


def test_bad_inputs_raise():
    params = _net(0)
    spec = align.mlp_spec(params)
    perms = {name: np.arange(n) for name, n in align.perm_sizes(params, spec).items()}
    with pytest.raises(ValueError, match="permutation of range"):
        align.permute(params, spec, {**perms, "hidden0": np.zeros(WIDTHS[0], int)})
    with pytest.raises(ValueError, match="keys"):
        align.permute(params, spec, {"hidden0": perms["hidden0"]})
    with pytest.raises(ValueError, match="no leaf"):
        align.perm_sizes(params, {"x": (align.PermAxis(("layers", 7, "w"), 0),)})
    with pytest.raises(ValueError, match="disagree"):
        align.perm_sizes(
            params,
            {"x": (align.PermAxis(("layers", 0, "w"), 0), align.PermAxis(("layers", 0, "w"), 1))},
        )
    with pytest.raises(ValueError, match="method"):
        align.align_mlp(params, params, _inputs(), method="optimal")
    with pytest.raises(ValueError, match="X"):
        align.align_mlp(params, params)
    with pytest.raises(ValueError, match="shape"):
        align.correlation(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="max_iter"):
        align.weight_matching(params, params, spec, max_iter=0)
