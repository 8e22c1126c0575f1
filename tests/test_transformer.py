"""Transformer stack: gradients, causality, the simplex mixer of eq. 4, a toy task, validation."""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from baselines import simplex
from baselines import transformer as tf
from baselines.optim import make_optimizer
from baselines.train import Trainer

V, L, B = 5, 6, 3


def _init(cfg, seed=0):
    return jax.jit(lambda key: tf.init(key, cfg))(jax.random.key(seed))


def _tokens(seed=0, batch=B, length=L):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, size=(batch, length)))


def random_params(cfg, seed=1):
    """Params of ``cfg`` with every entry random (LayerNorm affines, biases and logits too), at a
    generic point rather than the init; a stored W_1 gets random (causal) simplex rows. Built
    from the init's shapes with numpy, so no compilation."""
    shapes = jax.eval_shape(partial(tf.init, cfg=cfg), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if jax.tree_util.keystr(path).endswith("['w1']"):
            w = rng.exponential(size=leaf.shape) * (
                np.tril(np.ones(leaf.shape[-2:])) if cfg.causal else 1
            )
            return jnp.asarray(w / w.sum(-1, keepdims=True))
        return jnp.asarray(rng.normal(size=leaf.shape))

    return jax.tree_util.tree_map_with_path(fill, shapes)


GRAD_CONFIGS = {  # between them: encoder / decoder, both mixers and parameterizations,
    # pre / post norm, all position kinds, token / pooled outputs, token / feature inputs
    "encoder": dict(
        input_dim=2,
        mixer=("simplex", "softmax"),
        output="regression",
        pooling="first",
        positions="learned",
    ),
    "decoder": dict(
        vocab_size=V,
        mixer=("softmax", "simplex"),
        causal=True,
        output="token",
        norm="post",
        positions="sinusoidal",
        options={"parameterization": "projection"},
    ),
}


@pytest.mark.parametrize("name", sorted(GRAD_CONFIGS))
def test_gradients_match_finite_differences(name):
    cfg = tf.TransformerConfig(
        width=4, heads=2, depth=2, max_len=L + 2, num_outputs=2, **GRAD_CONFIGS[name]
    )
    rng = np.random.default_rng(2)
    x = _tokens() if cfg.vocab_size else jnp.asarray(rng.normal(size=(B, L, 2)))
    target = jnp.asarray(rng.normal(size=(B, L, 2) if cfg.output == "token" else (B, 2)))
    params = random_params(cfg)
    flat, unravel = ravel_pytree(params)
    flat = np.asarray(flat)

    @jax.jit
    def value_and_grad(theta):
        return jax.value_and_grad(
            lambda t: jnp.sum((tf.apply(unravel(t), x, cfg)[0] - target) ** 2)
        )(theta)

    grad = np.asarray(value_and_grad(flat)[1])
    eps, start = 1e-5, 0
    for leaf in jax.tree.leaves(params):  # one random direction inside each leaf
        direction = np.zeros_like(flat)
        direction[start : start + leaf.size] = rng.normal(size=leaf.size)
        start += leaf.size
        up, down = (float(value_and_grad(flat + s * eps * direction)[0]) for s in (1, -1))
        assert (up - down) / (2 * eps) == pytest.approx(grad @ direction, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(
    "mixer, parameterization",
    [(("simplex", "softmax"), "softmax"), (("softmax", "simplex"), "projection")],
)
def test_causal_output_ignores_later_tokens(mixer, parameterization):
    cfg = tf.TransformerConfig(
        width=4,
        heads=2,
        depth=2,
        max_len=L + 2,
        vocab_size=V,
        mixer=mixer,
        causal=True,
        output="token",
        options={"parameterization": parameterization},
    )
    encoder = dataclasses.replace(cfg, causal=False)
    t = 2
    x = _tokens()
    changed = x.at[:, t + 1 :].set((x[:, t + 1 :] + 1) % V)  # every token after t

    @jax.jit
    def outputs(params):
        both = jnp.concatenate([x, changed])
        prefix = tf.apply(params, x[:, : t + 1], cfg)[0]  # a shorter sequence
        return tf.apply(params, both, cfg)[0], prefix, tf.apply(params, both, encoder)[0]

    out, prefix, out_encoder = outputs(random_params(cfg))
    np.testing.assert_allclose(out[:B, : t + 1], out[B:, : t + 1], rtol=0, atol=1e-12)
    assert np.abs(out[:B, t + 1 :] - out[B:, t + 1 :]).min() > 0  # later outputs do change
    np.testing.assert_allclose(prefix, out[:B, : t + 1], rtol=1e-12, atol=1e-12)
    assert np.abs(out_encoder[:B, 0] - out_encoder[B:, 0]).min() > 0  # an encoder looks ahead


def test_short_sequences_renormalize_the_simplex_block():
    cfg = tf.TransformerConfig(
        width=4,
        heads=2,
        max_len=L,
        vocab_size=V,
        mixer="simplex",
        options={"parameterization": "projection"},
    )
    layer = random_params(cfg)["layers"][0]["mixer"]
    full = simplex.mixing_matrices(layer, L, causal=False)
    np.testing.assert_array_equal(full, layer["w1"])  # full length: W_1 itself
    short = np.asarray(simplex.mixing_matrices(layer, 3, causal=False))
    block = np.asarray(layer["w1"])[:, :3, :3]
    sums = block.sum(-1, keepdims=True)
    want = np.where(sums > 0, block / np.where(sums > 0, sums, 1), 1 / 3)
    np.testing.assert_allclose(short, want, rtol=1e-14)
    np.testing.assert_allclose(short.sum(-1), 1.0, atol=1e-14)


def _toy_task(n=64, length=5, seed=0):
    """Label 1 iff token 1 occurs more often than token 2 (ties resampled): a linear function of
    the token counts, so separable after mean pooling."""
    x = np.random.default_rng(seed).integers(0, 4, size=(4 * n, length))
    margin = (x == 1).sum(1) - (x == 2).sum(1)
    x, margin = x[margin != 0][:n], margin[margin != 0][:n]
    return jnp.asarray(x), jnp.asarray((margin > 0).astype(np.int32))


def _cross_entropy(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def test_tiny_transformer_fits_a_separable_task():
    x, y = _toy_task()
    cfg = tf.TransformerConfig(width=8, heads=2, max_len=5, vocab_size=4, num_outputs=2)
    trainer = Trainer(
        tf.objective(cfg, _cross_entropy), make_optimizer("adam", 1e-2), batch_size=16
    )
    result = trainer.run(_init(cfg), (x, y), 150, log_every=50, progress=False)
    assert result.history["train_accuracy"][0] < 0.9
    assert result.history["train_accuracy"][-1] > 0.95


@pytest.mark.parametrize("parameterization", ["softmax", "projection"])
def test_simplex_mixer_stays_row_stochastic_under_training(parameterization):
    x, y = _toy_task(n=32)
    cfg = tf.TransformerConfig(
        width=4,
        heads=2,
        max_len=5,
        vocab_size=4,
        mixer="simplex",
        ffn=None,
        causal=True,
        pooling="last",
        options={"parameterization": parameterization},
    )
    project = partial(tf.project, cfg=cfg) if parameterization == "projection" else None
    trainer = Trainer(
        tf.objective(cfg, _cross_entropy),
        make_optimizer("adam", 0.2),  # large steps: the projection must act
        project=project,
    )
    result = trainer.run(random_params(cfg), (x, y), 30, log_every=30, progress=False)
    layer = result.params["layers"][0]["mixer"]
    w1 = np.asarray(simplex.mixing_matrices(layer, 5, causal=True))
    assert (w1 >= 0).all()
    np.testing.assert_allclose(w1.sum(-1), 1.0, rtol=0, atol=1e-12)
    above, on_or_below = np.triu_indices(5, 1), np.tril_indices(5)
    assert (w1[:, above[0], above[1]] == 0).all()  # causal
    if parameterization == "projection":
        np.testing.assert_array_equal(w1, layer["w1"])  # the stored matrix itself
        assert (w1[:, on_or_below[0], on_or_below[1]] == 0).any()  # it reached the boundary
    maps = jax.jit(partial(tf.attention_maps, x=x[:2], cfg=cfg))(result.params)
    np.testing.assert_array_equal(maps[0], np.broadcast_to(w1, (2, 2, 5, 5)))


def test_apply_shapes():
    cfg = tf.TransformerConfig(
        width=4,
        heads=2,
        depth=2,
        max_len=L,
        input_dim=3,
        mixer=("simplex", "softmax"),
        output="token",
        num_outputs=5,
        positions="sinusoidal",
    )
    x = jax.ShapeDtypeStruct((B, L - 1, 3), jnp.float64)
    out, aux = jax.eval_shape(partial(tf.apply, cfg=cfg), random_params(cfg), x)
    assert out.shape == (B, L - 1, 5)
    assert [a.shape for a in aux["attention"]] == [(B, 2, L - 1, L - 1)] * 2
    assert aux["aux_loss"].shape == () and aux["metrics"] == [{}, {}]
    pooled = dataclasses.replace(cfg, output="classification", pooling="last")
    assert jax.eval_shape(partial(tf.apply, cfg=pooled), random_params(pooled), x)[0].shape == (
        B,
        5,
    )


def test_other_registered_layers_plug_in():
    """GSS mixer (no attention map), an MoE FFN every 2nd layer (its aux_loss reaches the top)."""
    cfg = tf.TransformerConfig(
        width=4, depth=2, max_len=L, vocab_size=V, mixer=("gss", "softmax"), moe_every=2
    )
    assert cfg.ffns == ("mlp", "moe")
    params = random_params(cfg)
    assert set(params["layers"][1]["ffn"]) != set(params["layers"][0]["ffn"])
    out, aux = jax.jit(partial(tf.apply, x=_tokens(), cfg=cfg))(params)
    assert out.shape == (B, 2) and np.isfinite(out).all()
    assert aux["attention"][0] is None and aux["attention"][1].shape == (B, 1, L, L)
    np.testing.assert_allclose(aux["attention"][1].sum(-1), 1.0, atol=1e-12)
    assert float(aux["aux_loss"]) > 0
    assert "ffn/dropped_fraction" in aux["metrics"][1]


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="heads=3 must divide width=8"):
        tf.TransformerConfig(width=8, heads=3, vocab_size=V)
    with pytest.raises(ValueError, match="unknown mixer 'linear'"):
        tf.TransformerConfig(width=8, vocab_size=V, mixer="linear")
    with pytest.raises(ValueError, match="unknown ffn 'glu'"):
        tf.TransformerConfig(width=8, vocab_size=V, ffn="glu")
    with pytest.raises(ValueError, match="2 names"):
        tf.TransformerConfig(width=8, depth=2, vocab_size=V, mixer=("softmax",))
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        tf.TransformerConfig(width=8, vocab_size=V, input_dim=3)
    with pytest.raises(ValueError, match="norm"):
        tf.TransformerConfig(width=8, vocab_size=V, norm="sandwich")
    with pytest.raises(ValueError, match="width"):
        tf.TransformerConfig(width=0, vocab_size=V)
    with pytest.raises(ValueError, match="parameterization"):
        cfg = tf.TransformerConfig(
            width=4, vocab_size=V, mixer="simplex", options={"parameterization": "sparsemax"}
        )
        jax.eval_shape(partial(tf.init, cfg=cfg), jax.random.key(0))
    cfg = tf.TransformerConfig(width=4, max_len=4, vocab_size=V)
    params = random_params(cfg)
    with pytest.raises(ValueError, match="exceeds max_len=4"):
        tf.apply(params, _tokens(length=5), cfg)
    with pytest.raises(TypeError, match="integer token ids"):
        tf.apply(params, jnp.zeros((2, 4)), cfg)
