"""Neuron alignment: permutations keep the function; matching recovers a known permutation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines import align, mlp, transformer

WIDTHS = (12, 10, 12)
_apply = jax.jit(mlp.apply)


def inputs(n: int = 300, dim: int = 6, seed: int = 99) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def random_mlp(
    seed: int, widths: tuple[int, ...] = WIDTHS, layer_norm: bool = False, dims: tuple = (6, 4)
) -> mlp.Params:
    """MLP params (in, out = ``dims``), drawn by numpy so that nothing compiles: He-normal
    weights, random LayerNorm scales in [1, 2], and biases that put each unit's ReLU input
    median on :func:`inputs` near 0, so no unit is dead there (a dead unit has no identity)."""
    rng = np.random.default_rng(seed)
    x = inputs(dim=dims[0])
    layers = []
    for d_in, d_out in zip((dims[0], *widths[:-1]), widths, strict=True):
        w = rng.normal(0, np.sqrt(2 / d_in), (d_in, d_out))
        z = x @ w
        layer = {"w": w, "b": rng.normal(0, 0.1, d_out) - np.median(z, 0)}
        z = z + layer["b"]
        if layer_norm:
            scale = rng.uniform(1, 2, d_out)
            n = (
                scale
                * (z - z.mean(1, keepdims=True))
                / np.sqrt(z.var(1, keepdims=True) + transformer.LN_EPS)
            )
            layer |= {"ln_scale": scale, "ln_bias": rng.normal(0, 0.1, d_out) - np.median(n, 0)}
            z = n + layer["ln_bias"]
        x = np.maximum(z, 0)
        layers.append(layer)
    layers.append(
        {
            "w": rng.normal(0, np.sqrt(2 / widths[-1]), (widths[-1], dims[1])),
            "b": rng.normal(0, 0.1, dims[1]),
        }
    )
    return {"layers": [{k: jnp.asarray(v) for k, v in layer.items()} for layer in layers]}


def _random_perms(spec, sizes, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.permutation(sizes[name]) for name in spec}


def _max_leaf_diff(a, b) -> float:
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max())
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), layer_norm=st.booleans())
def test_permuting_hidden_units_keeps_the_mlp_function(seed, layer_norm):
    params = random_mlp(0, layer_norm=layer_norm)
    spec = align.mlp_spec(params)
    perms = _random_perms(spec, align.perm_sizes(params, spec), seed)
    moved = align.permute(params, spec, perms)
    X = inputs()
    identity = all(np.array_equal(p, np.arange(len(p))) for p in perms.values())
    assert identity or _max_leaf_diff(moved, params) > 0
    np.testing.assert_allclose(_apply(moved, X), _apply(params, X), rtol=0, atol=1e-12)


def test_a_non_symmetry_does_change_the_function():
    """Control for the test above: permuting only w's columns (not the next layer) breaks f."""
    params = random_mlp(0)
    spec = {"bad": (align.PermAxis(("layers", 0, "w"), 1),)}
    moved = align.permute(params, spec, {"bad": np.roll(np.arange(WIDTHS[0]), 1)})
    X = inputs()
    assert float(np.abs(_apply(moved, X) - _apply(params, X)).max()) > 1e-3


@pytest.mark.parametrize("method", ["activation", "weight"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_matching_recovers_a_known_permutation(method, layer_norm):
    params = random_mlp(1, layer_norm=layer_norm)
    X = inputs()
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
    a, b = random_mlp(4), random_mlp(5)
    X = inputs()
    fa, fb = align.mlp_features(a, X), align.mlp_features(b, X)
    perms = align.activation_matching(fa, fb)
    for name, p in perms.items():
        corr = align.correlation(fa[name], fb[name])
        assert corr[np.arange(len(p)), p].sum() >= np.trace(corr)


def test_bad_inputs_raise():
    params = random_mlp(0)
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
        align.align_mlp(params, params, inputs(), method="optimal")
    with pytest.raises(ValueError, match="X"):
        align.align_mlp(params, params)
    with pytest.raises(ValueError, match="shape"):
        align.correlation(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="max_iter"):
        align.weight_matching(params, params, spec, max_iter=0)


def _transformer():
    from baselines import transformer

    cfg = transformer.TransformerConfig(
        width=8,
        depth=2,
        heads=4,
        max_len=5,
        input_dim=3,
        mixer=("softmax", "simplex"),
        num_outputs=3,
    )
    params = jax.jit(lambda key: transformer.init(key, cfg))(jax.random.PRNGKey(0))
    # distinct mixing rows per head (zero logits at init would make the simplex heads identical)
    mixer = params["layers"][1]["mixer"]
    mixer["logits"] = np.random.default_rng(1).normal(size=mixer["logits"].shape)
    return transformer, cfg, params


def test_permuting_transformer_heads_and_ffn_units_keeps_the_function():
    transformer, cfg, params = _transformer()
    spec = align.transformer_spec(params, cfg)
    assert sorted(spec) == ["ffn0", "ffn1", "heads0", "heads1"]
    sizes = align.perm_sizes(params, spec)
    assert sizes == {"heads0": 4, "heads1": 4, "ffn0": 32, "ffn1": 32}
    perms = _random_perms(spec, sizes, seed=2)
    moved = align.permute(params, spec, perms)
    x = np.random.default_rng(3).normal(size=(6, 5, 3))
    forward = jax.jit(lambda p: transformer.apply(p, x, cfg)[0])
    out, out_moved = forward(params), forward(moved)
    assert _max_leaf_diff(moved, params) > 0.1
    np.testing.assert_allclose(out_moved, out, rtol=0, atol=1e-12)
    found = align.weight_matching(params, moved, spec)
    for name in spec:
        np.testing.assert_array_equal(found[name], np.argsort(perms[name]))


def _heads_pair():
    from baselines import heads

    rng = np.random.default_rng(4)
    X = jnp.asarray(rng.normal(size=(50, 5, 3)))
    logits = rng.normal(size=(6, 5))
    model = {
        "w1": np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
        "w2": rng.normal(size=(6, 3)),
        "a": rng.normal(size=(6, 2)),
    }
    return heads, X, {k: jnp.asarray(v) for k, v in model.items()}


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_heads_permutation_keeps_the_function_and_is_recovered(method):
    heads, X, model = _heads_pair()
    spec = align.heads_spec(model)
    true = {"heads": np.array([3, 5, 0, 1, 4, 2])}
    copy = align.permute(model, spec, true)
    np.testing.assert_allclose(
        heads.forward("vector", copy, X), heads.forward("vector", model, X), atol=1e-12
    )
    features = align.heads_features("vector", model, X)["heads"]
    assert features.shape == (50, 6, 2)
    np.testing.assert_allclose(features.sum(1), heads.forward("vector", model, X), atol=1e-12)
    back = align.align_heads("vector", model, copy, X, method=method)
    assert _max_leaf_diff(back, model) == 0.0


def test_heads_sign_flips_keep_the_function_and_are_undone():
    heads, X, model = _heads_pair()
    sign = np.array([1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    flipped = {**model, "w2": model["w2"] * sign[:, None], "a": model["a"] * sign[:, None]}
    np.testing.assert_allclose(
        heads.forward("vector", flipped, X), heads.forward("vector", model, X), atol=1e-12
    )
    assert _max_leaf_diff(align.match_head_signs(model, flipped), model) == 0.0
    copy = align.permute(flipped, align.heads_spec(model), {"heads": np.array([3, 5, 0, 1, 4, 2])})
    assert _max_leaf_diff(align.align_heads("vector", model, copy, X), model) == 0.0
    with pytest.raises(ValueError, match="'a'"):
        align.match_head_signs(model, {"w1": model["w1"]})
