"""Calibration of classifiers: expected calibration error, temperature scaling, and LATES.

Notation: N samples, K >= 2 classes, L layers. Logits z (N, K), probabilities p (N, K) (rows on
the simplex), labels y (N,) ints in [0, K).

- **ECE** (``expected_calibration_error``), top-label with B equal-width bins: the confidence
  of sample i is conf_i = max_k p_ik and its prediction argmax_k p_ik (ties: the lowest k).
  Bin b holds the samples with conf_i in (b/B, (b+1)/B] (bin 0 also holds conf = 0; the edges
  are ``np.linspace(0, 1, B + 1)``), and

      ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|,

  acc(B_b) the fraction of correct predictions in the bin and conf(B_b) its mean confidence
  (empty bins count 0). ``calibration_bins`` gives the per-bin counts for reliability plots.
- **Temperature scaling** (Guo et al. 2017, ``fit_temperature``): p = softmax(z / T) with one
  T > 0 fitted on a validation split by minimizing the mean negative log-likelihood
  NLL(T) = mean_i [logsumexp(z_i / T) - z_iy_i / T] over log T (L-BFGS-B from T = 1, with
  the analytic gradient; log T in [-LOG_T_BOUND, LOG_T_BOUND]). NLL is convex in 1/T, so the
  minimum is global; the fit keeps T = 1 if the optimizer does not lower the NLL, so it never
  raises the validation NLL.
- **LATES**, layer-stack temperature scaling (Khalifa, Mozer, Sedghi, Neyshabur, Alabdulmohsin,
  arXiv 2211.10193, ``fit_lates``): every layer l has readout logits z_l (N, K) and its own
  temperature T_l, and the layers vote with weights w = softmax(a) (on the simplex):

      p_i = sum_l w_l softmax(z_li / T_l),

  fitted by minimizing the validation NLL -mean_i log p_iy_i over (log T_l, a_l) (L-BFGS-B,
  analytic gradient). It contains each single layer with its own temperature (w one-hot),
  so the fit starts there as well (the best such layer), and it also starts from uniform
  weights and from 90% on the best layer; the lowest NLL of the optimized starts and the exact
  one-hot best layer is kept: LATES is never worse on the validation NLL than the best single
  layer with its own temperature. How each layer's readout is built is the caller's choice
  (the paper's models read out every layer; see ``experiments/calibration.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import logsumexp, softmax

from solvers import checks

DEFAULT_BINS = 15
LOG_T_BOUND = 7.0  # temperatures in [e^-7, e^7] ~ [1e-3, 1e3]
SIMPLEX_ATOL = 1e-6  # rows of probabilities must sum to 1 within this
LATES_DOMINANT = 0.9  # weight of the best layer in one of LATES's starts


# ---------------------------------------------------------------------------- validation


def _labels(labels: Any, num_samples: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    if y.shape != (num_samples,):
        raise ValueError(f"labels must have shape ({num_samples},) (one per sample); got {y.shape}")
    if (y < 0).any() or (y >= num_classes).any():
        raise ValueError(f"labels must lie in [0, {num_classes}); got {np.unique(y).tolist()}")
    return y


def _matrix(name: str, value: Any) -> np.ndarray:
    """A finite real (N, K) float array with N >= 1 and K >= 2."""
    hint = " (samples, classes)"
    array = checks.as_array(name, value, hint)
    if array.ndim == 2 and array.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample; got shape {array.shape}")
    array = checks.real_array(name, array, ndim=2, shape_hint=hint)
    if array.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes (columns); got {array.shape[1]}")
    return array.astype(float)


def _probabilities(probs: Any) -> np.ndarray:
    p = _matrix("probs", probs)
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=SIMPLEX_ATOL):
        raise ValueError("probs must be nonnegative with rows summing to 1")
    return p


def _bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1; got {bins!r}")
    return int(bins)


def _layer_stack(layer_logits: Any) -> np.ndarray:
    """(L, N, K) from an array or a sequence of (N, K) arrays, L >= 1."""
    if isinstance(layer_logits, np.ndarray):
        stack = layer_logits
    elif isinstance(layer_logits, Sequence) and len(layer_logits) > 0:
        shapes = {np.shape(z) for z in layer_logits}
        if len(shapes) != 1:
            raise ValueError(f"layer_logits must all have one shape (N, K); got {sorted(shapes)}")
        stack = np.stack([np.asarray(z) for z in layer_logits])
    else:
        raise ValueError("layer_logits must be an (L, N, K) array or a non-empty list of (N, K)")
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"layer_logits must be (layers, samples, classes); got {stack.shape}")
    return np.stack([_matrix(f"layer_logits[{l}]", z) for l, z in enumerate(stack)])


# ------------------------------------------------------------------------------------ ECE


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of top-label calibration (B bins): edges (B + 1,), count (B,),
    accuracy (B,) and confidence (B,) (nan in empty bins)."""

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        """sum_b (count_b / N) |accuracy_b - confidence_b| (empty bins count 0)."""
        full = self.count > 0
        weights = self.count[full] / self.count.sum()
        return float(np.sum(weights * np.abs(self.accuracy[full] - self.confidence[full])))


def calibration_bins(probs: Any, labels: Any, bins: int = DEFAULT_BINS) -> CalibrationBins:
    """Top-label reliability statistics of probs (N, K) against labels (N,) in ``bins``
    equal-width confidence bins (module docstring)."""
    p = _probabilities(probs)
    y = _labels(labels, *p.shape)
    B = _bins(bins)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, B + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # (lo, hi]; 0 in bin 0
    count = np.bincount(which, minlength=B).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=correct, minlength=B) / count
        mean_confidence = np.bincount(which, weights=confidence, minlength=B) / count
    return CalibrationBins(edges, count.astype(int), accuracy, mean_confidence)


def expected_calibration_error(probs: Any, labels: Any, bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE of probs (N, K) against labels (N,) with ``bins`` equal-width bins
    (module docstring), in [0, 1]."""
    return calibration_bins(probs, labels, bins).ece


# ------------------------------------------------------------------------------------ NLL


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature): logits (N, K), labels
    (N,), temperature > 0."""
    z = _matrix("logits", logits)
    y = _labels(labels, *z.shape)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be finite and > 0; got {temperature}")
    scaled = z / temperature
    return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(y)), y]))


def _nll_log_t(log_t: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """NLL(T = e^log_t) and its derivative in log_t: with s = 1/T,
    dNLL/dlog T = -s mean_i (E_softmax(s z_i)[z_i] - z_iy_i)."""
    s = float(np.exp(-log_t[0]))
    scaled = s * z
    q = softmax(scaled, axis=1)
    picked = z[np.arange(len(y)), y]
    value = np.mean(logsumexp(scaled, axis=1) - s * picked)
    grad = -s * np.mean(np.sum(q * z, axis=1) - picked)
    return float(value), np.array([grad])


@dataclass(frozen=True)
class TemperatureScaling:
    """A fitted temperature: temperature T > 0, the validation NLL before (T = 1) and after."""

    temperature: float
    nll_before: float
    nll_after: float

    def predict_proba(self, logits: Any) -> np.ndarray:
        """softmax(logits / T): (N, K) for logits (N, K)."""
        return softmax(_matrix("logits", logits) / self.temperature, axis=1)


def fit_temperature(logits: Any, labels: Any) -> TemperatureScaling:
    """Temperature scaling fitted on validation logits (N, K) and labels (N,) (module
    docstring); its validation NLL is never above that of T = 1."""
    z = _matrix("logits", logits)
    y = _labels(labels, *z.shape)
    before = _nll_log_t(np.zeros(1), z, y)[0]
    result = optimize.minimize(
        _nll_log_t,
        np.zeros(1),
        args=(z, y),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_T_BOUND, LOG_T_BOUND)],
    )
    after = float(result.fun)
    if not after < before:
        return TemperatureScaling(1.0, before, before)
    return TemperatureScaling(float(np.exp(result.x[0])), before, after)


# ---------------------------------------------------------------------------------- LATES


def _lates_terms(log_t: np.ndarray, weights: np.ndarray, z: np.ndarray, y: np.ndarray):
    """q (L, N, K) = softmax(z_l / T_l), and p_y (N,) = sum_l w_l q_l[i, y_i]."""
    s = np.exp(-log_t)[:, None, None]
    q = softmax(s * z, axis=2)
    q_y = q[:, np.arange(len(y)), y]  # (L, N)
    return q, q_y, weights @ q_y


def _lates_objective(params: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Validation NLL of LATES at params = (log T (L,), a (L,)) and its gradient.

    With r_il = w_l q_l[i, y_i] / p_iy (the layers' responsibilities) and s_l = 1 / T_l:
    dNLL/da_m = -mean_i (r_im - w_m), dNLL/dlog T_l = mean_i r_il s_l (z_liy - E_q_li[z_li]).
    """
    L = z.shape[0]
    log_t, a = params[:L], params[L:]
    w = softmax(a)
    q, q_y, p_y = _lates_terms(log_t, w, z, y)
    p_y = np.maximum(p_y, np.finfo(float).tiny)
    r = w[:, None] * q_y / p_y  # (L, N)
    s = np.exp(-log_t)
    centered = z[:, np.arange(len(y)), y] - np.sum(q * z, axis=2)  # (L, N)
    grad_log_t = np.mean(r * s[:, None] * centered, axis=1)
    grad_a = -np.mean(r - w[:, None], axis=1)
    return float(-np.mean(np.log(p_y))), np.concatenate([grad_log_t, grad_a])


@dataclass(frozen=True)
class LATES:
    """Fitted layer-stack temperature scaling over L layers: temperatures (L,) > 0, weights
    (L,) on the simplex, nll (its validation NLL), single_layer_nll (L,) (each layer alone
    with its own fitted temperature, on the validation split), best_layer (their argmin)."""

    temperatures: np.ndarray
    weights: np.ndarray
    nll: float
    single_layer_nll: np.ndarray
    best_layer: int

    def predict_proba(self, layer_logits: Any) -> np.ndarray:
        """sum_l w_l softmax(z_l / T_l): (N, K) for layer_logits (L, N, K)."""
        z = _layer_stack(layer_logits)
        if z.shape[0] != self.weights.size:
            raise ValueError(
                f"layer_logits must have {self.weights.size} layers (as fitted); got {z.shape[0]}"
            )
        q = softmax(z / self.temperatures[:, None, None], axis=2)
        return np.einsum("l,lnk->nk", self.weights, q)

    def nll_of(self, layer_logits: Any, labels: Any) -> float:
        """Mean NLL of ``predict_proba(layer_logits)`` against labels (N,)."""
        p = self.predict_proba(layer_logits)
        y = _labels(labels, *p.shape)
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], np.finfo(float).tiny))))


def fit_lates(layer_logits: Any, labels: Any) -> LATES:
    """LATES fitted on validation readouts: layer_logits (L, N, K) (or a list of L arrays
    (N, K)), labels (N,) (module docstring). Its validation NLL is at most that of the best
    single layer with its own temperature."""
    z = _layer_stack(layer_logits)
    L = z.shape[0]
    y = _labels(labels, *z.shape[1:])
    singles = [fit_temperature(z_l, y) for z_l in z]
    single_nll = np.array([t.nll_after for t in singles])
    best = int(np.argmin(single_nll))
    log_t0 = np.log([t.temperature for t in singles])
    one_hot = np.eye(L)[best]
    candidates = [(float(single_nll[best]), np.exp(log_t0), one_hot)]
    if L > 1:
        dominant = np.full(L, (1.0 - LATES_DOMINANT) / (L - 1))
        dominant[best] = LATES_DOMINANT
        bounds = [(-LOG_T_BOUND, LOG_T_BOUND)] * L + [(None, None)] * L
        for start_weights in (np.full(L, 1.0 / L), dominant):
            start = np.concatenate([log_t0, np.log(start_weights)])
            result = optimize.minimize(
                _lates_objective,
                start,
                args=(z, y),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
            )
            candidates.append((float(result.fun), np.exp(result.x[:L]), softmax(result.x[L:])))
    value, temperatures, weights = min(candidates, key=lambda item: item[0])
    return LATES(temperatures, weights, value, single_nll, best)
