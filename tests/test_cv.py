"""ConvexAttentionCV against a hand-rolled k-fold loop over the same betas."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import KFold, StratifiedKFold

import convextx as cx

N, n, d, c = 36, 4, 3, 3


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    labels = (X[:, 1, 0] + 0.5 * rng.standard_normal(N) > 0).astype(int) + (X[:, 2, 1] > 0.8)
    targets = X[:, 1] @ rng.standard_normal((d, 2)) + 0.3 * rng.standard_normal((N, 2))
    return X, labels, targets


def hand_rolled(base, X, y, betas, splitter, stratify):
    scores = np.empty((splitter.get_n_splits(), len(betas)))
    for f, (train, test) in enumerate(splitter.split(X, y if stratify else None)):
        for b, beta in enumerate(betas):
            est = cx.ConvexAttention(**{**base.get_params(), "beta": beta}).fit(X[train], y[train])
            scores[f, b] = est.score(X[test], y[test])
    return scores


@pytest.mark.parametrize("problem", ["classification", "regression"])
def test_cv_scores_match_a_hand_rolled_k_fold_loop(problem):
    X, labels, targets = data()
    y = labels if problem == "classification" else targets
    base = cx.ConvexAttention(kind="vector", tol=1e-8, max_iter=50_000)
    cv = cx.ConvexAttentionCV(base, num=4, min_ratio=0.05, cv=3).fit(X, y)
    splitter = StratifiedKFold(3) if problem == "classification" else KFold(3)
    expected = hand_rolled(base, X, y, cv.betas_, splitter, problem == "classification")
    np.testing.assert_allclose(cv.cv_scores_, expected, rtol=1e-6, atol=1e-9)  # both certified
    best = int(np.argmax(expected.mean(axis=0)))
    assert cv.beta_ == cv.betas_[best] and np.all(np.diff(cv.betas_) < 0)
    refit = cx.ConvexAttention(**{**base.get_params(), "beta": cv.beta_}).fit(X, y)
    assert cv.best_estimator_.objective_ == pytest.approx(refit.objective_, rel=1e-6)
    np.testing.assert_allclose(cv.predict(X), refit.predict(X), rtol=1e-6, atol=1e-8)
    assert cv.active_tokens_path_.shape == cv.heads_path_.shape == cv.betas_.shape
    assert cv.active_tokens_path_[0] == 0  # beta_max (with its margin): the zero solution
    assert cv.plot() is not None


def test_cv_checks_its_arguments():
    X, labels, _ = data()
    with pytest.raises(NotFittedError):
        cx.ConvexAttentionCV().predict(X)
    with pytest.raises(ValueError, match="betas"):
        cx.ConvexAttentionCV(betas=[1.0, -1.0]).fit(X, labels)
    with pytest.raises(ValueError, match="cv"):
        cx.ConvexAttentionCV(cv=1).fit(X, labels)
    with pytest.raises(TypeError, match="estimator"):
        cx.ConvexAttentionCV(estimator="vector").fit(X, labels)
    with pytest.raises(ValueError, match="tol"):
        cx.ConvexAttentionCV(cx.ConvexAttention(tol=2.0)).fit(X, labels)
