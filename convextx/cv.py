"""``ConvexAttentionCV``: beta chosen by k-fold cross-validation along a warm-started path.

In the style of scikit-learn's ``LassoCV``: one grid of betas from beta_max (the smallest beta
whose solution is 0, computed on the whole training set) down to ``min_ratio * beta_max``; on
every fold ``cx.path`` solves the program for each beta, warm-starting from the previous
solution, and scores it on the held-out part (``ConvexAttention.score``: accuracy for
classification, R^2 for regression). The beta of the best mean score is then refitted on all
the data, along the same path, which also gives the active tokens and heads at every beta.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.utils.validation import check_is_fitted

from convextx._validation import check_X, check_y
from convextx.estimator import ConvexAttention
from convextx.families.base import CLASSIFICATION_LOSSES
from convextx.path import path
from solvers import checks


class ConvexAttentionCV(BaseEstimator):
    """``ConvexAttention`` with beta selected by k-fold cross-validation.

    estimator: the ``ConvexAttention`` whose settings every fit uses (its beta is ignored;
      None: ``ConvexAttention()``).
    betas: the grid (positive, any order; searched largest first), or None for ``num`` values
      log-spaced from beta_max down to ``min_ratio * beta_max`` (beta_max of all of X, y).
    cv: folds (int), or a scikit-learn splitter / iterable of (train, test) indices. An int
      gives ``StratifiedKFold`` for classification with one label per sample, ``KFold``
      otherwise (no shuffling, as in ``LassoCV``).

    Fitted attributes: ``betas_`` (n_betas,) largest first; ``cv_scores_`` (n_folds, n_betas)
    held-out scores; ``mean_scores_`` (n_betas,); ``beta_`` (the best mean score; ties go to the
    larger beta, the sparser model); ``best_index_``; ``active_tokens_path_`` and
    ``heads_path_`` (n_betas,) of the full-data path; ``path_`` (its ``BetaPath``);
    ``best_estimator_`` (the full-data fit at ``beta_``). ``predict``, ``predict_proba``,
    ``decision_function`` and ``score`` use ``best_estimator_``.
    """

    def __init__(
        self,
        estimator: ConvexAttention | None = None,
        betas: Any = None,
        num: int = 10,
        min_ratio: float = 1e-2,
        cv: Any = 5,
    ) -> None:
        self.estimator = estimator
        self.betas = betas
        self.num = num
        self.min_ratio = min_ratio
        self.cv = cv

    def _base(self) -> ConvexAttention:
        if self.estimator is None:
            return ConvexAttention()
        if not isinstance(self.estimator, ConvexAttention):
            raise TypeError(
                f"estimator must be a ConvexAttention or None; got {type(self.estimator).__name__}"
            )
        return clone(self.estimator)

    def _betas(self) -> np.ndarray | None:
        """The given grid, largest first, or None (``cx.path`` spaces one from beta_max)."""
        if self.betas is None:
            return None
        betas = checks.real_array("betas", self.betas, 1, " (n_betas,)")
        if betas.size == 0 or not np.all(betas > 0):
            raise ValueError("betas must be a non-empty 1-d array of numbers > 0")
        return np.sort(betas)[::-1]

    def _splits(self, base: ConvexAttention, X: np.ndarray, y: np.ndarray) -> list:
        loss = base.loss or base._targets(y)[0]
        classifier = loss in CLASSIFICATION_LOSSES and y.ndim == 1
        if isinstance(self.cv, bool):
            raise TypeError("cv must be an int >= 2, a splitter or an iterable of splits")
        if isinstance(self.cv, int | np.integer):
            folds = checks.integer("cv", self.cv, 2, X.shape[0])
            splitter = StratifiedKFold(folds) if classifier else KFold(folds)
        else:
            splitter = check_cv(self.cv, y, classifier=classifier)
        return list(splitter.split(X, y if classifier else None))

    def fit(self, X: Any, y: Any) -> ConvexAttentionCV:
        """Cross-validate every beta, then refit the best one on all of (X (N, n, d), y)."""
        base = self._base()
        X, y = check_X(X), check_y(y)
        base._method()  # every hyperparameter, before any solve
        splits = self._splits(base, X, y)
        params = base.get_params()
        params.pop("beta")
        # The full-data path first: it fixes the grid (from its beta_max when none is given).
        full = path(X, y, self._betas(), num=self.num, min_ratio=self.min_ratio, **params)
        betas = full.betas
        scores = np.array([
            path(X[train], y[train], betas, X[test], y[test], **params).column("test_score")
            for train, test in splits
        ])  # fmt: skip
        mean = scores.mean(axis=0)
        best = int(np.argmax(mean))  # the first maximum: the largest such beta
        self.betas_ = betas
        self.cv_scores_ = scores
        self.mean_scores_ = mean
        self.best_index_ = best
        self.beta_ = float(betas[best])
        self.path_ = full
        self.active_tokens_path_ = full.column("active_tokens")
        self.heads_path_ = full.column("heads")
        self.best_estimator_ = full.estimators[best]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X)

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.decision_function(X)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.score(X, y, sample_weight)

    def plot(self, ax: Any = None) -> Any:
        """Mean CV score (with the folds' range) and full-data active tokens against beta, on
        log-x axes; the chosen beta is marked. Returns the figure."""
        import matplotlib.pyplot as plt

        check_is_fitted(self, "best_estimator_")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        ax.semilogx(self.betas_, self.mean_scores_, "o-", color="C0", label="mean CV score")
        ax.fill_between(
            self.betas_, self.cv_scores_.min(0), self.cv_scores_.max(0), color="C0", alpha=0.2
        )
        ax.axvline(self.beta_, color="C3", linestyle="--", label=f"beta_ = {self.beta_:.3g}")
        ax.set_xlabel("beta")
        ax.set_ylabel("held-out score")
        tokens = ax.twinx()
        tokens.semilogx(self.betas_, self.active_tokens_path_, "s:", color="C2")
        tokens.set_ylabel("active tokens (full data)", color="C2")
        ax.legend(loc="lower left")
        return ax.figure
