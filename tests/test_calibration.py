"""Calibration (convextx.calibration): ECE against a hand count, temperature scaling and LATES
against their guarantees and independent routes (grid search, finite differences), bad input;
the experiment (experiments.calibration) end to end at tiny size."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import approx_fprime
from scipy.special import softmax

from convextx import calibration as cal
from experiments import calibration as experiment


def test_ece_equals_a_hand_count():
    # 6 samples, 3 classes, 5 bins of width 0.2
    probs = np.array(
        [
            [0.90, 0.05, 0.05],  # conf 0.90, predicts 0, label 0: right   -> bin (0.8, 1]
            [0.10, 0.85, 0.05],  # conf 0.85, predicts 1, label 2: wrong   -> bin (0.8, 1]
            [0.50, 0.30, 0.20],  # conf 0.50, predicts 0, label 0: right   -> bin (0.4, 0.6]
            [0.25, 0.35, 0.40],  # conf 0.40, predicts 2, label 2: right   -> bin (0.2, 0.4]
            [0.45, 0.45, 0.10],  # conf 0.45, predicts 0 (tie), label 1: wrong -> bin (0.4, 0.6]
            [0.30, 0.65, 0.05],  # conf 0.65, predicts 1, label 1: right   -> bin (0.6, 0.8]
        ]
    )
    labels = np.array([0, 2, 0, 2, 1, 1])
    # bin (0.8, 1]: 2 samples, acc 1/2, conf 0.875 -> |0.5 - 0.875| = 0.375
    # bin (0.6, 0.8]: 1 sample, acc 1, conf 0.65 -> 0.35
    # bin (0.4, 0.6]: 2 samples, acc 1/2, conf 0.475 -> 0.025
    # bin (0.2, 0.4]: 1 sample (0.40 is the bin's right edge), acc 1, conf 0.40 -> 0.6
    hand = (2 * 0.375 + 1 * 0.35 + 2 * 0.025 + 1 * 0.6) / 6
    assert cal.expected_calibration_error(probs, labels, bins=5) == pytest.approx(hand, abs=1e-12)
    stats = cal.calibration_bins(probs, labels, bins=5)
    assert stats.count.tolist() == [0, 1, 2, 1, 2]
    np.testing.assert_allclose(stats.accuracy[1:], [1.0, 0.5, 1.0, 0.5])
    np.testing.assert_allclose(stats.confidence[1:], [0.40, 0.475, 0.65, 0.875])
    assert np.isnan(stats.accuracy[0])
    # one bin: |overall accuracy - mean confidence|
    one = abs(4 / 6 - probs.max(1).mean())
    assert cal.expected_calibration_error(probs, labels, bins=1) == pytest.approx(one)


def test_ece_matches_a_loop_over_samples():
    rng = np.random.default_rng(0)
    for _ in range(20):
        N, K, B = rng.integers(1, 60), rng.integers(2, 6), rng.integers(1, 20)
        probs = softmax(3 * rng.standard_normal((N, K)), axis=1)
        labels = rng.integers(0, K, N)
        totals = {}  # bin -> [count, correct, confidence]
        for p, y in zip(probs, labels, strict=True):
            conf = p.max()
            b = max(int(np.ceil(conf * B - 1e-12)) - 1, 0)
            entry = totals.setdefault(b, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += float(p.argmax() == y)
            entry[2] += conf
        loop = sum(abs(c - s) for _, c, s in totals.values()) / N
        assert cal.expected_calibration_error(probs, labels, int(B)) == pytest.approx(loop)


def test_ece_of_a_calibrated_predictor_is_zero():
    probs = np.tile([0.75, 0.25], (8, 1))
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 1])  # 6 of 8 right at confidence 0.75
    assert cal.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-15)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    N=st.integers(1, 80),
    K=st.integers(2, 8),
    scale=st.floats(0.01, 30.0),
    signal=st.floats(0.0, 5.0),
)
def test_temperature_scaling_never_raises_validation_nll(seed, N, K, scale, signal):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, N)
    logits = scale * rng.standard_normal((N, K))
    logits[np.arange(N), labels] += signal * scale
    fitted = cal.fit_temperature(logits, labels)
    assert fitted.nll_before == pytest.approx(cal.nll(logits, labels))
    assert fitted.nll_after <= fitted.nll_before
    assert fitted.nll_after == pytest.approx(cal.nll(logits, labels, fitted.temperature))


def test_temperature_is_the_nll_minimizer_and_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    N, K, T = 20_000, 4, 2.5
    logits = 3 * rng.standard_normal((N, K))
    probs = softmax(logits / T, axis=1)
    labels = (probs.cumsum(1) > rng.random((N, 1))).argmax(1)  # y ~ softmax(z / T)
    fitted = cal.fit_temperature(logits, labels)
    assert fitted.temperature == pytest.approx(T, rel=0.05)
    grid = np.exp(np.linspace(0.5, 1.5, 401))  # T in [1.6, 4.5]
    best = min(cal.nll(logits, labels, t) for t in grid)
    assert fitted.nll_after <= best + 1e-9
    np.testing.assert_allclose(
        fitted.predict_proba(logits), softmax(logits / fitted.temperature, 1)
    )


def random_stack(rng, L, N, K):
    labels = rng.integers(0, K, N)
    logits = rng.standard_normal((L, N, K)) * rng.uniform(0.2, 5.0, (L, 1, 1))
    logits[:, np.arange(N), labels] += rng.uniform(0.0, 3.0, (L, 1))
    return logits, labels


def test_lates_is_never_worse_than_the_best_single_layer_with_its_temperature():
    rng = np.random.default_rng(2)
    for _ in range(40):
        L, N, K = rng.integers(1, 5), rng.integers(1, 120), rng.integers(2, 6)
        logits, labels = random_stack(rng, L, N, K)
        lates = cal.fit_lates(logits, labels)
        singles = [cal.fit_temperature(z, labels).nll_after for z in logits]
        assert lates.nll <= min(singles) + 1e-12
        assert lates.best_layer == int(np.argmin(singles))
        np.testing.assert_allclose(lates.single_layer_nll, singles)
        assert lates.nll_of(logits, labels) == pytest.approx(lates.nll, rel=1e-9, abs=1e-12)
        assert lates.weights.sum() == pytest.approx(1.0) and (lates.weights >= 0).all()
        np.testing.assert_allclose(lates.predict_proba(logits).sum(1), 1.0)


def test_lates_of_one_layer_is_temperature_scaling():
    rng = np.random.default_rng(3)
    logits, labels = random_stack(rng, 1, 200, 3)
    lates = cal.fit_lates([logits[0]], labels)
    ts = cal.fit_temperature(logits[0], labels)
    assert lates.temperatures[0] == pytest.approx(ts.temperature)
    np.testing.assert_allclose(lates.predict_proba(logits), ts.predict_proba(logits[0]))


def test_lates_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    logits, labels = random_stack(rng, 3, 150, 4)
    for _ in range(5):
        params = rng.standard_normal(6)
        value, grad = cal._lates_objective(params, logits, labels)
        numeric = approx_fprime(params, lambda p: cal._lates_objective(p, logits, labels)[0], 1e-7)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)
        # the value written out: -mean log sum_l w_l softmax(z_l / T_l)[y]
        w, T = softmax(params[3:]), np.exp(params[:3])
        p = sum(w[l] * softmax(logits[l] / T[l], axis=1) for l in range(3))
        assert value == pytest.approx(-np.mean(np.log(p[np.arange(150), labels])))


def test_lates_recovers_a_known_layer_mixture():
    rng = np.random.default_rng(5)
    N, K = 30_000, 3
    logits = 2 * rng.standard_normal((2, N, K))
    w, T = np.array([0.7, 0.3]), np.array([1.0, 0.5])
    probs = w[0] * softmax(logits[0] / T[0], 1) + w[1] * softmax(logits[1] / T[1], 1)
    labels = (probs.cumsum(1) > rng.random((N, 1))).argmax(1)
    lates = cal.fit_lates(logits, labels)
    np.testing.assert_allclose(lates.weights, w, atol=0.04)
    np.testing.assert_allclose(lates.temperatures, T, rtol=0.1)
    assert lates.nll < lates.single_layer_nll.min() - 0.01  # the mixture beats either layer


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: cal.expected_calibration_error([[1.0], [1.0]], [0, 0]), "at least 2 classes"),
        (lambda: cal.expected_calibration_error(np.zeros((0, 3)), []), "at least one sample"),
        (lambda: cal.expected_calibration_error([[0.6, 0.6]], [0]), "probs"),
        (lambda: cal.expected_calibration_error([[0.5, 0.5]], [2]), "labels"),
        (lambda: cal.expected_calibration_error([[0.5, 0.5]], [0.0]), "labels"),
        (lambda: cal.expected_calibration_error([[0.5, 0.5]], [0, 1]), "labels"),
        (lambda: cal.expected_calibration_error([[0.5, 0.5]], [0], bins=0), "bins"),
        (lambda: cal.expected_calibration_error([0.5, 0.5], [0]), "probs"),
        (lambda: cal.fit_temperature([[np.inf, 0.0]], [0]), "logits"),
        (lambda: cal.fit_temperature([[1.0, 0.0]], [-1]), "labels"),
        (lambda: cal.fit_temperature(np.ones((4, 1)), [0, 0, 0, 0]), "at least 2 classes"),
        (lambda: cal.nll([[1.0, 0.0]], [0], temperature=0.0), "temperature"),
        (lambda: cal.fit_lates([], []), "layer_logits"),
        (lambda: cal.fit_lates([np.ones((3, 2)), np.ones((4, 2))], [0, 1, 0]), "layer_logits"),
        (lambda: cal.fit_lates(np.ones((2, 3)), [0, 1, 0]), "layer_logits"),
        (lambda: cal.fit_lates(np.ones((2, 3, 2)), [0, 1]), "labels"),
    ],
)
def test_bad_input_raises_a_value_error_naming_it(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_lates_predict_needs_the_fitted_number_of_layers():
    rng = np.random.default_rng(6)
    logits, labels = random_stack(rng, 2, 50, 3)
    lates = cal.fit_lates(logits, labels)
    with pytest.raises(ValueError, match="2 layers"):
        lates.predict_proba(logits[:1])


def _check_experiment(saved, models):
    assert [r["model"] for r in saved["runs"]] == models
    data = saved["data"]
    assert data["N_fit"] + data["N_val"] == 1347 and data["N_val"] == round(0.2 * 1347)
    for run in saved["runs"]:
        assert run["val_nll_after"] <= run["val_nll_before"]
        assert run["after_ts"]["accuracy"] == run["before"]["accuracy"]  # T keeps the argmax
        for key in ("before", "after_ts"):
            assert 0 <= run[key]["ece"] <= 1 and run[key]["nll"] > 0
        if run["model"] in experiment.STACKS:
            for lates in run["lates"].values():  # "head" and "probe" readouts
                assert len(lates["weights"]) == saved["config"]["depth"]
                assert lates["val_nll"] <= min(lates["val_single_layer_nll"]) + 1e-12
                assert lates["val_nll"] <= run["val_nll_after"] + 1e-12  # the last layer


def test_calibration_experiment_quick(tmp_path):
    out = tmp_path / "calibration.json"
    argv = ["--quick", "--out", str(out), "--no-progress"]
    result = experiment.main(argv)
    saved = json.loads(out.read_text())
    _check_experiment(saved, ["convex-fista", "softmax-transformer"])
    assert out.with_suffix(".png").stat().st_size > 0
    again = experiment.main([*argv, "--resume"])  # finished fits are reused, not refitted
    assert again["runs"] == result["runs"]


def test_layer_readouts_end_in_the_models_logits():
    import convextx as cx
    from convextx import zoo

    task, *_ = experiment.split(cx.tasks.load("digits", seed=0), 0.2, 0)
    model = zoo.make("softmax-transformer", depth=2, steps=30, width=16).fit(task)  # as --quick
    X = task.X_test[:20]
    layers = experiment.layer_logits(model, X)
    assert layers.shape == (2, 20, 10)
    np.testing.assert_allclose(layers[-1], model.decision_function(X), rtol=1e-6, atol=1e-6)
    assert not np.allclose(layers[0], layers[1])
    val, test = experiment.probe_logits(model, task.X_train, task.y_train, [X, X[:5]])
    assert val.shape == (2, 20, 10) and test.shape == (2, 5, 10)
    np.testing.assert_allclose(val[-1], layers[-1])
    np.testing.assert_allclose(test, val[:, :5])


@pytest.mark.slow
def test_calibration_experiment_every_classifier(tmp_path):
    out = tmp_path / "calibration.json"
    models = experiment.classifiers()
    settings = ["--models", *models, "--depth", "2"]
    experiment.main(["--quick", *settings, "--out", str(out), "--no-progress"])
    _check_experiment(json.loads(out.read_text()), models)
