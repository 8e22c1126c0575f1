"""MoE ffn: routing vs a per-token dense reference, capacity drops vs an independent count,
the auxiliary losses vs their formulas, gradients to the router, jitter, option checks; the
stochastic routers: evaluation, the distribution of their draws, unbiased router gradients of
``RouterObjective`` against a dense expectation, ``objective``'s checks.

Shapes are shared between tests so each JAX program compiles once (the CPU is small).
"""

import dataclasses
import functools
import math
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import moe
from baselines import transformer as tf
from baselines.ffn import mlp_apply
from baselines.optim import make_optimizer
from baselines.registry import LayerConfig, get_ffn
from baselines.train import Trainer


def _key(seed):
    # rbg keys: threefry compiles anew for every shape, seconds each on the small test CPU.
    return jax.random.key(seed, impl="rbg")


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


WIDTH, EXPERTS, LENGTH = 6, 3, 10


def _cfg(**options):
    causal = options.pop("causal", False)
    options = {"num_experts": EXPERTS, **options}
    return LayerConfig(width=WIDTH, hidden_ratio=2, causal=causal, options=options)


@pytest.fixture(scope="module")
def params():
    # A router of unit scale (not the small init) so the routing is far from uniform.
    p = jax.jit(lambda key: moe.init(key, _cfg()))(_key(0))
    return p | {"router": _normal(1, p["router"].shape)}


@pytest.fixture(scope="module")
def x():
    return _normal(2, (2, LENGTH, WIDTH))


@functools.cache
def _compiled(options, train):
    cfg = _cfg(**dict(options))
    return jax.jit(lambda p, x, key: moe.apply(p, x, cfg, key=key, train=train))


def _apply(params, x, cfg, key=None, train=False):
    """moe.apply, jitted once per (options, train)."""
    options = tuple(sorted(cfg.options.items())) + (("causal", cfg.causal),)
    return _compiled(options, train)(params, x, key)


def _expert_np(experts, e, v):
    h = v @ np.asarray(experts["w1"][e]) + np.asarray(experts["b1"][e])
    gelu = np.asarray(jax.nn.gelu(jnp.asarray(h)))
    return gelu @ np.asarray(experts["w2"][e]) + np.asarray(experts["b2"][e])


def _reference(params, x, top_k, causal=False, capacity=None, unit_gates=False):
    """Token-by-token y = sum over kept choices of gate * expert(x), and the drop count.

    Slots are given first come, first served per expert: in choice-major order (all first choices
    in token order, then all second choices), or token-major when ``causal``. ``unit_gates``:
    gate 1 (a stochastic router evaluating).
    """
    x, router = np.asarray(x), np.asarray(params["router"])
    y, dropped = np.zeros_like(x), 0
    for b in range(x.shape[0]):
        logits = x[b] @ router
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        experts = np.argsort(-probs, axis=-1)[:, :top_k]  # (S, k)
        gates = np.take_along_axis(probs, experts, -1)
        if unit_gates:
            gates = np.ones_like(gates)
        if top_k > 1:
            gates /= gates.sum(-1, keepdims=True)
        order = [(s, j) for s in range(x.shape[1]) for j in range(top_k)]
        if not causal:
            order.sort(key=lambda sj: sj[1])
        used = np.zeros(EXPERTS, int)
        for s, j in order:
            e = experts[s, j]
            if capacity is not None and used[e] >= capacity:
                dropped += 1
                continue
            used[e] += 1
            y[b, s] += gates[s, j] * _expert_np(params["experts"], e, x[b, s])
    return y, dropped


def test_registered_and_shapes(params, x):
    assert get_ffn("moe") is moe.MOE
    assert params["router"].shape == (WIDTH, EXPERTS)
    assert params["experts"]["w1"].shape == (EXPERTS, WIDTH, 2 * WIDTH)
    assert params["experts"]["w2"].shape == (EXPERTS, 2 * WIDTH, WIDTH)
    y, aux = jax.eval_shape(lambda p, x: moe.MOE.apply(p, x, _cfg()), params, x)
    assert y.shape == x.shape
    assert {k: v.shape for k, v in aux.items()} == {
        "aux_loss": (),
        "balance_loss": (),
        "z_loss": (),
        "dropped_fraction": (),
        "expert_load": (EXPERTS,),
    }


def test_capacity_formula():
    s = moe.settings(_cfg(capacity_factor=1.25, top_k=2, min_capacity=4))
    assert moe.capacity(s, 100) == math.ceil(1.25 * 100 * 2 / EXPERTS) == 84
    s = moe.settings(_cfg(capacity_factor=1.25, top_k=1, min_capacity=4))
    assert math.ceil(1.25 * 6 / EXPERTS) == 3 and moe.capacity(s, 6) == 4  # the minimum
    assert moe.capacity(s, 3) == 3  # never more slots than tokens


@pytest.mark.parametrize("top_k", [1, 2])
def test_ample_capacity_drops_nothing_and_equals_dense_reference(params, x, top_k):
    cfg = _cfg(top_k=top_k, capacity_factor=float(EXPERTS))
    y, aux = _apply(params, x, cfg)
    assert float(aux["dropped_fraction"]) == 0.0
    ref, dropped = _reference(params, x, top_k)
    assert dropped == 0
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("top_k", "causal"), [(1, False), (2, False), (2, True)])
def test_small_capacity_drops_first_come_and_reports_it(params, x, top_k, causal):
    cfg = _cfg(top_k=top_k, capacity_factor=0.5, min_capacity=1, causal=causal)
    slots = moe.capacity(moe.settings(cfg), LENGTH)
    y, aux = _apply(params, x, cfg)
    ref, dropped = _reference(params, x, top_k, causal=causal, capacity=slots)
    assignments = x.shape[0] * LENGTH * top_k
    assert dropped > 0
    np.testing.assert_allclose(float(aux["dropped_fraction"]), dropped / assignments, atol=1e-12)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)  # dropped choices contribute zero
    if top_k == 1:
        assert int(np.sum(np.all(np.asarray(y) == 0, axis=-1))) == dropped


def test_causal_routing_is_causal_under_drops(params, x):
    cfg = _cfg(top_k=2, capacity_factor=0.5, min_capacity=1, causal=True)
    y, aux = _apply(params, x, cfg)
    assert float(aux["dropped_fraction"]) > 0
    noise = _normal(3, x.shape)
    for t in (0, 4, 8):
        y_pert, _ = _apply(params, x + noise * (jnp.arange(LENGTH) > t)[None, :, None], cfg)
        np.testing.assert_allclose(y_pert[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-12)


def test_load_balancing_loss_hand_example():
    probs = jnp.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    # top-1 shares f = (3/4, 1/4), mean probabilities P = (0.65, 0.35): 2 (f . P) = 1.15
    assert float(moe.load_balancing_loss(probs)) == pytest.approx(1.15, abs=1e-12)
    assert float(moe.load_balancing_loss(probs.reshape(2, 2, 2))) == pytest.approx(1.15, abs=1e-12)
    balanced = jnp.array([[0.7, 0.3], [0.3, 0.7]])
    assert float(moe.load_balancing_loss(balanced)) == pytest.approx(1.0, abs=1e-12)


def test_router_z_loss_hand_example():
    logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # logsumexp: log 2, log 4
    expected = (math.log(2) ** 2 + math.log(4) ** 2) / 2
    assert float(moe.router_z_loss(logits)) == pytest.approx(expected, abs=1e-12)


def test_aux_loss_combines_the_weighted_losses(params, x):
    cfg = _cfg(balance_coef=0.3, z_coef=0.05)
    _, aux = _apply(params, x, cfg)
    r = jax.jit(lambda router, x: moe.route(router, x, moe.settings(cfg)))(params["router"], x)
    balance, z = moe.load_balancing_loss(r.probs), moe.router_z_loss(r.logits)
    np.testing.assert_allclose(aux["balance_loss"], balance, rtol=1e-12)
    np.testing.assert_allclose(aux["z_loss"], z, rtol=1e-12)
    np.testing.assert_allclose(aux["aux_loss"], 0.3 * balance + 0.05 * z, rtol=1e-12)
    experts = np.asarray(r.expert).ravel()
    np.testing.assert_allclose(aux["expert_load"], np.bincount(experts, minlength=EXPERTS) / 20)


@pytest.mark.parametrize("top_k", [1, 2])
def test_gradients_reach_the_router(params, x, top_k):
    weights = _normal(4, x.shape)
    no_aux = _cfg(top_k=top_k, balance_coef=0.0, z_coef=0.0)
    only_aux = _cfg(top_k=top_k)

    @jax.jit
    def grads(p):
        def output_loss(p):
            return jnp.sum(moe.apply(p, x, no_aux)[0] * weights)

        def aux_loss(p):
            return moe.apply(p, x, only_aux)[1]["aux_loss"]

        return jax.grad(output_loss)(p)["router"], jax.grad(aux_loss)(p)["router"]

    through_combine, through_aux = grads(params)
    assert float(jnp.max(jnp.abs(through_combine))) > 1e-6
    assert float(jnp.max(jnp.abs(through_aux))) > 1e-6


def test_jitter_only_in_training(params, x):
    cfg = _cfg(jitter=0.2)
    y_eval, _ = _apply(params, x, cfg)
    y_plain, _ = _apply(params, x, _cfg())
    np.testing.assert_array_equal(y_eval, y_plain)
    y_a, aux_a = _apply(params, x, cfg, key=_key(5), train=True)
    y_b, _ = _apply(params, x, cfg, key=_key(6), train=True)
    jittered = jax.jit(
        lambda router, x, key: moe.route(router, x, moe.settings(cfg), key=key, train=True).logits
    )(params["router"], x, _key(5))
    assert float(jnp.max(jnp.abs(jittered - x @ params["router"]))) > 1e-3
    assert float(jnp.max(jnp.abs(y_a - y_b))) > 0
    assert bool(jnp.all(jnp.isfinite(aux_a["aux_loss"])))
    with pytest.raises(ValueError, match="key is required"):
        moe.apply(params, x, cfg, train=True)


def test_router_runs_in_at_least_float32(params, x):
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    x = x.astype(jnp.bfloat16)
    r = jax.eval_shape(lambda p, x: moe.route(p["router"], x, moe.settings(_cfg())), half, x)
    assert r.logits.dtype == jnp.float32 and r.combine.dtype == jnp.float32
    y, _ = jax.eval_shape(lambda p, x: moe.apply(p, x, _cfg()), half, x)
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_experts": 0}, ValueError, r"'num_experts' must be an integer in \[1, inf\)"),
        ({"top_k": 4}, ValueError, r"'top_k' must be an integer in \[1, 3\]"),
        ({"capacity_factor": 0.0}, ValueError, "'capacity_factor' must be a finite number > 0"),
        ({"min_capacity": 1.5}, TypeError, "'min_capacity' must be an integer"),
        ({"jitter": 1.0}, ValueError, r"'jitter' must be a finite number in \[0, 1\)"),
        ({"balance_coef": -1.0}, ValueError, "'balance_coef' must be a finite number >= 0"),
        ({"z_coef": "big"}, TypeError, "'z_coef' must be a real number"),
    ],
)
def test_bad_options_raise(options, error, match):
    with pytest.raises(error, match=match):
        moe.init(_key(0), _cfg(**options))


def test_bad_input_shape_raises(params):
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 6\)"):
        moe.apply(params, jnp.ones((2, 5, 4)), _cfg())


def _mixture_of_teachers(n, length=8, dim=4, seed=0):
    """Tokens from two Gaussian clusters (centres +-3 e_1); cluster c's target is w_c . x."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 2, size=(n, length))
    x = 3.0 * np.where(cluster == 0, 1.0, -1.0)[..., None] * np.eye(dim)[0]
    x = x + rng.standard_normal((n, length, dim))
    teachers = np.random.default_rng(100).standard_normal((2, dim))
    y = np.einsum("nld,nld->nl", x, teachers[cluster])[..., None]
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.slow
def test_trains_in_transformer_with_shared_loop():
    """Two layers, MoE in the 2nd (moe_every=2), fit by a ``Trainer`` (aux loss included,
    jitter on): the per-token squared error falls >= 100x, and the MoE metrics are reported."""

    def squared_error(pred, y):
        return jnp.mean((pred - y) ** 2, axis=(1, 2))

    cfg = tf.TransformerConfig(
        width=16,
        depth=2,
        input_dim=4,
        max_len=8,
        ffn="mlp",
        moe_every=2,
        hidden_ratio=2,
        positions="none",
        output="token",
        num_outputs=1,
        options={"num_experts": 2, "jitter": 0.01},
    )
    assert cfg.ffns == ("mlp", "moe")
    params = jax.jit(lambda key: tf.init(key, cfg))(_key(0))
    data = _mixture_of_teachers(64)
    objective = tf.objective(cfg, squared_error, accuracy=False)
    initial = float(jax.jit(lambda p: objective(p, data, None)[0])(params)) / 64
    trainer = Trainer(objective, make_optimizer("adam", 1e-2))
    result = trainer.run(params, data, 300, progress=False)
    assert result.history["train_loss"][-1] < initial / 100
    assert all(v > 0 for v in result.history["train_aux_loss"])
    _, aux = jax.jit(lambda p, x: tf.apply(p, x, cfg))(result.params, data[0])
    metrics = aux["metrics"][1]
    assert 0.0 <= float(metrics["ffn/dropped_fraction"]) < 0.5
    np.testing.assert_allclose(float(jnp.sum(metrics["ffn/expert_load"])), 1.0, rtol=1e-12)


# ---------------------------------------------------------------- stochastic routers

STOCHASTIC = ("reinforce_loo", "carms", "straight_through")  # with 3 experts ("arms": 2)


@pytest.mark.parametrize("router", STOCHASTIC)
def test_stochastic_router_evaluates_top_expert_with_gate_one(params, x, router):
    cfg = _cfg(router=router, capacity_factor=float(EXPERTS))
    y, aux = _apply(params, x, cfg)
    ref, dropped = _reference(params, x, 1, unit_gates=True)
    assert dropped == 0
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)
    logits = np.asarray(x @ params["router"])
    np.testing.assert_allclose(aux["router_logits"], logits, atol=1e-12)
    np.testing.assert_array_equal(aux["router_choice"], logits.argmax(-1))


@functools.cache
def _draws(router, experts, samples, count):
    """Jitted (params, x, keys) -> router_choice (count, B, L) of train-mode passes."""
    cfg = _cfg(router=router, num_experts=experts, router_samples=samples)
    one = lambda p, x, key: moe.apply(p, x, cfg, key=key, train=True)[1]["router_choice"]  # noqa: E731
    return jax.jit(jax.vmap(one, in_axes=(None, None, 0)))


@pytest.mark.parametrize("router", STOCHASTIC)
def test_stochastic_router_draws_follow_its_probabilities(params, x, router):
    x2 = jnp.concatenate([x[:1], x[:1]])  # two copies of one sequence (the coupled routers' input)
    count = 4000
    choice = np.asarray(
        _draws(router, EXPERTS, 2, count)(params, x2, jax.random.split(_key(9), count))
    )
    probs = np.asarray(jax.nn.softmax(x2 @ params["router"], -1))
    freq = np.stack([(choice == e).mean(0) for e in range(EXPERTS)], -1)
    np.testing.assert_allclose(freq, probs, atol=5 * 0.5 / math.sqrt(count))
    if router == "carms":  # antithetic pair: never both on a token's least likely expert
        least = probs[0].argmin(-1)
        assert not np.any((choice[:, 0] == least) & (choice[:, 1] == least))


def _layer_predict(cfg):
    """The MoE layer alone as a model, its aux in the transformer's format."""

    def predict(params, x, key):
        y, aux = moe.apply(params, x, cfg, key=key, train=key is not None)
        metrics = {f"ffn/{k}": v for k, v in aux.items() if k != "aux_loss"}
        return y, {"aux_loss": aux["aux_loss"], "metrics": [metrics]}

    return predict


def _half_squared(pred, target):
    return 0.5 * jnp.sum((pred - target) ** 2, axis=(1, 2))


@pytest.mark.parametrize(("router", "experts"), [("reinforce_loo", 3), ("carms", 3), ("arms", 2)])
def test_router_objective_gradient_is_unbiased(router, experts):
    """The mean over draws of grad(RouterObjective) w.r.t. the router and an expert matches the
    exact gradient of E_z[sum of losses] computed densely (every token through every expert,
    weighted by its probability: the loss is per token and nothing is dropped), within a
    Bonferroni z bound (family-wise error 1e-4) on the standard errors."""
    width, length, batch, samples = 4, 3, 2, 3
    cfg = LayerConfig(
        width=width,
        hidden_ratio=2,
        options={
            "num_experts": experts,
            "router": router,
            "router_samples": samples,
            "capacity_factor": float(experts),
            "balance_coef": 0.0,
            "z_coef": 0.0,
        },
    )
    params = moe.init(_key(0), cfg)
    params = params | {"router": _normal(10, params["router"].shape)}
    x, target = _normal(11, (batch, length, width)), _normal(12, (batch, length, width))

    def expected(p):
        q = jax.nn.softmax(x @ p["router"], -1)  # (B, L, X)
        out = jax.vmap(lambda e: mlp_apply(e, x))(p["experts"])  # (X, B, L, E)
        loss = 0.5 * jnp.sum((out - target) ** 2, -1)  # (X, B, L)
        return jnp.sum(q * jnp.moveaxis(loss, 0, -1))

    exact = jax.grad(expected)(params)
    objective = moe.RouterObjective(_layer_predict(cfg), _half_squared, router, samples)
    draws = 3000
    grads = jax.jit(
        jax.vmap(lambda k: jax.grad(lambda p: objective(p, (x, target), k)[0])(params))
    )(jax.random.split(_key(13), draws))
    for est, ref in (
        (grads["router"], exact["router"]),
        (grads["experts"]["w2"], exact["experts"]["w2"]),
    ):
        est, ref = np.asarray(est), np.asarray(ref)
        z = np.abs(est.mean(0) - ref) / (est.std(0) / math.sqrt(draws))
        assert np.all(np.isfinite(est))
        assert z.max() < NormalDist().inv_cdf(1 - 1e-4 / (2 * ref.size))


def _stack(**options):
    return tf.TransformerConfig(
        width=8,
        depth=1,
        input_dim=4,
        max_len=8,
        ffn="moe",
        hidden_ratio=2,
        positions="none",
        output="token",
        num_outputs=1,
        options={"num_experts": 2, **options},
    )


def _squared_error(pred, y):
    return jnp.mean((pred - y) ** 2, axis=(1, 2))


@pytest.mark.parametrize("router", ["reinforce_loo", "carms", "arms", "straight_through"])
def test_router_objective_reaches_the_router_and_evaluates_plainly(router):
    cfg = _stack(router=router, router_samples=2)
    objective = moe.objective(cfg, _squared_error, accuracy=False)
    assert isinstance(objective, moe.RouterObjective) and objective.router == router
    params = jax.jit(lambda key: tf.init(key, cfg))(_key(0))
    data = _mixture_of_teachers(4)
    grad = jax.jit(jax.grad(lambda p, k: objective(p, data, k)[0]))(params, _key(1))
    router_grad = grad["layers"][0]["ffn"]["router"]
    assert bool(jnp.all(jnp.isfinite(router_grad))) and float(jnp.max(jnp.abs(router_grad))) > 0
    value, aux = objective(params, data, None)  # evaluation: the deterministic top-1 pass
    pred, _ = tf.apply(params, data[0], cfg)
    np.testing.assert_allclose(value, jnp.sum(_squared_error(pred, data[1])), rtol=1e-12)
    assert set(aux) == {"aux_loss"}


def test_objective_is_the_plain_one_for_top_k_and_checks_coupled_routers():
    assert moe.objective(_stack(), _squared_error) == tf.objective(_stack(), _squared_error)
    two_layers = dataclasses.replace(_stack(router="reinforce_loo"), depth=2, moe_every=1)
    assert isinstance(moe.objective(two_layers, _squared_error), moe.RouterObjective)
    for router in moe.COUPLED_ROUTERS:
        with pytest.raises(ValueError, match="exactly one MoE layer, got 2"):
            moe.objective(
                dataclasses.replace(two_layers, options={"num_experts": 2, "router": router}),
                _squared_error,
            )
        with pytest.raises(ValueError, match="jitter = 0"):
            moe.objective(_stack(router=router, jitter=0.1), _squared_error)
    with pytest.raises(ValueError, match="samples must be an integer"):
        moe.RouterObjective(tf.Predictor(_stack()), _squared_error, "carms", 1)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"router": "gumbel"}, ValueError, "unknown MoE option 'router' 'gumbel'; expected one of"),
        ({"router": 1}, TypeError, "'router' must be a string"),
        ({"router": "carms", "top_k": 2}, ValueError, "'top_k' must be 1 with router='carms'"),
        ({"router": "arms"}, ValueError, "2 experts .* got num_experts=3"),
        (
            {"router": "carms", "router_samples": 1},
            ValueError,
            r"'router_samples' must be an integer in \[2, inf\)",
        ),
        (
            {"router": "straight_through", "router_temperature": 0.0},
            ValueError,
            "'router_temperature'",
        ),
    ],
)
def test_bad_router_options_raise(options, error, match):
    with pytest.raises(error, match=match):
        moe.init(_key(0), _cfg(**options))


def test_stochastic_router_needs_a_key_and_stacked_copies(params, x):
    with pytest.raises(ValueError, match="key is required for router='carms'"):
        moe.apply(params, x, _cfg(router="carms"), train=True)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        moe.apply(params, x, _cfg(router="carms", router_samples=3), key=_key(0), train=True)
