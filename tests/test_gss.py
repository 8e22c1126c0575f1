"""GSS mixer: FFT convolution vs direct sum, causality, length generalisation, options.

Shapes are shared between tests so each JAX program compiles once (the CPU is small).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from baselines import gss
from baselines import transformer as tf
from baselines.optim import make_optimizer
from baselines.registry import LayerConfig, get_mixer
from baselines.train import Trainer
from experiments import bench_gss


def _key(seed):
    # rbg keys: threefry compiles anew for every shape, seconds each on the small test CPU.
    return jax.random.key(seed, impl="rbg")


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


CFG = LayerConfig(width=8, options={"state_size": 6})
_apply = jax.jit(lambda params, x: gss.apply(params, x, CFG)[0])
_dss_kernel = jax.jit(gss.dss_kernel, static_argnums=1)
_conv = jax.jit(gss.causal_fft_conv)


@pytest.fixture(scope="module")
def params():
    return jax.jit(lambda key: gss.init(key, CFG))(_key(0))


def _direct_dss_kernel(dss, length):
    """K[h, k] from the defining sum, term by term in numpy complex128."""
    lam = -np.exp(np.asarray(dss["lambda_re"])) + 1j * np.exp(np.asarray(dss["lambda_im"]))
    c = np.asarray(dss["c_re"]) + 1j * np.asarray(dss["c_im"])
    kernel = np.zeros((c.shape[0], length))
    for h in range(c.shape[0]):
        for k in range(length):
            kernel[h, k] = np.real(np.sum(c[h] * (np.exp(lam) - 1) / lam * np.exp(lam * k)))
    return kernel


def _direct_causal_conv(u, kernel):
    """The O(L^2) convolution y[b, t, h] = sum_{s <= t} kernel[h, t - s] u[b, s, h]."""
    u, kernel = np.asarray(u), np.asarray(kernel)
    y = np.zeros_like(u)
    for t in range(u.shape[1]):
        for s in range(t + 1):
            y[:, t, :] += kernel[:, t - s] * u[:, s, :]
    return y


@pytest.mark.parametrize("init", gss.INITS)
def test_fft_conv_of_dss_kernel_equals_direct_convolution(params, init):
    dss = params["dss"] if init == "normal" else gss.init_dss(_key(1), 2, 6, init)
    kernel = _dss_kernel(dss, 33)
    np.testing.assert_allclose(kernel, _direct_dss_kernel(dss, 33), rtol=0, atol=1e-10)
    u = _normal(2, (2, 33, 2))
    assert u.dtype == kernel.dtype == jnp.float64
    np.testing.assert_allclose(_conv(u, kernel), _direct_causal_conv(u, kernel), rtol=0, atol=1e-10)


def test_registered_and_shapes(params):
    x = jnp.ones((3, 5, 8))
    assert get_mixer("gss") is gss.GSS
    assert params["w_v"].shape == (8, 32)  # F = 4E
    assert params["w_u"].shape == (8, 2)  # H = E / 4
    assert params["w_uc"].shape == (2, 32) and params["w_o"].shape == (32, 8)
    assert params["dss"]["c_re"].shape == (2, 6) and params["dss"]["lambda_re"].shape == (6,)
    y, aux = jax.eval_shape(lambda p, x: gss.GSS.apply(p, x, CFG, train=True), params, x)
    assert y.shape == (3, 5, 8) and y.dtype == x.dtype
    assert aux == {}


@pytest.mark.parametrize("init", gss.INITS)
def test_gss_is_causal(params, init):
    if init != "normal":
        params = params | {"dss": gss.init_dss(_key(3), 2, 6, init)}
    x = _normal(4, (2, 24, 8))
    y = _apply(params, x)
    noise = _normal(5, x.shape)
    for t in (0, 7, 22):
        x_pert = x + noise * (jnp.arange(24) > t)[None, :, None]
        y_pert = _apply(params, x_pert)
        np.testing.assert_allclose(y_pert[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-10)
        assert np.max(np.abs(y_pert[:, t + 1 :] - y[:, t + 1 :])) > 1e-3


def _loss(params, x):
    return jnp.mean((_apply(params, x) - x) ** 2)


_grad = jax.jit(jax.value_and_grad(_loss))


def test_gradients_reach_every_parameter(params):
    x = _normal(6, (2, 12, 8))
    _, grads = _grad(params, x)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(g))), path
        assert float(jnp.max(jnp.abs(g))) > 0, path


def test_trained_short_runs_long_and_prefix_consistent(params):
    """Trained (gradient steps, loss goes down) at L = 12, applied at L = 24: no code change, and
    the first 12 outputs equal those of the 12-token prefix (causal kernel sized to the input)."""
    x_short = _normal(6, (2, 12, 8))
    first, _ = _grad(params, x_short)
    for _ in range(5):
        loss, grads = _grad(params, x_short)
        params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
    assert float(_loss(params, x_short)) < float(first)
    x_long = _normal(7, (2, 24, 8))
    y_long = _apply(params, x_long)
    assert bool(jnp.all(jnp.isfinite(y_long)))
    np.testing.assert_allclose(y_long[:, :12], _apply(params, x_long[:, :12]), rtol=0, atol=1e-10)


def test_loguniform_init_has_long_memory():
    """The ablation init: decay rates in [1e-3, 1e-1], frequencies in the Nyquist band (0, pi),
    and kernel mass far from t = 0; the paper's normal init forgets within tens of steps."""
    tails = {}
    for init in gss.INITS:
        dss = gss.init_dss(_key(8), 2, 6, init)
        kernel = np.abs(np.asarray(_dss_kernel(dss, 512)))
        tails[init] = kernel[:, 100:].sum() / kernel.sum()
    rates, freqs = np.exp(dss["lambda_re"]), np.exp(dss["lambda_im"])
    assert np.all((rates >= 1e-3) & (rates <= 1e-1)) and np.all((freqs > 0) & (freqs < np.pi))
    assert tails["loguniform"] > 0.1 and tails["normal"] < 1e-3, tails


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"init": "hippo"}, ValueError, "unknown GSS init 'hippo'; expected one of"),
        ({"state_size": 0}, ValueError, r"'state_size' must be an integer in \[1, inf\)"),
        ({"ssm_width": 2.5}, TypeError, "'ssm_width' must be an integer"),
        ({"gate_width": -1}, ValueError, r"'gate_width' must be an integer in \[1, inf\)"),
    ],
)
def test_bad_options_raise(options, error, match):
    with pytest.raises(error, match=match):
        gss.init(_key(0), LayerConfig(width=8, options=options))


def test_bad_input_shape_raises(params):
    for shape in [(2, 5, 7), (5, 8)]:
        with pytest.raises(ValueError, match=r"x must have shape \(B, L, 8\)"):
            gss.apply(params, jnp.ones(shape), CFG)


def _delayed_copy(n, length, seed, vocab=4, delay=2):
    """Token t must be predicted as token t - delay (token 0 for t < delay)."""
    x = np.random.default_rng(seed).integers(0, vocab, size=(n, length))
    return jnp.asarray(x), jnp.asarray(x[:, np.maximum(np.arange(length) - delay, 0)])


@pytest.mark.slow
def test_trains_in_transformer_with_shared_loop_and_generalizes_to_longer_sequences():
    """A one-layer GSS decoder (no FFN, no positional embedding) learns delayed copy at L = 16
    by a ``Trainer``: cross-entropy falls >= 100x; then it copies at L = 64 unchanged."""

    def cross_entropy(logits, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(-1)

    cfg = tf.TransformerConfig(
        width=16,
        vocab_size=4,
        max_len=64,
        mixer="gss",
        ffn=None,
        positions="none",
        causal=True,
        output="token",
        num_outputs=4,
        options={"state_size": 16},
    )
    params = jax.jit(lambda key: tf.init(key, cfg))(_key(0))
    data = _delayed_copy(64, 16, seed=0)
    objective = tf.objective(cfg, cross_entropy)
    initial = float(jax.jit(lambda p: objective(p, data, None)[0])(params)) / 64
    trainer = Trainer(objective, make_optimizer("adam", 1e-2))
    result = trainer.run(params, data, 200, progress=False)
    assert result.history["train_loss"][-1] < initial / 100
    x_long, y_long = _delayed_copy(32, 64, seed=1)
    logits, _ = jax.jit(lambda p, x: tf.apply(p, x, cfg))(result.params, x_long)
    assert float(jnp.mean(jnp.argmax(logits, -1) == y_long)) > 0.95


def test_bench_loglog_slope_recovers_a_power_law():
    lengths = [256, 1024, 4096]
    assert bench_gss.loglog_slope(lengths, [3e-9 * n**2 for n in lengths]) == pytest.approx(2.0)
    assert bench_gss.loglog_slope([256], [1.0]) is None


@pytest.mark.slow
def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--lengths", "16", "32", "--repeats", "1", "--fit-min-len", "16", "--out", str(out)]
    result = bench_gss.main(argv)
    assert json.loads(out.read_text()) == result
    assert [r["L"] for r in result["rows"]] == [16, 32]
    for row in result["rows"]:
        assert row["softmax_over_gss"] == pytest.approx(row["softmax_s"] / row["gss_s"])
    assert set(result["loglog_slope"]) == {"gss", "softmax"}
    assert bench_gss.main([*argv, "--resume"])["rows"] == result["rows"]  # nothing re-measured
