"""The shared trainer: objective scaling, history, exact resume, divergence, compile reuse,
validation."""

import dataclasses
import itertools
import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import convextx as cx
from baselines import heads, mlp
from baselines import train as train_module
from baselines.objective import SupervisedObjective
from baselines.optim import learning_rate_schedule, make_optimizer
from baselines.train import Trainer, log_steps, num_samples
from convextx import zoo

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
PENALTY = heads.WeightDecay("vector", BETA)


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
    trainer = Trainer(
        _noisy_objective,
        make_optimizer("adam", 0.05, schedule="cosine", warmup_steps=5, steps=40, clip_norm=1.0),
        penalty=PENALTY,
        project=heads.project,
        batch_size=5,  # 2 batches per epoch, 2 samples left out of each epoch
    )
    run = partial(trainer.run, params, data, 40, log_every=10, checkpoint_every=7, progress=False)
    full = run()
    assert full.status == "completed" and full.diverged_at is None
    checkpoints = tmp_path / "run"  # created by run
    first = run(checkpoint_dir=checkpoints, early_stop=lambda record: record["step"] >= 20)
    assert first.stopped_early and first.steps == 20 and first.status == "stopped_early"
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
        Trainer(_noisy_objective, make_optimizer("adam", 0.05), batch_size=5).run(
            wider, data, 40, checkpoint_dir=checkpoints, progress=False
        )


def test_update_steps_the_state_like_run():
    """init + update (k steps at once, or one by one) end where run does."""
    data, params = _problem()
    trainer = Trainer(_noisy_objective, make_optimizer("adam", 0.05), batch_size=5)
    state = trainer.update(trainer.init(params, seed=3), data, steps=7)
    stepwise = trainer.init(params, seed=3)
    for _ in range(7):
        stepwise = trainer.update(stepwise, data)
    result = trainer.run(params, data, 7, seed=3, progress=False)
    assert int(state.step) == int(stepwise.step) == 7
    for a, b, r in zip(
        jax.tree.leaves(state.params),
        jax.tree.leaves(stepwise.params),
        jax.tree.leaves(result.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, r)


def test_one_step_is_a_gradient_step_on_the_scaled_sum():
    """Full batch: params - lr * grad(sum_i loss_i + penalty). Minibatch of B: the same with
    (N / B) * sum over the batch, for exactly one batch of B samples."""
    data, params = _problem(samples=4)
    grad = jax.jit(jax.grad(lambda p, X, y, scale: scale * OBJECTIVE(p, (X, y), None)[0]))
    grad_penalty = {k: np.asarray(v) for k, v in jax.jit(jax.grad(PENALTY))(params).items()}
    lr = 0.1

    def sgd_step(batch_size):
        trainer = Trainer(
            OBJECTIVE, make_optimizer("sgd", lr), penalty=PENALTY, batch_size=batch_size
        )
        return trainer.run(params, data, 1, progress=False).params

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
    trainer = Trainer(
        objective,
        make_optimizer("adam", 0.05),
        penalty=PENALTY,
        project=heads.project,
        batch_size=4,
    )
    result = trainer.run(
        params,
        (*data, labels),
        100,
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

    result = Trainer(objective, make_optimizer("adam", 0.05)).run(params, data, 50, progress=False)
    assert result.history["objective"] == [0.0] * len(result.history["step"])
    aux_loss = result.history["train_aux_loss"]
    assert aux_loss[-1] < 0.5 * aux_loss[0]
    assert aux_loss[0] == pytest.approx(float(jnp.sum(params["w2"] ** 2)))


def _quadratic(params, batch, key):
    """sum_i 1/2 (x_i w - y_i)^2: with x = 1, y = 0 and N = 4, gradient descent multiplies w by
    1 - 4 lr per step."""
    x, y = batch
    return 0.5 * jnp.sum((x * params["w"] - y) ** 2), {}


@pytest.mark.parametrize(
    "steps, log_every, diverged_at",
    [
        (100, 1, 43),  # F = 2 * 3999^(2t) overflows at t = 43: the first non-finite objective
        (100, 10, 50),  # ... seen at the next logged step
        (1000, 100, 90),  # w = 3999^t overflows at t = 86; params are checked every 10 steps
    ],
)
def test_divergence_stops_the_run_and_reports_its_step(steps, log_every, diverged_at):
    data = (jnp.ones(4), jnp.zeros(4))
    trainer = Trainer(_quadratic, make_optimizer("sgd", 1000.0))
    result = trainer.run({"w": jnp.ones(())}, data, steps, log_every=log_every, progress=False)
    assert result.status == "diverged" and not result.stopped_early
    assert result.diverged_at == result.steps == result.history["step"][-1] == diverged_at
    assert np.all(np.isfinite(result.history["objective"][:-1]))
    assert not np.isfinite(result.history["objective"][-1])


def _big_target_task():
    """A 20-sample regression task whose targets are scaled by 1e6."""
    task = cx.tasks.load(
        "student_teacher", N_train=20, N_test=10, n=3, d=2, heads=2, problem="regression",
        c=None, noise=0.1,
    )  # fmt: skip
    return dataclasses.replace(task, y_train=1e6 * task.y_train, y_test=1e6 * task.y_test)


def test_a_diverged_zoo_fit_reports_status_diverged_and_scores_nan():
    task = _big_target_task()
    model = zoo.make("simplex-sgd", learning_rate=10.0, steps=200, log_every=10).fit(task)
    result = model.result_
    assert result.status == "diverged" and 0 < result.diverged_at < 200
    assert result.diverged_at == result.steps == result.history["step"][-1]
    assert np.all(np.isfinite(result.history["objective"][:-1]))
    report = model.report()
    json.dumps(report, allow_nan=False)  # strict JSON
    assert report["status"] == "diverged"
    assert report["details"]["diverged_at"] == result.diverged_at
    assert report["train_metric"] is None and report["test_metric"] is None
    assert np.isnan(model.score(task, "test"))
    assert report["history"]["objective"][-1] is None


def test_equal_settings_share_one_compilation():
    """Two simplex-adam fits (seeds 0 and 1, then another task of the same shapes) compile the
    training steps once: the trainers compare equal."""
    task = cx.tasks.load(
        "student_teacher", N_train=24, N_test=8, n=3, d=2, heads=2, problem="classification",
        c=2, noise=0.1,
    )  # fmt: skip
    other = cx.tasks.load(
        "student_teacher", N_train=24, N_test=8, n=3, d=2, heads=2, problem="classification",
        c=2, noise=0.1, seed=5,
    )  # fmt: skip
    compiled = train_module._advance._cache_size
    before = compiled()
    zoo.make("simplex-adam", steps=20).fit(task)
    once = compiled()
    zoo.make("simplex-adam", steps=20, seed=1).fit(task)
    zoo.make("simplex-adam", steps=20).fit(other)
    assert once - before <= 1 and compiled() == once
    zoo.make("simplex-adam", steps=20, learning_rate=0.05).fit(task)  # another setting
    assert compiled() == once + 1


def test_objectives_penalties_and_optimizers_compare_by_value():
    gates = heads.sample_gates(jax.random.key(0), h, n, d)
    same_gates = {k: jnp.array(v) for k, v in gates.items()}
    assert heads.objective("gated", _squared, gates=gates) == heads.objective(
        "gated", _squared, gates=same_gates
    )
    assert heads.objective("gated", _squared, gates=gates) != heads.objective(
        "gated", _squared, gates={**gates, "u1": -gates["u1"]}
    )
    assert heads.objective("vector", _squared) != heads.objective("scalar", _squared)
    assert mlp.objective() == mlp.objective() and mlp.WeightDecay(1) == mlp.WeightDecay(1.0)
    assert heads.WeightDecay("vector", 0.1) != heads.WeightDecay("vector", 0.2)
    adam = make_optimizer("adam", 1e-2, options={"b2": 0.98})
    assert adam == make_optimizer("adam", 0.01, options={"b2": 0.98})
    assert adam != make_optimizer("adam", 0.02, options={"b2": 0.98})
    assert Trainer(OBJECTIVE, adam, penalty=PENALTY, batch_size=np.int64(4)) == Trainer(
        OBJECTIVE, adam, penalty=heads.WeightDecay("vector", BETA), batch_size=4
    )
    state = adam.init({"w": jnp.zeros(2)})  # a working optax transformation
    updates, _ = adam.update({"w": jnp.ones(2)}, state)
    np.testing.assert_allclose(updates["w"], -1e-2, rtol=1e-6)


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


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("warmup, steps", [(0, 10), (1, 10), (4, 14), (7, 7)])
def test_optax_schedules_equal_linear_warmup_then_decay(schedule, warmup, steps):
    """lr * min(1, (t + 1) / warmup), times (1 + cos(pi * frac)) / 2 for "cosine", frac the
    clipped fraction of the steps after the warmup: equal to float rounding."""
    t = np.arange(steps + 3, dtype=float)
    want = 0.3 * np.minimum(1.0, (t + 1) / max(warmup, 1))
    if schedule == "cosine":
        frac = np.clip((t - warmup) / max(steps - warmup, 1), 0.0, 1.0)
        want *= 0.5 * (1 + np.cos(np.pi * frac))
    rate = learning_rate_schedule(0.3, schedule, warmup, steps)
    got = [float(rate(int(s))) for s in t]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_bad_arguments_raise_clear_errors():
    data, params = _problem()
    adam = make_optimizer("adam", 0.1)
    trainer = Trainer(OBJECTIVE, adam)

    def run(*args, trainer=trainer, **kwargs):
        return trainer.run(params, *args, progress=False, **kwargs)

    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; expected one of"):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="unknown schedule 'linear'; expected one of"):
        make_optimizer("adam", 0.1, schedule="linear")
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        make_optimizer("adam", 0.0)
    with pytest.raises(TypeError, match="learning_rate must be a real number"):
        make_optimizer("adam", True)
    with pytest.raises(ValueError, match=r"warmup_steps must be an integer in \[0, 2\]"):
        make_optimizer("adam", 0.1, warmup_steps=3, steps=2)
    with pytest.raises(ValueError, match="cosine' needs steps"):
        make_optimizer("adam", 0.1, schedule="cosine")
    with pytest.raises(ValueError, match="clip_norm must be a finite number > 0"):
        make_optimizer("adam", 0.1, clip_norm=-1.0)
    with pytest.raises(TypeError, match=r"options\['b1'\] must be hashable"):
        make_optimizer("adam", 0.1, options={"b1": [0.9]})
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_optimizer("adam", 0.1, options={"momentum": 0.9})
    with pytest.raises(ValueError, match="data is empty"):
        run((data[0][:0], data[1][:0]), 2)
    with pytest.raises(ValueError, match="data holds no arrays"):
        run((), 2)
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        run((data[0], data[1][:5]), 2)
    with pytest.raises(ValueError, match="test_data: arrays disagree"):
        run(data, 2, test_data=(data[0], data[1][:5]))
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 12\]"):
        run(data, 2, trainer=Trainer(OBJECTIVE, adam, batch_size=13))
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, inf\)"):
        Trainer(OBJECTIVE, adam, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        Trainer(OBJECTIVE, adam, batch_size=True)
    with pytest.raises(ValueError, match=r"steps must be an integer in \[0, inf\)"):
        run(data, -1)
    with pytest.raises(TypeError, match="steps must be an integer"):
        trainer.update(trainer.init(params), data, steps=1.5)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, inf\)"):
        run(data, 2, seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        run(data, 2, seed=False)
    with pytest.raises(ValueError, match="data contains NaN or inf"):
        run((data[0].at[0, 0, 0].set(jnp.nan), data[1]), 2)
    with pytest.raises(TypeError, match="penalty must be callable"):
        Trainer(OBJECTIVE, adam, penalty=0.1)
    with pytest.raises(TypeError, match="objective must be callable"):
        Trainer(None, adam)
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        Trainer(OBJECTIVE, "adam")
    unhashable = dataclasses.make_dataclass("Unhashable", [], namespace={"__call__": _quadratic})
    with pytest.raises(TypeError, match="objective must be hashable"):
        Trainer(unhashable(), adam)
    with pytest.raises(ValueError, match="unknown log_every 'linear'"):
        run(data, 2, log_every="linear")
    with pytest.raises(ValueError, match=r"log_every must be an integer in \[1, inf\)"):
        run(data, 2, log_every=0)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        heads.WeightDecay("vector", 0.0)
    assert Trainer(OBJECTIVE, optax.sgd(0.1)).run(params, data, 1, progress=False).steps == 1
    assert num_samples({"x": np.zeros((3, 2)), "y": [np.zeros(3)]}) == 3
    scalar_loss = SupervisedObjective(
        lambda p, x, key: (x.sum(axis=(1, 2)), {}), lambda pred, y: jnp.sum(pred - y)
    )
    with pytest.raises(ValueError, match="per-sample losses"):
        scalar_loss(params, (data[0], data[1][:, 0]), None)
