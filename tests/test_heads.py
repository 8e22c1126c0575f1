"""Head-sum models of eq. 8/11/13/30: forward maps, exact penalties, gradients, simplex training."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from baselines import heads
from baselines.optim import make_optimizer
from baselines.train import Trainer

N, n, d, h, c = 6, 4, 3, 3, 2


def _data(kind, seed=0):
    rng = np.random.default_rng(seed)
    shape = {"scalar": (N,), "vector": (N, c), "gated": (N, c), "sequence": (N, n, c)}[kind]
    return jnp.asarray(rng.normal(size=(N, n, d))), jnp.asarray(rng.normal(size=shape))


def _squared(pred, y):
    return 0.5 * jnp.sum((pred - y).reshape(y.shape[0], -1) ** 2, axis=1)


def _random_params(kind, parameterization, seed=1):
    """Trainable params with every entry random: free logits, or interior simplex points."""
    rng = np.random.default_rng(seed)
    simplex = "W1" if kind == "sequence" else "w1"
    shapes = {
        simplex: (h, n, n) if kind == "sequence" else (h, n),
        "W2" if kind == "sequence" else "w2": (h, d, c) if kind == "sequence" else (h, d),
        "a": (h, c) if kind in ("vector", "gated") else (h,),
    }
    params = {name: rng.normal(size=shape) for name, shape in shapes.items()}
    if parameterization == "softmax":
        params[simplex + "_logits"] = params.pop(simplex)
    else:
        params[simplex] = rng.dirichlet(np.ones(n), size=shapes[simplex][:-1])
    return {k: jnp.asarray(v) for k, v in params.items()}


def _gates(seed=3):
    rng = np.random.default_rng(seed)
    return {"u1": jnp.asarray(rng.normal(size=(h, n))), "u2": jnp.asarray(rng.normal(size=(h, d)))}


def test_scalar_forward_equals_explicit_loop():
    X, _ = _data("scalar")
    p = _random_params("scalar", "projection")
    got = np.asarray(heads.forward("scalar", p, X))
    Xn, w1, w2, a = (np.asarray(v) for v in (X, p["w1"], p["w2"], p["a"]))
    want = np.zeros(N)
    for i in range(N):
        for j in range(h):
            want[i] += (w1[j] @ Xn[i] @ w2[j]) * a[j]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_gated_and_sequence_forward_match_loops():
    X, _ = _data("gated")
    gated = heads.to_heads(_random_params("gated", "softmax"), "gated", _gates())
    seq = _random_params("sequence", "projection")
    Xn = np.asarray(X)
    g = {k: np.asarray(v) for k, v in gated.items()}
    s = {k: np.asarray(v) for k, v in seq.items()}
    want_g = np.zeros((N, c))
    want_s = np.zeros((N, n, c))
    for i in range(N):
        for j in range(h):
            gate = float(g["u1"][j] @ Xn[i] @ g["u2"][j] >= 0)
            want_g[i] += gate * (g["w1"][j] @ Xn[i] @ g["w2"][j]) * g["a"][j]
            want_s[i] += s["a"][j] * s["W1"][j] @ Xn[i] @ s["W2"][j]
    np.testing.assert_allclose(heads.forward("gated", gated, X), want_g, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(heads.forward("sequence", seq, X), want_s, rtol=1e-12, atol=1e-13)
    assert (
        0 < np.mean([g["u1"][j] @ Xn[i] @ g["u2"][j] >= 0 for i in range(N) for j in range(h)]) < 1
    )  # the gates really switch


def test_penalties_equal_hand_computed_values():
    w2 = jnp.array([[1.0, 2.0], [0.0, -1.0]])  # |w2|^2 = 6
    beta = 0.5
    scalar = {"w2": w2, "a": jnp.array([3.0, -1.0])}  # a^2: 9 + 1
    assert heads.penalty("scalar", scalar, beta) == pytest.approx(0.25 * (6 + 10), abs=1e-14)
    vector = {"w2": w2, "a": jnp.array([[1.0, -2.0], [0.0, 3.0]])}  # |a_j|_1^2: 9 + 9
    assert heads.penalty("vector", vector, beta) == pytest.approx(0.25 * (6 + 18), abs=1e-14)
    assert heads.penalty("gated", vector, beta) == pytest.approx(0.25 * (6 + 18), abs=1e-14)
    W2 = jnp.array([[[1.0], [-2.0]], [[0.5], [0.5]]])  # entrywise |W2_j|_1^2: 9 + 1
    sequence = {"W2": W2, "a": jnp.array([2.0, 1.0])}  # a^2: 4 + 1
    assert heads.penalty("sequence", sequence, beta) == pytest.approx(0.25 * (10 + 5), abs=1e-14)


@pytest.mark.parametrize(
    "kind, parameterization",
    [(kind, "softmax") for kind in heads.KINDS] + [("sequence", "projection")],
)
def test_gradients_match_finite_differences(kind, parameterization):
    X, y = _data(kind)
    gates = _gates() if kind == "gated" else None
    objective = heads.objective(kind, _squared, gates=gates)

    flat, unravel = ravel_pytree(_random_params(kind, parameterization))

    @jax.jit
    def total(theta):
        params = unravel(theta)
        return objective(params, (X, y), None)[0] + heads.penalty(kind, params, 0.1)

    check_grads(total, (flat,), order=1, modes=["rev"], eps=1e-6, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kind, parameterization",
    [("vector", "softmax"), ("vector", "projection"), ("sequence", "projection")],
)
def test_training_keeps_attention_on_the_simplex(kind, parameterization):
    X, y = _data(kind)
    trainer = Trainer(
        heads.objective(kind, _squared),
        make_optimizer("adam", 0.3),  # large: rows hit the simplex boundary
        penalty=heads.WeightDecay(kind, 0.05),
        project=heads.project if parameterization == "projection" else None,
    )
    result = trainer.run(_random_params(kind, parameterization), (X, y), 40, progress=False)
    w = np.asarray(heads.attention_maps(result.params))
    assert w.shape == ((h, n, n) if kind == "sequence" else (h, n))
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=0, atol=1e-12)
    if parameterization == "projection":
        assert (w == 0).any()  # the projection was active, not a no-op
    assert result.history["objective"][-1] < result.history["objective"][0]


def test_project_is_the_euclidean_projection():
    v = jnp.array([[0.5, 0.3, -0.4, 0.8], [0.2, 0.2, 0.2, 0.2]])
    got = np.asarray(heads.project({"w1": v})["w1"])
    np.testing.assert_allclose(got[0], [0.3, 0.1, 0.0, 0.6], atol=1e-15)  # theta = 0.2
    np.testing.assert_allclose(got[1], [0.25] * 4, atol=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(20):  # optimality: no sampled simplex point is closer
        u = rng.normal(size=4)
        p = np.asarray(heads.project({"w1": jnp.asarray(u)[None]})["w1"])[0]
        others = rng.dirichlet(np.ones(4), size=200)
        assert np.linalg.norm(u - p) <= np.linalg.norm(u - others, axis=1).min() + 1e-12


def test_to_heads_and_attention_maps():
    params = heads.init_params(jax.random.key(0), "vector", h, n, d, c, "softmax")
    out = heads.to_heads(params, "vector")
    assert set(out) == {"w1", "w2", "a"}
    np.testing.assert_allclose(out["w1"], 1 / n)  # zero logits: uniform attention at init
    assert set(heads.sample_gates(jax.random.key(1), h, n, d)) == {"u1", "u2"}
    assert set(heads.to_heads(params, "gated", _gates())) == {"w1", "w2", "a", "u1", "u2"}
    X = jax.ShapeDtypeStruct((N, n, d), jnp.float64)
    for kind in heads.KINDS:  # every kind's init feeds its forward map (shapes only, no compile)
        c_ = None if kind == "scalar" else c
        gates = _gates() if kind == "gated" else None
        for parameterization in ("softmax", "projection"):
            init = partial(
                heads.init_params, kind=kind, h=h, n=n, d=d, c=c_, parameterization=parameterization
            )
            shapes = jax.eval_shape(init, jax.random.key(0))
            out = jax.eval_shape(partial(_predict, kind=kind, gates=gates), shapes, X)
            assert out.shape == {"scalar": (N,), "sequence": (N, n, c)}.get(kind, (N, c))


def _predict(params, X, kind, gates):
    return heads.forward(kind, heads.to_heads(params, kind, gates), X)


def test_bad_inputs_raise_clear_errors():
    X, _ = _data("vector")
    good = heads.to_heads(_random_params("vector", "softmax"), "vector")
    with pytest.raises(ValueError, match="kind"):
        heads.forward("matrix", good, X)
    with pytest.raises(ValueError, match="X must be"):
        heads.forward("vector", good, X[0])
    with pytest.raises(ValueError, match="w2"):
        heads.forward("vector", {**good, "w2": good["w2"][:, :2]}, X)
    with pytest.raises(ValueError, match=r"\['u1', 'u2'\]"):
        heads.forward("gated", good, X)
    with pytest.raises(ValueError, match="ndim"):
        heads.forward("scalar", good, X)
    with pytest.raises(ValueError, match="beta"):
        heads.penalty("vector", good, 0.0)
    with pytest.raises(ValueError, match="needs c"):
        heads.init_params(jax.random.key(0), "vector", h, n, d)
    with pytest.raises(ValueError, match="parameterization"):
        heads.init_params(jax.random.key(0), "scalar", h, n, d, parameterization="sparsemax")
    with pytest.raises(ValueError, match="gates"):
        heads.to_heads(good, "gated")
    with pytest.raises(ValueError, match="gates"):
        heads.objective("gated", _squared)
