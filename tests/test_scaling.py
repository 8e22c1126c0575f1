"""Scaling-law estimators (convextx.scaling): recovery of known laws, the implicit M4
prediction against an independent grid search, the extrapolation error, bad input; the
experiment (experiments.scaling_laws) end to end at tiny size."""

import json

import numpy as np
import pytest

from convextx import scaling
from experiments import scaling_laws

E0 = 0.9
SIZES = np.geomspace(16, 2**16, 25)
TRUE = {
    "M1": {"beta": 1.5, "c": -0.3},
    "M2": {"beta": 2.0, "c": -0.5, "e_inf": 0.08},
    "M3": {"beta": 1.0, "c": -0.4, "gamma": 1e-3},
    "M4": {"beta": 3.0, "c": -0.6, "alpha": 1.2, "e_inf": 0.05},
}
# relative tolerances per parameter at 0.1% multiplicative noise (alpha and beta trade off in
# M4, so they are the loosest)
RTOL = {"beta": 0.15, "c": 0.03, "e_inf": 0.02, "gamma": 0.05, "alpha": 0.1}


def law(estimator, params, sizes=SIZES):
    return scaling.predict(estimator, params, sizes, E0)


def implicit_cost(estimator, params, sizes, errors):
    """sum_i (log g(e_i) - log f(x_i))^2 written out from the paper's equations."""
    b, c = params["beta"], params["c"]
    if estimator == "M1":
        lhs, rhs = errors, b * sizes**c
    elif estimator == "M2":
        lhs, rhs = errors - params["e_inf"], b * sizes**c
    elif estimator == "M3":
        lhs, rhs = errors, b * (1 / sizes + params["gamma"]) ** (-c)
    else:
        lhs = (errors - params["e_inf"]) / (E0 - errors) ** params["alpha"]
        rhs = b * sizes**c
    return float(np.sum((np.log(lhs) - np.log(rhs)) ** 2))


@pytest.mark.parametrize("estimator", scaling.ESTIMATORS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_known_parameters_from_noisy_curves(estimator, seed):
    rng = np.random.default_rng(seed)
    errors = law(estimator, TRUE[estimator]) * np.exp(1e-3 * rng.standard_normal(SIZES.size))
    fit = scaling.fit_scaling_law(SIZES, errors, estimator, e0=E0)
    assert set(fit.params) == set(scaling.PARAMETERS[estimator])
    for name, value in TRUE[estimator].items():
        assert fit.params[name] == pytest.approx(value, rel=RTOL[name]), name
    # the optimum is at least as good as the truth on the fitted objective (written out here)
    fitted = implicit_cost(estimator, fit.params, SIZES, errors)
    assert fitted <= implicit_cost(estimator, TRUE[estimator], SIZES, errors) + 1e-12
    assert fit.rms_log_residual == pytest.approx(np.sqrt(fitted / SIZES.size), rel=1e-9)


def test_m4_prediction_solves_the_implicit_equation_and_matches_a_grid_search():
    params = TRUE["M4"]
    sizes = np.array([1.0, 10.0, 300.0, 1e4, 1e7])
    predicted = law("M4", params, sizes)
    lhs = (predicted - params["e_inf"]) / (E0 - predicted) ** params["alpha"]
    np.testing.assert_allclose(lhs, params["beta"] * sizes ** params["c"], rtol=1e-10)
    assert np.all((predicted > params["e_inf"]) & (predicted < E0))
    assert np.all(np.diff(predicted) < 0)
    # the authors' route: w = e - e_inf on a fine grid of (0, e0 - e_inf), the w closest to
    # solving w = f (b - w)^alpha
    b = E0 - params["e_inf"]
    w = np.linspace(0, b, 2_000_001)
    for x, e in zip(sizes, predicted, strict=True):
        f = params["beta"] * x ** params["c"]
        grid = w[np.argmin(np.abs(w - f * (b - w) ** params["alpha"]))] + params["e_inf"]
        assert e == pytest.approx(grid, abs=2 * b / 2_000_000)


def test_m4_with_alpha_zero_is_m2_and_m3_with_gamma_zero_is_m1():
    m2 = {"beta": 2.0, "c": -0.5, "e_inf": 0.08}
    np.testing.assert_allclose(law("M4", m2 | {"alpha": 0.0}), law("M2", m2), rtol=1e-14)
    m1 = {"beta": 1.5, "c": -0.3}
    np.testing.assert_allclose(law("M3", m1 | {"gamma": 0.0}), law("M1", m1), rtol=1e-14)
    np.testing.assert_allclose(law("M1", m1), 1.5 * SIZES**-0.3, rtol=1e-14)


def test_extrapolation_error_is_the_rms_log_error_at_larger_sizes():
    errors = law("M4", TRUE["M4"])
    (x_fit, e_fit), (x_test, e_test) = scaling.split_by_size(SIZES, errors, held_out=5)
    assert x_fit.size == 20 and x_test.min() > x_fit.max()
    fit = scaling.fit_scaling_law(x_fit, e_fit, "M4", e0=E0)
    assert scaling.extrapolation_error(fit, x_test, e_test) < 1e-4  # noiseless: exact law
    # a held-out curve off by a known factor: the RMS log error is its log
    shift = np.exp([0.1, -0.1, 0.1, -0.1, 0.1])
    predicted = fit.predict(x_test)
    assert scaling.extrapolation_error(fit, x_test, predicted * shift) == pytest.approx(0.1)
    # a saturating curve: the power law (M1) extrapolates worse than M2 and M4
    errs = {
        name: scaling.extrapolation_error(
            scaling.fit_scaling_law(x_fit, e_fit, name, e0=E0), x_test, e_test
        )
        for name in ("M1", "M2", "M4")
    }
    assert errs["M1"] > 10 * max(errs["M2"], errs["M4"])


def test_split_by_size_keeps_repeated_sizes_together():
    sizes = [64, 64, 128, 128, 256, 256, 512]
    errors = [0.5, 0.45, 0.4, 0.38, 0.3, 0.31, 0.25]
    (x_fit, e_fit), (x_test, e_test) = scaling.split_by_size(sizes, errors, held_out=2)
    assert x_fit.tolist() == [64, 64, 128, 128] and e_fit.tolist() == [0.5, 0.45, 0.4, 0.38]
    assert x_test.tolist() == [256, 256, 512] and e_test.tolist() == [0.3, 0.31, 0.25]
    fit = scaling.fit_scaling_law(x_fit, e_fit, "M1")  # two distinct sizes: enough for M1
    assert fit.params["c"] < 0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"sizes": [0, 2, 4, 8], "errors": [0.5, 0.4, 0.3, 0.2]}, "sizes"),
        ({"sizes": [-1, 2, 4, 8], "errors": [0.5, 0.4, 0.3, 0.2]}, "sizes"),
        ({"sizes": [1, 2, np.nan, 8], "errors": [0.5, 0.4, 0.3, 0.2]}, "sizes"),
        ({"sizes": [[1, 2], [4, 8]], "errors": [0.5, 0.4, 0.3, 0.2]}, "sizes"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.5, 0.4, 0.0, 0.2]}, "errors"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.5, 0.4, -0.3, 0.2]}, "errors"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.95, 0.4, 0.3, 0.2]}, "errors"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.9, 0.4, 0.3, 0.2]}, "errors"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.5, 0.4, 0.3]}, "errors"),
        ({"sizes": [1, 2, 4, 8], "errors": ["a", "b", "c", "d"]}, "errors"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.5, 0.4, 0.3, 0.2], "estimator": "M5"}, "estimator"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.5, 0.4, 0.3, 0.2], "e0": None}, "e0"),
        ({"sizes": [1, 2, 4, 8], "errors": [0.5, 0.4, 0.3, 0.2], "e0": -1.0}, "e0"),
        ({"sizes": [1, 2, 4, 4], "errors": [0.5, 0.4, 0.3, 0.2]}, "distinct"),
        ({"sizes": [], "errors": []}, "sizes"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_argument(kwargs, argument):
    kwargs = {"estimator": "M4", "e0": E0} | kwargs
    with pytest.raises(ValueError, match=argument):
        scaling.fit_scaling_law(**kwargs)


def test_too_few_points_per_estimator():
    for estimator, needed in (("M1", 2), ("M2", 3), ("M3", 3), ("M4", 4)):
        sizes = SIZES[: needed - 1]
        with pytest.raises(ValueError, match=f"at least {needed} distinct"):
            scaling.fit_scaling_law(sizes, law("M1", TRUE["M1"], sizes), estimator, e0=E0)


def test_bad_extrapolation_input():
    errors = law("M2", TRUE["M2"])
    fit = scaling.fit_scaling_law(SIZES[:10], errors[:10], "M2")
    with pytest.raises(ValueError, match="exceed the largest fitted size"):
        scaling.extrapolation_error(fit, SIZES[5:], errors[5:])
    with pytest.raises(ValueError, match="errors"):
        scaling.extrapolation_error(fit, SIZES[10:], errors[11:])
    with pytest.raises(ValueError, match="fit"):
        scaling.extrapolation_error({"estimator": "M2"}, SIZES[10:], errors[10:])
    with pytest.raises(ValueError, match="held_out"):
        scaling.split_by_size(SIZES, errors, held_out=25)
    with pytest.raises(ValueError, match="held_out"):
        scaling.split_by_size(SIZES, errors, held_out=0)
    with pytest.raises(ValueError, match="sizes"):
        fit.predict([100.0, 0.0])
    with pytest.raises(ValueError, match="params of M2"):
        scaling.predict("M2", {"beta": 1.0, "c": -0.5}, SIZES)
    with pytest.raises(ValueError, match="e0"):
        scaling.predict("M4", TRUE["M4"], SIZES)


def _check_experiment(saved, models):
    cfg = saved["config"]
    assert [m for m in saved["fits"]] == models
    assert {(r["model"], r["size"]) for r in saved["runs"]} == {
        (m, s) for m in models for s in cfg["sizes"]
    }
    for model, fits in saved["fits"].items():
        assert max(fits["fit_sizes"]) < min(fits["held_out_sizes"])
        assert len(fits["held_out_sizes"]) == cfg["held_out"]
        for estimator in scaling.ESTIMATORS:
            entry = fits[estimator]
            assert "params" in entry or "error" in entry, (model, estimator)
            if "params" in entry:
                assert entry["extrapolation_rms_log_error"] >= 0
                assert entry["params"]["c"] <= 0


def test_scaling_laws_experiment_quick_convex(tmp_path):
    out = tmp_path / "scaling_laws.json"
    argv = ["--quick", "--models", "convex-fista", "--out", str(out), "--no-progress"]
    result = scaling_laws.main(argv)
    saved = json.loads(out.read_text())
    _check_experiment(saved, ["convex-fista"])
    assert out.with_suffix(".png").stat().st_size > 0
    assert "params" in saved["fits"]["convex-fista"]["M4"]
    again = scaling_laws.main([*argv, "--resume"])  # finished runs are reused, not retrained
    assert again["runs"] == result["runs"]


@pytest.mark.slow
def test_scaling_laws_experiment_quick_every_model(tmp_path):
    out = tmp_path / "scaling_laws.json"
    scaling_laws.main(["--quick", "--out", str(out), "--no-progress"])
    _check_experiment(json.loads(out.read_text()), list(scaling_laws.MODELS))
