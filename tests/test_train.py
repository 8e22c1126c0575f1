"""The shared training loop: objective scaling, history, exact resume, validation."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import heads
from baselines.train import (
    learning_rate_schedule,
    log_steps,
    num_samples,
    supervised_objective,
    train,
)

N, n, d, c, h = 12, 3, 2, 2, 2
BETA = 0.1


def _squared(pred, y):
    return 0.5 * jnp.sum((pred - y) ** 2, axis=1)


def _problem(seed=0, samples=N):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(samples, n, d)))
    y = jnp.asarray(rng.normal(size=(samples, c)))
    params = {
        "w1": jnp.asarray(rng.dirichlet(np.ones(n), size=h)),
        "w2": jnp.asarray(rng.normal(size=(h, d))),
        "a": jnp.asarray(rng.normal(size=(h, c))),
    }
    return (X, y), params


OBJECTIVE = heads.objective("vector", _squared)
PENALTY = partial(heads.penalty, "vector", beta=BETA)


def _full_objective(params, data):
    return float(OBJECTIVE(params, data, None)[0] + PENALTY(params))


def _noisy_objective(params, batch, key):
    """Uses its key (input noise while training), so resume must also restore the key stream."""
    X, y = batch
    if key is not None:
        X = X + 0.1 * jax.random.normal(key, X.shape)
    return OBJECTIVE(params, (X, y), None)


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path):
    data, params = _problem()
    run = partial(
        train,
        _noisy_objective,
        params,
        data,
        learning_rate=0.05,
        steps=40,
        optimizer="adam",
        schedule="cosine",
        warmup_steps=5,
        batch_size=5,  # 2 batches per epoch, 2 samples left out of each epoch
        penalty=PENALTY,
        clip_norm=1.0,
        project=heads.project,
        log_every=10,
        checkpoint_every=7,
        progress=False,
    )
    full = run()
    checkpoints = tmp_path / "run"  # created by train
    first = run(checkpoint_dir=checkpoints, early_stop=lambda record: record["step"] >= 20)
    assert first.stopped_early and first.steps == 20
    resumed = run(checkpoint_dir=checkpoints)
    assert resumed.steps == 40 and not resumed.stopped_early
    for a, b in zip(
        jax.tree.leaves((full.params, full.opt_state)),
        jax.tree.leaves((resumed.params, resumed.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert resumed.history["step"] == full.history["step"] == [0, 10, 20, 30, 40]
    assert resumed.history["objective"] == full.history["objective"]
    other_seed = run(seed=1)
    assert not np.array_equal(other_seed.params["w2"], full.params["w2"])
    with pytest.raises(ValueError, match="seed=0, not 1"):
        run(checkpoint_dir=checkpoints, seed=1)
    wider = {**params, "w2": jnp.zeros((h, d + 1))}
    with pytest.raises(ValueError, match="does not match these params"):
        train(
            _noisy_objective,
            wider,
            data,
            learning_rate=0.05,
            steps=40,
            batch_size=5,
            checkpoint_dir=checkpoints,
            progress=False,
        )


def test_one_step_is_a_gradient_step_on_the_scaled_sum():
    """Full batch: params - lr * grad(sum_i loss_i + penalty). Minibatch of B: the same with
    (N / B) * sum over the batch, for exactly one batch of B samples."""
    data, params = _problem(samples=4)
    grad = jax.jit(jax.grad(lambda p, X, y, scale: scale * OBJECTIVE(p, (X, y), None)[0]))
    grad_penalty = {k: np.asarray(v) for k, v in jax.jit(jax.grad(PENALTY))(params).items()}
    lr = 0.1

    def sgd_step(batch_size):
        result = train(
            OBJECTIVE,
            params,
            data,
            learning_rate=lr,
            steps=1,
            optimizer="sgd",
            batch_size=batch_size,
            penalty=PENALTY,
            progress=False,
        )
        return result.params

    def expected(idx, scale):  # numpy arithmetic: no eager jax ops to compile
        g = grad(params, data[0][idx], data[1][idx], scale)
        return {k: np.asarray(params[k]) - lr * (np.asarray(g[k]) + grad_penalty[k]) for k in g}

    full = sgd_step(None)
    want = expected(np.arange(4), 1.0)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    mini = sgd_step(2)
    matches = [
        all(
            np.allclose(a, b, rtol=1e-13, atol=1e-14)
            for a, b in zip(
                jax.tree.leaves(mini), jax.tree.leaves(expected(np.array(s), 2.0)), strict=True
            )
        )
        for s in itertools.combinations(range(4), 2)
    ]
    assert sum(matches) == 1


def test_history_reports_the_full_objective_and_metrics():
    data, params = _problem()
    test_data, _ = _problem(seed=1, samples=7)
    labels = jnp.asarray(np.arange(N) % c)

    def objective(params, batch, key):  # regression loss; accuracy of the argmax vs labels
        X, y, label = batch
        pred = heads.forward("vector", params, X)
        return jnp.sum(_squared(pred, y)), {"correct": jnp.sum(jnp.argmax(pred, 1) == label)}

    test_labels = jnp.zeros(7, int)
    result = train(
        objective,
        params,
        (*data, labels),
        learning_rate=0.05,
        steps=100,
        batch_size=4,
        penalty=PENALTY,
        project=heads.project,
        test_data=(*test_data, test_labels),
        eval_fn=lambda p: {"w1_min": jnp.min(p["w1"])},
        progress=False,
    )
    hist = result.history
    assert hist["step"] == log_steps(100)
    assert set(hist) == {
        "step",
        "time",
        "objective",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "w1_min",
    }
    assert hist["objective"][-1] == pytest.approx(_full_objective(result.params, data), rel=1e-12)
    loss_sum = float(OBJECTIVE(result.params, data, None)[0])
    assert hist["train_loss"][-1] == pytest.approx(loss_sum / N, rel=1e-12)
    test_sum = float(OBJECTIVE(result.params, test_data, None)[0])
    assert hist["test_loss"][-1] == pytest.approx(test_sum / 7, rel=1e-12)
    predicted = np.argmax(heads.forward("vector", result.params, data[0]), axis=1)
    assert hist["train_accuracy"][-1] == pytest.approx(np.mean(predicted == labels))
    assert hist["w1_min"][-1] == pytest.approx(float(result.params["w1"].min()))
    assert hist["objective"][-1] < hist["objective"][0]
    assert np.all(np.diff(hist["time"]) >= 0) and result.seconds == hist["time"][-1]


def test_aux_loss_is_minimized_but_kept_out_of_the_objective():
    data, params = _problem()

    def objective(params, batch, key):
        value, aux = OBJECTIVE(params, batch, key)
        return 0.0 * value, {**aux, "aux_loss": jnp.sum(params["w2"] ** 2)}

    result = train(objective, params, data, learning_rate=0.05, steps=50, progress=False)
    assert result.history["objective"] == [0.0] * len(result.history["step"])
    aux_loss = result.history["train_aux_loss"]
    assert aux_loss[-1] < 0.5 * aux_loss[0]
    assert aux_loss[0] == pytest.approx(float(jnp.sum(params["w2"] ** 2)))


def test_schedule_and_log_steps():
    rate = learning_rate_schedule(1.0, "cosine", warmup_steps=4, steps=14)
    values = [float(rate(t)) for t in (0, 3, 4, 9, 14)]
    np.testing.assert_allclose(values, [0.25, 1.0, 1.0, 0.5, 0.0], atol=1e-15)
    constant = learning_rate_schedule(0.1, "constant", warmup_steps=0, steps=10)
    assert float(constant(0)) == float(constant(10)) == 0.1
    steps = log_steps(10_000)
    assert steps[0] == 0 and steps[-1] == 10_000 and steps == sorted(set(steps))
    ratios = np.diff(np.log10(steps[steps.index(10) :]))
    assert 30 <= len(steps) <= 42 and ratios.max() < 0.12  # about 10 per decade
    assert log_steps(10, 4) == [0, 4, 8, 10]


def test_bad_arguments_raise_clear_errors():
    data, params = _problem()
    ok = dict(learning_rate=0.1, steps=2, progress=False)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train(OBJECTIVE, params, data, optimizer="lbfgs", **ok)
    with pytest.raises(ValueError, match="schedule must be one of"):
        train(OBJECTIVE, params, data, schedule="linear", **ok)
    with pytest.raises(ValueError, match="data is empty"):
        train(OBJECTIVE, params, (data[0][:0], data[1][:0]), **ok)
    with pytest.raises(ValueError, match="data holds no arrays"):
        train(OBJECTIVE, params, (), **ok)
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        train(OBJECTIVE, params, (data[0], data[1][:5]), **ok)
    with pytest.raises(ValueError, match="test_data: arrays disagree"):
        train(OBJECTIVE, params, data, test_data=(data[0], data[1][:5]), **ok)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1 and <= 12"):
        train(OBJECTIVE, params, data, batch_size=13, **ok)
    with pytest.raises(ValueError, match="learning_rate must be a number > 0"):
        train(OBJECTIVE, params, data, **{**ok, "learning_rate": 0.0})
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        train(OBJECTIVE, params, data, **{**ok, "steps": -1})
    with pytest.raises(ValueError, match="warmup_steps"):
        train(OBJECTIVE, params, data, warmup_steps=3, **ok)
    with pytest.raises(ValueError, match="data contains NaN or inf"):
        train(OBJECTIVE, params, (data[0].at[0, 0, 0].set(jnp.nan), data[1]), **ok)
    with pytest.raises(TypeError, match="penalty must be callable"):
        train(OBJECTIVE, params, data, penalty=0.1, **ok)
    with pytest.raises(ValueError, match="log_every"):
        train(OBJECTIVE, params, data, log_every="linear", **ok)
    assert num_samples({"x": np.zeros((3, 2)), "y": [np.zeros(3)]}) == 3
    scalar_loss = supervised_objective(
        lambda p, x, key: (x.sum(axis=(1, 2)), {}), lambda pred, y: jnp.sum(pred - y)
    )
    with pytest.raises(ValueError, match="per-sample losses"):
        scalar_loss(params, (data[0], data[1][:, 0]), None)
