"""Linear interpolation of networks, REPAIR, the loss barrier, and REPAIR-merged MLPs.

REPAIR (Jordan, Sedghi, Saukh, Entezari, Neyshabur 2022, arXiv 2211.08403): the midpoint of two
aligned networks suffers "variance collapse": its hidden units' pre-activations have far smaller
spread than either endpoint's. REPAIR rescales every unit so its mean and std over the data equal
the interpolation of the endpoints' (``(1 - a) mu_A + a mu_B``, same for the std) and fuses that
affine map into the layer's own weights, so the repaired network is an ordinary MLP.

Barrier (Entezari et al. 2021, arXiv 2110.06296): for a metric L,
``B = max_a [L(theta_a) - ((1 - a) L(theta_A) + a L(theta_B))]`` over a grid of a in [0, 1].
:func:`barrier` takes any evaluation function and any interpolation path, so it applies to every
pytree model (MLPs here, attention heads, convex solutions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from baselines import align, mlp
from solvers import checks

SITES = ("linear", "norm")
ALPHAS = tuple(np.linspace(0.0, 1.0, 11))


def interpolate(params_a: Any, params_b: Any, alpha: float) -> Any:
    """``(1 - alpha) * params_a + alpha * params_b`` leaf by leaf (any matching pytrees)."""
    alpha = checks.real("alpha", alpha, 0.0, 1.0)
    if jax.tree_util.tree_structure(params_a) != jax.tree_util.tree_structure(params_b):
        raise ValueError("params_a and params_b must have the same pytree structure")
    for la, lb in zip(
        jax.tree_util.tree_leaves(params_a), jax.tree_util.tree_leaves(params_b), strict=True
    ):
        if jnp.shape(la) != jnp.shape(lb):
            raise ValueError(
                f"params_a and params_b leaves differ in shape: {jnp.shape(la)} vs {jnp.shape(lb)}"
            )
    return jax.tree_util.tree_map(lambda a, b: (1.0 - alpha) * a + alpha * b, params_a, params_b)


class NeuronStats(NamedTuple):
    """Per-unit statistics over the data of one hidden layer: mean (h,), std (h,) (ddof 0)."""

    mean: jax.Array
    std: jax.Array


def _check_site(params: mlp.Params, site: str) -> None:
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    if site == "norm" and not mlp.has_layer_norm(params):
        raise ValueError('site="norm" needs an MLP with LayerNorm (MLPConfig(layer_norm=True))')


def neuron_stats(params: mlp.Params, X: Any, *, site: str = "linear") -> tuple[NeuronStats, ...]:
    """Mean and std of every hidden unit over inputs ``X`` (N, d), one entry per hidden layer.

    site: "linear" = the linear output z = x W + b; "norm" = the LayerNorm output (the ReLU input
    of a LayerNorm MLP). Two-pass (centred) variance.
    """
    _check_site(params, site)
    trace = mlp.trace(params, X)
    values = trace.pre if site == "linear" else trace.normed
    return tuple(NeuronStats(v.mean(0), jnp.sqrt(((v - v.mean(0)) ** 2).mean(0))) for v in values)


def interpolate_stats(
    stats_a: Sequence[NeuronStats], stats_b: Sequence[NeuronStats], alpha: float
) -> tuple[NeuronStats, ...]:
    """REPAIR's targets: means and *standard deviations* interpolated linearly."""
    alpha = checks.real("alpha", alpha, 0.0, 1.0)
    return tuple(
        NeuronStats((1 - alpha) * a.mean + alpha * b.mean, (1 - alpha) * a.std + alpha * b.std)
        for a, b in zip(stats_a, stats_b, strict=True)
    )


def repair(
    params: mlp.Params,
    X: Any,
    targets: Sequence[NeuronStats],
    *,
    site: str = "linear",
    min_std: float = 1e-8,
) -> mlp.Params:
    """MLP whose hidden units have mean ``targets[l].mean`` and std ``targets[l].std`` on ``X``.

    Layer by layer, measure the current statistics (m, s) at ``site`` in the network corrected so
    far and fuse ``v -> (target_std / s) (v - m) + target_mean`` into the parameters that produce
    ``v``: w and b for site "linear", the LayerNorm scale and bias for site "norm" (the
    LayerNorm-net analogue of resetting BatchNorm statistics). Correcting layer l leaves layers
    < l unchanged, so after the sweep every layer matches its target exactly on ``X``. Units with
    s <= ``min_std`` (constant on ``X``) are only shifted to the target mean.

    X: (N, d) inputs, typically the training set.  targets: one NeuronStats (h_l,) per layer.
    """
    _check_site(params, site)
    widths = mlp.hidden_widths(params)
    if len(targets) != len(widths) or any(
        t.mean.shape != (h,) or t.std.shape != (h,) for t, h in zip(targets, widths, strict=False)
    ):
        raise ValueError(
            f"targets must hold one NeuronStats of shape (h,) per hidden layer {widths}"
        )
    layers = [dict(layer) for layer in params["layers"]]
    for l, target in enumerate(targets):
        current = neuron_stats({"layers": layers}, X, site=site)[l]
        scale = jnp.where(current.std > min_std, target.std / current.std, 1.0)
        shift = target.mean - scale * current.mean
        layer = layers[l]
        if site == "linear":
            layer["w"] = layer["w"] * scale
            layer["b"] = layer["b"] * scale + shift
        else:
            layer["ln_scale"] = layer["ln_scale"] * scale
            layer["ln_bias"] = layer["ln_bias"] * scale + shift
    return {"layers": layers}


def repair_interpolate(
    params_a: mlp.Params, params_b: mlp.Params, alpha: float, X: Any, *, site: str = "linear"
) -> mlp.Params:
    """Interpolate (aligned) MLPs and REPAIR the result towards the interpolated endpoint stats.

    Use as ``barrier(..., interpolate=functools.partial(repair_interpolate, X=X_train))``.
    """
    targets = interpolate_stats(
        neuron_stats(params_a, X, site=site), neuron_stats(params_b, X, site=site), alpha
    )
    return repair(interpolate(params_a, params_b, alpha), X, targets, site=site)


class Barrier(NamedTuple):
    """alphas: (K,).  curves: metric -> (K,) values of the interpolated networks.
    endpoints: metric -> (value at params_a, value at params_b).  barrier: metric -> max over the
    grid of curve minus the endpoints' linear interpolation.  argmax: metric -> the alpha there."""

    alphas: np.ndarray
    curves: dict[str, np.ndarray]
    endpoints: dict[str, tuple[float, float]]
    barrier: dict[str, float]
    argmax: dict[str, float]


def _metrics(eval_fn: Callable[[Any], Mapping[str, Any]], params: Any) -> dict[str, float]:
    out = eval_fn(params)
    if not isinstance(out, Mapping) or not out:
        raise ValueError("eval_fn must return a non-empty mapping metric name -> scalar")
    return {k: float(v) for k, v in out.items()}


def barrier(
    eval_fn: Callable[[Any], Mapping[str, Any]],
    params_a: Any,
    params_b: Any,
    alphas: Sequence[float] | np.ndarray = ALPHAS,
    *,
    interpolate: Callable[[Any, Any, float], Any] = interpolate,
) -> Barrier:
    """Loss barrier along ``interpolate(params_a, params_b, alpha)`` for each metric of ``eval_fn``.

    eval_fn: params -> {metric: scalar}, e.g. {"loss": ..., "error": ...} on held-out data; the
    endpoint values are ``eval_fn(params_a)`` and ``eval_fn(params_b)``. Align B to A beforehand
    for a permuted barrier; pass a REPAIR interpolation for a repaired one. Works for any pytree
    model. A convex objective has barrier <= 0 (Jensen) along the linear path.
    """
    alphas = np.asarray(alphas, np.float64)
    if alphas.ndim != 1 or alphas.size < 1 or not ((alphas >= 0) & (alphas <= 1)).all():
        raise ValueError(f"alphas must be a non-empty 1-D grid in [0, 1], got {alphas!r}")
    end_a, end_b = _metrics(eval_fn, params_a), _metrics(eval_fn, params_b)
    rows = [_metrics(eval_fn, interpolate(params_a, params_b, float(a))) for a in alphas]
    curves = {k: np.array([r[k] for r in rows]) for k in end_a}
    gaps = {k: curves[k] - ((1 - alphas) * end_a[k] + alphas * end_b[k]) for k in end_a}
    return Barrier(
        alphas=alphas,
        curves=curves,
        endpoints={k: (end_a[k], end_b[k]) for k in end_a},
        barrier={k: float(g.max()) for k, g in gaps.items()},
        argmax={k: float(alphas[int(g.argmax())]) for k, g in gaps.items()},
    )


def relative_reduction(before: float, after: float) -> float:
    """``1 - after / before``: the fraction of a (positive) barrier removed, as in REPAIR."""
    before = checks.positive("before", before)
    return 1.0 - after / before


def merge(
    params_a: mlp.Params,
    params_b: mlp.Params,
    data: Any,
    alpha: float = 0.5,
    *,
    method: str = "activation",
    site: str = "linear",
) -> mlp.Params:
    """REPAIR-merged MLP: align B to A (``method``: "activation" or "weight"), interpolate at
    ``alpha`` and REPAIR on ``data`` (N, d) inputs. The result is an ordinary MLP params pytree
    (usable with :func:`baselines.mlp.apply`)."""
    aligned = align.align_mlp(params_a, params_b, data, method=method)
    return repair_interpolate(params_a, aligned, alpha, data, site=site)
