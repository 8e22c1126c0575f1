"""The model zoo: one protocol for every entry, and the Adam-trained architecture never below the
certified optimum of its own convex program."""

import json

import jax
import numpy as np
import pytest

import convextx as cx
from convextx import zoo
from convextx.zoo import base

REQUIRED = {
    "convex-fista",
    "convex-cvxpy",
    "convex-gated",
    "simplex-adam",
    "simplex-sgd",
    "softmax-transformer",
    "gss",
    "moe",
    "repair-merged",
}
# tiny settings: every entry fits a 30-sample task in seconds
TINY = {
    "convex-gated": {"gates": 4},
    "simplex-adam": {"steps": 200},
    "simplex-sgd": {"steps": 100},
    "softmax-transformer": {"width": 8, "steps": 20},
    "gss": {"width": 8, "steps": 20, "options": {"state_size": 4}},
    "moe": {"width": 8, "steps": 20, "options": {"num_experts": 2}},
    "repair-merged": {"widths": (8,), "steps": 20},
}
# each compiles a model of its own (seconds of CPU apiece): run with -m slow
SLOW = {"convex-cvxpy", "convex-gated", "softmax-transformer", "gss", "moe", "repair-merged"}


def _task(problem="classification"):
    return cx.tasks.load(
        "student_teacher", N_train=30, N_test=20, n=4, d=3, heads=2, problem=problem,
        c=3 if problem == "classification" else None, noise=0.1,
    )  # fmt: skip


_FITTED = {}


def _fitted(name, problem="classification"):
    """Each entry fitted once per problem for the whole module."""
    if (name, problem) not in _FITTED:
        task = _task(problem)
        _FITTED[name, problem] = (zoo.make(name, **TINY.get(name, {})).fit(task), task)
    return _FITTED[name, problem]


def test_names_cover_the_entries_and_unknown_names_list_them():
    assert set(zoo.names()) >= REQUIRED
    with pytest.raises(ValueError, match="unknown model 'adam'.*convex-fista"):
        zoo.make("adam")
    with pytest.raises(TypeError, match=r"unknown settings \['stpes'\].*'steps'"):
        zoo.make("simplex-adam", stpes=10)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(REQUIRED)],
)
def test_protocol(name):
    model, task = _fitted(name)
    assert model.name == name
    pred = model.predict(model.inputs(task, "test"))
    assert pred.shape == task.y_test.shape
    assert set(np.unique(pred)) <= set(range(task.num_classes))
    for split in ("train", "test"):
        y = getattr(task, f"y_{split}")
        assert model.score(task, split) == pytest.approx(
            np.mean(model.predict(model.inputs(task, split)) == y)
        )
    report = model.report()
    json.dumps(report)  # JSON-ready
    assert report["model"] == name and report["task"] == "student_teacher"
    assert report["metric"] == "accuracy"
    assert report["test_metric"] == model.score(task, "test")
    assert report["train_metric"] == model.score(task, "train")
    assert report["parameters"] > 0 and report["wall_seconds"] > 0 and report["cpu_seconds"] > 0
    assert report["device"].startswith("cpu")
    times, values = report["history"]["time"], report["history"]["objective"]
    assert len(times) == len(values) >= 1 and np.all(np.diff(times) >= 0)
    assert np.isfinite(report["objective"])
    for maps in model.attention_maps().values():  # mixing weights: rows on the simplex
        assert (maps >= 0).all()
        np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-6)


def test_convex_models_report_certificates_and_attention_heads():
    model, task = _fitted("convex-fista")
    report = model.report()
    assert report["status"] == "optimal"
    assert report["certified_optimum"] == report["objective"]
    assert 0 <= report["gap"] <= 1e-6 * max(1.0, report["objective"])
    heads = model.attention_maps()["heads"]
    assert heads.shape == (report["details"]["heads"], task.n_tokens)
    assert set(np.unique(heads)) <= {0.0, 1.0}  # recovered heads attend to one token each


@pytest.mark.slow
def test_cvxpy_entry_reaches_the_fista_optimum():
    fista, cvxpy = _fitted("convex-fista")[0].report(), _fitted("convex-cvxpy")[0].report()
    assert cvxpy["objective"] == pytest.approx(fista["objective"], rel=1e-5)


@pytest.mark.parametrize(
    "problem", ["classification", pytest.param("regression", marks=pytest.mark.slow)]
)
def test_simplex_adam_stays_above_the_certified_optimum(problem):
    """Adam on the convex program's own architecture: its objective (scored by
    nonconvex_objective) equals its training objective and is >= the certified optimum."""
    model, task = _fitted("simplex-adam", problem)
    report = model.report()
    assert report["objective"] == pytest.approx(report["history"]["objective"][-1], rel=1e-9)
    assert report["objective"] >= report["certified_optimum"] - report["gap"] - 1e-9
    assert report["history"]["objective"][-1] < report["history"]["objective"][0]
    convex, _ = (
        (zoo.make("convex-fista").fit(task), task)
        if problem == "regression"
        else _fitted("convex-fista")
    )
    assert report["certified_optimum"] == pytest.approx(convex.report()["objective"], rel=1e-5)
    assert report["details"]["excess_over_optimum"] >= -report["gap"]
    if problem == "regression":
        assert report["metric"] == "r2"
        assert model.predict(task.X_test).shape == task.y_test.shape


def test_budget_stops_training_and_is_validated():
    task = _task()
    model = zoo.make("simplex-sgd", steps=10_000, log_every=10).fit(task, budget_seconds=1e-3)
    details = model.report()["details"]
    assert details["stopped_by_budget"] and details["steps"] < 10_000
    assert model.report()["budget_seconds"] == 1e-3
    with pytest.raises(ValueError, match="budget_seconds"):
        zoo.make("convex-fista").fit(task, budget_seconds=0)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="fits problems.*regression task"):
        zoo.make("repair-merged").fit(_task("regression"))
    with pytest.raises(TypeError, match="Task"):
        zoo.make("convex-fista").fit(np.zeros((3, 2, 2)))
    with pytest.raises(AttributeError, match="not fitted"):
        zoo.make("convex-fista").report()
    with pytest.raises(ValueError, match="split"):
        zoo.make("convex-fista").inputs(_task(), "validation")


def test_loss_scaling_matches_the_convex_programs():
    """The per-sample losses the trainers sum are the convex programs' losses."""
    task = _task("regression")
    pred, y = np.array([[1.0], [2.0]]), np.array([0.0, 4.0])
    np.testing.assert_allclose(base.per_sample_loss(task)(pred, y), [0.5, 2.0])
    labels = _task()
    logits = np.array([[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(base.per_sample_loss(labels)(logits, np.array([1])), [np.log(3)])


def test_trained_models_record_test_metric_curves():
    """The history carries the test metric at every logged step (measured time, not spread),
    and ``record`` entries next to it; the last point is the fitted model's test metric."""
    task = _task()
    seen = []

    def record(predict):
        seen.append(1)
        return {"train_accuracy_again": np.mean(predict(task.X_train) == task.y_train)}

    model = zoo.make("simplex-adam", steps=60, log_every=20, record=record).fit(task)
    history = model.report()["history"]
    assert len(history["test_metric"]) == len(history["time"]) == len(history["step"]) == 4
    assert history["step"] == [0, 20, 40, 60] and len(seen) == 4
    assert history["test_metric"][-1] == pytest.approx(model.report()["test_metric"])
    assert history["train_accuracy_again"][-1] == pytest.approx(model.report()["train_metric"])
    assert np.all(np.diff(history["time"]) > 0) and len(set(np.diff(history["time"]))) > 1
    assert {"train_loss", "test_loss"} <= set(history)


def test_convex_curve_records_the_test_metric_along_the_solve():
    task = _task("regression")
    model = zoo.make("convex-fista", curve=True, max_iter=5000).fit(task)
    report = model.report()
    history = report["history"]
    assert report["status"] == "optimal"
    assert len(history["test_metric"]) == len(history["time"]) >= 2
    assert np.all(np.diff(history["step"]) > 0) and np.all(np.diff(history["time"]) >= 0)
    assert history["test_metric"][-1] == pytest.approx(report["test_metric"])
    assert history["objective"][-1] == pytest.approx(report["objective"], rel=1e-9)
    assert report["details"]["iterations"] == history["step"][-1]


def test_restarts_keep_the_best_train_objective():
    task = _task()
    model = zoo.make("simplex-sgd", steps=40, log_every=20, restarts=3, seed=5).fit(task)
    details = model.report()["details"]
    assert details["restart_seeds"] == [5, 6, 7]
    objectives = details["restart_objectives"]
    assert len(objectives) == 3 and len(set(objectives)) == 3  # different initializations
    assert model.report()["objective"] == min(objectives)
    assert details["best_seed"] == 5 + int(np.argmin(objectives)) and model.seed == 5
    one = zoo.make("simplex-sgd", steps=40, log_every=20, seed=details["best_seed"]).fit(task)
    assert one.report()["objective"] == pytest.approx(min(objectives), rel=1e-6)
    with pytest.raises(ValueError, match="restarts"):
        zoo.make("simplex-sgd", steps=40, restarts=0).fit(task)


def test_convex_and_simplex_fits_share_one_certificate_solve():
    from convextx.zoo import certificates

    task = _task("regression")
    certificates.cache_clear()
    convex = zoo.make("convex-fista", beta=0.5).fit(task)
    simplex = zoo.make("simplex-adam", beta=0.5, steps=20).fit(task)
    info = certificates.cache_info()
    assert (info.hits, info.misses, info.solves) == (1, 0, 0)  # the convex solve was reused
    assert simplex.report()["certified_optimum"] == convex.report()["objective"]
    zoo.make("simplex-sgd", beta=0.5, steps=20).fit(task)  # another simplex fit: a hit too
    zoo.make("simplex-adam", beta=0.25, steps=20).fit(task)  # another beta: a solve of its own
    info = certificates.cache_info()
    assert (info.hits, info.misses, info.solves, info.currsize) == (2, 1, 1, 2)
    assert zoo.make("simplex-adam", beta=0.5, steps=20, tol=1e-9).fit(task)  # tighter: solved
    assert certificates.cache_info().solves == 2


def test_check_certified_refuses_objectives_below_the_bound():
    from convextx.zoo.certificates import CertificateError, check_certified

    assert check_certified([2.0, 1.5], 1.0) == pytest.approx(0.5)
    assert check_certified([2.0, float("nan")], 1.0) is None
    assert check_certified([1.0 - 1e-9], 1.0) == pytest.approx(-1e-9)  # float rounding
    with pytest.raises(CertificateError, match="below the certified lower bound"):
        check_certified([0.9], 1.0)
    model, _ = _fitted("simplex-adam")
    details = model.report()["details"]
    assert details["margin_above_bound"] >= 0
    assert details["lower_bound"] <= model.report()["certified_optimum"]


def test_linear_attention_entries_report_certified_excess():
    """ "linear-adam" (heads by Adam) is never below the certified optimum of "convex-linear",
    and its certified excess (objective minus a dual bound) bounds its excess over it."""
    from convextx.zoo import certificates

    task = cx.tasks.load("associative_recall", num_pairs=2, context="pairs", N_train=64, N_test=32)
    certificates.cache_clear()
    own = zoo.make("linear-adam", steps=200).fit(task)  # no solve cached: its own certificate
    convex = zoo.make("convex-linear").fit(task)
    cached = zoo.make("linear-adam", steps=200).fit(task)
    assert own.report()["details"]["certificate"] == "heads"
    assert cached.report()["details"]["certificate"] == "cache"
    assert cached.report()["certified_optimum"] == convex.report()["objective"]
    for model in (own, convex, cached):
        report = model.report()
        json.dumps(report, allow_nan=False)  # strict JSON
        assert report["test_metric"] > 1.5 / task.num_classes  # it learned something
        assert report["status"] in ("optimal", "bound")
    assert convex.report()["status"] == "optimal"
    optimum = convex.report()["objective"]
    for model in (own, cached):
        report = model.report()
        excess = report["details"]["certified_excess"]
        rtol = 1e-9 * max(1.0, abs(report["objective"]))
        assert report["objective"] >= optimum - convex.report()["gap"] - rtol
        assert report["objective"] >= report["certified_optimum"] - rtol
        assert excess >= 0 and excess >= report["objective"] - report["certified_optimum"] - rtol
        assert excess >= report["objective"] - optimum - rtol


def test_a_stochastic_moe_router_learns_through_the_zoo():
    """The zoo trains a stochastic router with its estimator's gradient (moe.objective): its
    weights move from their initialization; a router without that gradient would not."""
    task = _task()
    options = {"num_experts": 2, "router": "reinforce_loo", "balance_coef": 0.0, "z_coef": 0.0}
    cfg = {"width": 8, "steps": 15, "options": options}  # no auxiliary router losses
    start = zoo.make("moe", **cfg | {"steps": 1}).fit(task).params_
    trained = zoo.make("moe", **cfg).fit(task).params_
    first, last = (
        [
            np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(p)
            if "router" in str(path)
        ]
        for p in (start, trained)
    )
    assert first and any(np.abs(a - b).max() > 1e-6 for a, b in zip(first, last, strict=True))
