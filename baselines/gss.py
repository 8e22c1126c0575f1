"""Gated State Space mixer (GSS; Mehta, Gupta, Cutkosky, Neyshabur, arXiv 2206.13947).

GSS contextualises a down-projected copy of the sequence with a simplified diagonal state space
(DSS; Gupta et al., arXiv 2203.14343) and gates the result with a wide GELU branch::

    v = gelu(x W_v)                     (B, L, F)   gate branch, F = 4E
    u = gelu(x W_u)                     (B, L, H)   SSM branch, H = E/4
    y = DSS(u)                          (B, L, H)   causal long convolution, kernel (H, L)
    o = ((y W_uc) * v) W_o + b_o        (B, L, E)

The residual and the pre-norm of ``x`` belong to the transformer block. The DSS kernel is a
causal convolution computed for the input's own length, so GSS is causal whatever
``cfg.causal`` says, needs no positional embeddings, and runs on sequences longer than those
seen in training with no change.

Options (``cfg.options``): ``state_size`` N (default 64; the paper uses 512), ``ssm_width`` H
(default E // 4), ``gate_width`` F (default 4 E), ``init`` "normal" (the paper's random init) or
"loguniform" (decay rates exp(Lambda_re) log-uniform in [1e-3, 1e-1]: long memory at init, the
ablation of the GSS paper).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from baselines.attention import dense
from baselines.registry import Key, Layer, LayerConfig, LayerOutput, Params, register_mixer
from baselines.transformer import layer_norm
from solvers import checks

INITS = ("normal", "loguniform")


class GSSSettings(NamedTuple):
    """Validated sizes of one GSS layer: E (width), F (gate), H (SSM width), N (state), init."""

    width: int
    gate_width: int
    ssm_width: int
    state_size: int
    init: str


def _positive_int(cfg: LayerConfig, name: str, default: int) -> int:
    return checks.integer(f"GSS option {name!r}", cfg.option(name, default), 1)


def settings(cfg: LayerConfig) -> GSSSettings:
    """Read and validate the GSS options of ``cfg`` (an error naming the bad one: TypeError for
    the wrong kind of value, ValueError for one out of range)."""
    width = checks.integer("cfg.width", cfg.width, 1)
    init = checks.choice("GSS init", cfg.option("init", "normal"), INITS)
    return GSSSettings(
        width=width,
        gate_width=_positive_int(cfg, "gate_width", 4 * width),
        ssm_width=_positive_int(cfg, "ssm_width", max(1, width // 4)),
        state_size=_positive_int(cfg, "state_size", 64),
        init=init,
    )


def init_dss(key: jax.Array, ssm_width: int, state_size: int, init: str = "normal") -> Params:
    """Parameters of the simplified DSS on H = ``ssm_width`` channels with N = ``state_size``.

    Lambda = -exp(lambda_re) + i exp(lambda_im): (N,), shared by the channels; C = c_re + i c_im:
    (H, N); d: (H,) skip; norm: {"scale", "bias"} (H,), LayerNorm of the DSS input.
    "normal": every DSS parameter ~ N(0, 1) (the paper's random init). "loguniform": decay
    rates exp(lambda_re) log-uniform in [1e-3, 1e-1] and frequencies exp(lambda_im) spread over
    (0, pi), the Nyquist band of the fixed step Delta = 1 (higher ones would alias).
    """
    checks.choice("init", init, INITS)
    k_re, k_im, k_c_re, k_c_im, k_d = jax.random.split(key, 5)
    if init == "normal":
        lambda_re = jax.random.normal(k_re, (state_size,))
        lambda_im = jax.random.normal(k_im, (state_size,))
    else:
        lambda_re = jax.random.uniform(
            k_re, (state_size,), minval=math.log(1e-3), maxval=math.log(1e-1)
        )
        lambda_im = jnp.log(math.pi * (jnp.arange(state_size) + 0.5) / state_size)
    return {
        "lambda_re": lambda_re,
        "lambda_im": lambda_im,
        "c_re": jax.random.normal(k_c_re, (ssm_width, state_size)),
        "c_im": jax.random.normal(k_c_im, (ssm_width, state_size)),
        "d": jax.random.normal(k_d, (ssm_width,)),
        "norm": {"scale": jnp.ones((ssm_width,)), "bias": jnp.zeros((ssm_width,))},
    }


def dss_kernel(dss: Params, length: int) -> jax.Array:
    """The (H, L) real convolution kernel of the simplified DSS with Delta = 1.

    K[h, k] = Re sum_n C[h, n] (exp(Lambda_n) - 1) / Lambda_n exp(Lambda_n k), k = 0..L-1.
    """
    lam = -jnp.exp(dss["lambda_re"]) + 1j * jnp.exp(dss["lambda_im"])  # (N,)
    c = (dss["c_re"] + 1j * dss["c_im"]) * (jnp.exp(lam) - 1.0) / lam  # (H, N)
    vandermonde = jnp.exp(lam[:, None] * jnp.arange(length)[None, :])  # (N, L)
    return jnp.real(c @ vandermonde)


def causal_fft_conv(u: jax.Array, kernel: jax.Array) -> jax.Array:
    """y[b, t, h] = sum_{s <= t} kernel[h, t - s] u[b, s, h] in O(L log L) per channel.

    u: (B, L, H), kernel: (H, L) -> (B, L, H). Both are zero-padded to 2L so the circular FFT
    convolution equals the linear one on the first L outputs (no wrap-around from the future).
    """
    length = u.shape[1]
    u_f = jnp.fft.rfft(u, n=2 * length, axis=1)  # (B, L + 1, H)
    k_f = jnp.fft.rfft(kernel.T, n=2 * length, axis=0)  # (L + 1, H)
    return jnp.fft.irfft(u_f * k_f[None], n=2 * length, axis=1)[:, :length].astype(u.dtype)


def dss_apply(dss: Params, u: jax.Array) -> jax.Array:
    """Simplified DSS on u: (B, L, H) -> (B, L, H): LayerNorm (per token, as in lucidrains'
    gated-state-spaces), causal convolution with ``dss_kernel`` for this L, plus the skip d * u."""
    u = layer_norm(u, dss["norm"])
    return causal_fft_conv(u, dss_kernel(dss, u.shape[1])) + dss["d"] * u


def init(key: jax.Array, cfg: LayerConfig) -> Params:
    """GSS parameters: w_v (E, F), w_u (E, H), w_uc (H, F), w_o (F, E), b_o (E,), dss (init_dss)."""
    s = settings(cfg)
    k_v, k_u, k_uc, k_o, k_dss = jax.random.split(key, 5)
    return {
        "w_v": dense(k_v, s.width, s.gate_width),
        "w_u": dense(k_u, s.width, s.ssm_width),
        "w_uc": dense(k_uc, s.ssm_width, s.gate_width),
        "w_o": dense(k_o, s.gate_width, s.width),
        "b_o": jnp.zeros((s.width,)),
        "dss": init_dss(k_dss, s.ssm_width, s.state_size, s.init),
    }


def apply(
    params: Params, x: jax.Array, cfg: LayerConfig, *, key: Key = None, train: bool = False
) -> LayerOutput:
    """GSS on x: (B, L, E) -> (B, L, E) for any L; aux is empty (no extra loss, no metric).

    ``key`` and ``train`` are accepted for the registry interface; GSS is deterministic.
    """
    s = settings(cfg)
    if x.ndim != 3 or x.shape[-1] != s.width:
        raise ValueError(f"x must have shape (B, L, {s.width}), got {x.shape}")
    v = jax.nn.gelu(x @ params["w_v"])
    u = jax.nn.gelu(x @ params["w_u"])
    y = dss_apply(params["dss"], u)
    return ((y @ params["w_uc"]) * v) @ params["w_o"] + params["b_o"], {}


GSS = register_mixer("gss")(Layer(init=init, apply=apply))
