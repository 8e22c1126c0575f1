"""Gradient estimators through discrete random variables, as pure JAX functions.

The problem: the gradient of an expectation over independent categorical variables,

    L(phi) = E_{z ~ q_phi}[f(z)],   q_phi(z) = prod_v softmax(phi_v)[z_v],   phi: (..., K),

from n evaluations f(z_1), ..., f(z_n) (each z_i a joint draw of every variable). A binary
variable is the K = 2 case, with p = sigmoid(phi_1 - phi_0) the probability of category 1.

Score-function estimators here are written as per-sample coefficients c (n, ...) (one per sample
and variable, computed from the f values with no gradient through them):

    g_hat_v = sum_i c_iv grad_phi log q(z_iv) = sum_i c_iv (onehot(z_iv) - q_v)      (..., K)

(``score_gradient``); ``surrogate`` is a scalar whose autodiff gradient is g_hat, so an estimator
chains into the parameters that produce phi. The estimators:

- REINFORCE with a leave-one-out baseline (LOORF; Kool et al. 2019): z_i i.i.d. and
  ``c_i = (f_i - mean_j f_j) / (n - 1)``, i.e. each sample's baseline is the mean of the others.
  Unbiased for any n >= 2.
- ARMS (Dimitriev & Zhou 2021, arXiv 2105.14141), binary variables: the n uniforms of each
  variable come from the Dirichlet copula ``u_i = (1 - d_i)^(n-1)``, d ~ Dirichlet(1_n)
  (``dirichlet_copula``: each u_i is U(0, 1), the n are mutually antithetic), and
  b_i = [u_i < p] for p < 1/2, b_i = [1 - u_i < p] otherwise. Such samples are correlated, so
  LOORF's expectation is scaled by (p - C(p, p)) / (p (1 - p)) (C the copula's bivariate CDF,
  ``dirichlet_copula_cdf``); ARMS divides it out:
  ``c_i = (f_i - mean_j f_j) / (n - 1) * p (1 - p) / (r - C(r, r))``, r = min(p, 1 - p).
  With independent samples C(r, r) = r^2 and the factor is 1 (LOORF); with n = 2 it is DisARM.
- CARMS (Dimitriev & Zhou 2021, arXiv 2110.14002), categorical variables: antithetic samples by
  stick-breaking (the categories sorted by ascending probability q_(0) <= ... <= q_(K-1); step k
  draws "stop at category (k) | not stopped before" with probability
  pi_k = q_(k) / sum_{j >= k} q_(j), and the n samples' uniforms of each step come from one
  Dirichlet copula, independent across steps and variables). Each ordered pair of samples is
  reweighted to an independent pair by importance sampling,

      g_hat = 1 / (n (n - 1)) sum_{i != j} w(z_i, z_j) (f_i - f_j) grad log q(z_i),
      w(a, b) = q_a q_b / P(z_i = a, z_j = b)  for a != b,   w(a, a) = 0,

  with the exact pairwise pmf of the sampler (``carms_pair_weights``). Unbiased: for a != b,
  E[w (f_i - f_j) grad log q(z_i)] sums q_a q_b (f(a) - f(b)) grad log q(a), LOORF's pair
  expectation; a pair that shares the category of a variable contributes E[f_i - f_j] = 0 for
  it whatever its weight (the other variables of the two samples are exchangeable), so any
  diagonal weight is unbiased: 0 as in the stick-breaking variant of the authors' code. For
  K = 2 the stick-breaking sampler is ARMS's, and for a function of that one variable the two
  estimators agree.
- Straight-through Gumbel-softmax (Jang et al. 2017, arXiv 1611.01144): the forward value is the
  one-hot z = onehot(argmax(phi + G)), G i.i.d. Gumbel; the backward pass differentiates the
  relaxed y = softmax((phi + G) / tau) instead (z_st = y + stop_gradient(z - y)). f must accept
  points of the simplex (e.g. a network reading the one-hot as weights). Biased (the gradient is
  of f at the relaxed point), with the n samples averaged.

``expectation`` enumerates every joint configuration (small cases) so that jax.grad of it is the
exact gradient the estimators are checked against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from solvers import checks

SCORE_METHODS = ("reinforce_loo", "arms", "carms")
METHODS = (*SCORE_METHODS, "straight_through")
MAX_ENUMERATED = 2**16  # joint configurations ``expectation`` accepts


def _num_samples(n: int, low: int = 2) -> int:
    return checks.integer("num_samples", n, low)


def _categorical_logits(logits: jax.Array, binary: bool = False) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or logits.shape[-1] < 2:
        raise ValueError(f"logits must have shape (..., K) with K >= 2, got {logits.shape}")
    if binary and logits.shape[-1] != 2:
        raise ValueError(f"ARMS is for binary variables: logits (..., 2), got {logits.shape}")
    return logits


def dirichlet_copula(key: jax.Array, num_samples: int, shape: tuple[int, ...]) -> jax.Array:
    """u: (n, *shape) in (0, 1): for every index of ``shape``, the n uniforms
    ``u_i = (1 - d_i)^(n - 1)`` with d ~ Dirichlet(1, ..., 1) (d = e / sum e, e_i ~ Exp(1)).

    d_i ~ Beta(1, n - 1), so P(u_i <= x) = P(1 - d_i <= x^(1/(n-1))) = x: uniform marginals; the
    d's sum to 1, so the u's are mutually antithetic (for n = 2, u_2 = 1 - u_1)."""
    n = _num_samples(num_samples)
    e = jax.random.exponential(key, (n, *shape))
    d = e / e.sum(axis=0, keepdims=True)
    return (1.0 - d) ** (n - 1)


def dirichlet_copula_cdf(x: jax.Array, y: jax.Array, num_samples: int) -> jax.Array:
    """P(u_i <= x, u_j <= y) for i != j of ``dirichlet_copula``:
    max(0, x^(1/(n-1)) + y^(1/(n-1)) - 1)^(n-1) (from P(d_i >= s, d_j >= t) = (1 - s - t)_+^(n-1)
    for the flat Dirichlet)."""
    n = _num_samples(num_samples)
    power = 1.0 / (n - 1)
    return jnp.maximum(x**power + y**power - 1.0, 0.0) ** (n - 1)


def sample_independent(key: jax.Array, logits: jax.Array, num_samples: int) -> jax.Array:
    """z: (n, ...) int, n i.i.d. draws of each variable of logits (..., K)."""
    logits = _categorical_logits(logits)
    n = _num_samples(num_samples, 1)
    return jax.random.categorical(key, logits, shape=(n, *logits.shape[:-1]))


def _binary_probability(logits: jax.Array) -> jax.Array:
    """p = q_1 = sigmoid(phi_1 - phi_0): (...,) for logits (..., 2)."""
    return jax.nn.sigmoid(logits[..., 1] - logits[..., 0])


def sample_arms(key: jax.Array, logits: jax.Array, num_samples: int) -> jax.Array:
    """b: (n, ...) in {0, 1}, ARMS's antithetic draws of binary variables with logits (..., 2):
    b_i = [u_i < p] if p < 1/2 else [1 - u_i < p], u from ``dirichlet_copula``."""
    logits = _categorical_logits(logits, binary=True)
    p = _binary_probability(logits)
    u = dirichlet_copula(key, num_samples, p.shape)
    return jnp.where(p < 0.5, u < p, 1.0 - u < p).astype(jnp.int32)


def _stick_breaking(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(order, pi): order (..., K) the categories by ascending probability, pi (..., K) the
    conditional stop probabilities pi_k = q_(k) / sum_{j >= k} q_(j) (pi_(K-1) = 1)."""
    q = jax.nn.softmax(logits, axis=-1)
    order = jnp.argsort(q, axis=-1)
    q_sorted = jnp.take_along_axis(q, order, axis=-1)
    tail = jnp.flip(jnp.cumsum(jnp.flip(q_sorted, -1), axis=-1), -1)
    pi = jnp.where(jnp.arange(q.shape[-1]) == q.shape[-1] - 1, 1.0, q_sorted / tail)
    return order, pi


def sample_carms(key: jax.Array, logits: jax.Array, num_samples: int) -> jax.Array:
    """z: (n, ...) int, CARMS's antithetic stick-breaking draws for logits (..., K): sample i
    stops at the first sorted step k with u_ik < pi_k (module docstring); the n uniforms of each
    (variable, step) come from one ``dirichlet_copula``. Each z_i has marginal softmax(logits)."""
    logits = _categorical_logits(logits)
    order, pi = _stick_breaking(logits)
    u = dirichlet_copula(key, num_samples, pi.shape)  # (n, ..., K)
    last = jnp.arange(pi.shape[-1]) == pi.shape[-1] - 1
    stop = (u < pi) | last  # the last category always stops (u may round to 1)
    position = jnp.argmax(stop, axis=-1)  # first stop: (n, ...)
    return jnp.take_along_axis(jnp.broadcast_to(order, stop.shape), position[..., None], -1)[..., 0]


def carms_pair_weights(logits: jax.Array, num_samples: int) -> jax.Array:
    """w: (..., K, K), w[a, b] = q_a q_b / P(z_i = a, z_j = b) for a != b, 0 on the diagonal, for
    the pairs of ``sample_carms``'s n samples.

    In sorted positions s < t (``_stick_breaking``), with C_k = C(pi_k, pi_k)
    (``dirichlet_copula_cdf``): both samples pass the steps k < s, one stops at s, the other
    goes on alone, so P = prod_{k<s} (1 - 2 pi_k + C_k) (pi_s - C_s) prod_{s<k<t} (1 - pi_k) pi_t
    and, dividing into q_(s) q_(t),
    w = prod_{k<s} (1 - pi_k)^2 / (1 - 2 pi_k + C_k) * pi_s (1 - pi_s) / (pi_s - C_s).
    """
    logits = _categorical_logits(logits)
    order, pi = _stick_breaking(logits)
    K = pi.shape[-1]
    C = dirichlet_copula_cdf(pi, pi, num_samples)
    used = jnp.arange(K) < K - 1  # the last step (pi = 1) never opens a pair of distinct stops
    both_pass = jnp.where(used, 1.0 - 2.0 * pi + C, 1.0)
    split = jnp.where(used, pi - C, 1.0)
    factor = jnp.where(used, (1.0 - pi) ** 2 / both_pass, 1.0)
    prefix = jnp.cumprod(jnp.concatenate([jnp.ones_like(pi[..., :1]), factor[..., :-1]], -1), -1)
    weight = prefix * jnp.where(used, pi * (1.0 - pi) / split, 0.0)  # (..., K) by first stop s
    s = jnp.minimum(jnp.arange(K)[:, None], jnp.arange(K)[None, :])
    sorted_w = jnp.where(jnp.eye(K, dtype=bool), 0.0, weight[..., s])  # (..., K, K), sorted
    rank = jnp.argsort(order, axis=-1)  # sorted position of each category
    rows = jnp.take_along_axis(sorted_w, rank[..., :, None], axis=-2)
    return jnp.take_along_axis(rows, rank[..., None, :], axis=-1)


def loo_coefficients(f: jax.Array) -> jax.Array:
    """c: (n, ...) = (f_i - mean_j f_j) / (n - 1) for f: (n, ...) (LOORF)."""
    f = jnp.asarray(f)
    n = _num_samples(f.shape[0] if f.ndim else 0)
    return (f - f.mean(axis=0, keepdims=True)) / (n - 1)


def arms_coefficients(logits: jax.Array, f: jax.Array) -> jax.Array:
    """c: (n, ...) of ARMS for binary logits (..., 2) and f: (n, ...) at ``sample_arms`` draws:
    LOORF's coefficients times p (1 - p) / (r - C(r, r)), r = min(p, 1 - p)."""
    logits = _categorical_logits(logits, binary=True)
    f = jnp.asarray(f)
    p = _binary_probability(logits)
    r = jnp.minimum(p, 1.0 - p)
    debias = p * (1.0 - p) / (r - dirichlet_copula_cdf(r, r, f.shape[0]))
    return loo_coefficients(f) * debias


def carms_coefficients(logits: jax.Array, z: jax.Array, f: jax.Array) -> jax.Array:
    """c: (n, ...) of CARMS for logits (..., K), ``sample_carms`` draws z: (n, ...) and f: (n, ...):
    c_i = 1 / (n (n - 1)) sum_{j != i} w(z_i, z_j) (f_i - f_j) (``carms_pair_weights``)."""
    logits = _categorical_logits(logits)
    f = jnp.asarray(f)
    n = _num_samples(f.shape[0] if f.ndim else 0)
    w = carms_pair_weights(logits, n)  # (..., K, K)
    hot = jax.nn.one_hot(z, logits.shape[-1], dtype=w.dtype)  # (n, ..., K)
    pair = jnp.einsum("i...a,...ab,j...b->ij...", hot, w, hot)  # w(z_i, z_j): (n, n, ...)
    diff = f[:, None] - f[None, :]  # f_i - f_j: (n, n, ...)
    return jnp.sum(pair * diff, axis=1) / (n * (n - 1))


def coefficients(method: str, logits: jax.Array, z: jax.Array, f: jax.Array) -> jax.Array:
    """The coefficients c (n, ...) of score-function ``method`` ("reinforce_loo" | "arms" |
    "carms") for draws z (n, ...) of logits (..., K) (drawn by ``sample(method, ...)``) and their
    values f (n, ...) (broadcast over the variables: f_i of the joint sample i)."""
    checks.choice("method", method, SCORE_METHODS)
    f = jnp.broadcast_to(jnp.asarray(f), z.shape)
    if method == "reinforce_loo":
        return loo_coefficients(f)
    if method == "arms":
        return arms_coefficients(logits, f)
    return carms_coefficients(logits, z, f)


def sample(method: str, key: jax.Array, logits: jax.Array, num_samples: int) -> jax.Array:
    """z: (n, ...) int draws for score-function ``method``: i.i.d. ("reinforce_loo"), ARMS's
    (binary logits (..., 2)) or CARMS's antithetic draws."""
    checks.choice("method", method, SCORE_METHODS)
    _num_samples(num_samples)
    if method == "reinforce_loo":
        return sample_independent(key, logits, num_samples)
    if method == "arms":
        return sample_arms(key, logits, num_samples)
    return sample_carms(key, logits, num_samples)


def score_gradient(logits: jax.Array, z: jax.Array, c: jax.Array) -> jax.Array:
    """g_hat: (..., K) = sum_i c_i (onehot(z_i) - softmax(logits)) for z, c: (n, ...)."""
    logits = _categorical_logits(logits)
    q = jax.nn.softmax(logits, axis=-1)
    hot = jax.nn.one_hot(z, logits.shape[-1], dtype=q.dtype)
    return jnp.sum(c[..., None] * (hot - q), axis=0)


def surrogate(logits: jax.Array, z: jax.Array, c: jax.Array) -> jax.Array:
    """Scalar sum_i sum_v stop_gradient(c_iv) log q(z_iv), minus its own value (so it reads 0):
    its gradient through ``logits`` is ``score_gradient`` (chained into whatever produced them).

    logits: (..., K) shared by the n samples, or (n, ..., K) one set per sample (e.g. per copy
    of a network run n times); z, c: (n, ...)."""
    logits = _categorical_logits(logits)
    log_q = jax.nn.log_softmax(logits, axis=-1)
    log_q = jnp.broadcast_to(log_q, (*z.shape, logits.shape[-1]))
    picked = jnp.take_along_axis(log_q, z[..., None], axis=-1)[..., 0]
    value = jnp.sum(jax.lax.stop_gradient(c) * picked)
    return value - jax.lax.stop_gradient(value)


def gumbel_softmax_st(
    key: jax.Array, logits: jax.Array, num_samples: int, temperature: float = 1.0
) -> jax.Array:
    """(n, ..., K): one-hot forward values onehot(argmax(phi + G)) whose gradient is that of
    softmax((phi + G) / temperature), G i.i.d. Gumbel (straight-through Gumbel-softmax)."""
    logits = _categorical_logits(logits)
    n = _num_samples(num_samples, 1)
    tau = checks.positive("temperature", temperature)
    noisy = logits + jax.random.gumbel(key, (n, *logits.shape), logits.dtype)
    soft = jax.nn.softmax(noisy / tau, axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(noisy, axis=-1), logits.shape[-1], dtype=soft.dtype)
    return soft + jax.lax.stop_gradient(hard - soft)


def estimate(
    method: str,
    key: jax.Array,
    logits: jax.Array,
    f: Callable[[jax.Array], jax.Array],
    num_samples: int,
    temperature: float = 1.0,
) -> jax.Array:
    """An estimate (shape of logits (..., K)) of grad_logits E_{z ~ q}[f(z)] by ``method``.

    f: one-hot samples (n, ..., K) -> (n,) values, one per joint sample (called on hard one-hots
    by the score-function methods, on ``gumbel_softmax_st`` values by "straight_through")."""
    checks.choice("method", method, METHODS)
    logits = _categorical_logits(logits)
    if method == "straight_through":

        def mean_f(phi: jax.Array) -> jax.Array:
            return jnp.mean(f(gumbel_softmax_st(key, phi, num_samples, temperature)))

        return jax.grad(mean_f)(logits)
    z = sample(method, key, logits, num_samples)
    values = jax.lax.stop_gradient(f(jax.nn.one_hot(z, logits.shape[-1], dtype=logits.dtype)))
    if values.shape != z.shape[:1]:
        raise ValueError(f"f must return one value per sample ({z.shape[0]},), got {values.shape}")
    values = values.reshape(-1, *(1,) * (z.ndim - 1))
    return score_gradient(logits, z, coefficients(method, logits, z, values))


def expectation(logits: jax.Array, f: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """E_{z ~ q}[f(z)] by enumerating all K^V joint configurations of the V variables of logits
    (..., K) (at most ``MAX_ENUMERATED``); f as in ``estimate`` (called once, on all of them).
    jax.grad of it is the exact gradient."""
    logits = _categorical_logits(logits)
    K, batch = logits.shape[-1], logits.shape[:-1]
    count = K ** math.prod(batch)
    if count > MAX_ENUMERATED:
        raise ValueError(f"{count} configurations to enumerate; at most {MAX_ENUMERATED}")
    configs = jnp.asarray(list(itertools.product(range(K), repeat=math.prod(batch))))
    configs = configs.reshape(count, *batch)
    log_q = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(
        jnp.broadcast_to(log_q, (count, *log_q.shape)), configs[..., None], -1
    )
    weights = jnp.exp(picked.reshape(count, -1).sum(axis=1))
    return jnp.sum(weights * f(jax.nn.one_hot(configs, K, dtype=logits.dtype)))
