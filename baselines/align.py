"""Neuron alignment of two networks: permute B's hidden units so they line up with A's.

A hidden unit (or an attention head) can be permuted without changing the function, as long as
every weight that reads or writes it is permuted alike. A *permutation spec* lists, for each named
permutation, the (leaf path, axis) pairs it acts on, so alignment works on any parameter pytree:

    spec = {"hidden0": (PermAxis(("layers", 0, "w"), 1), PermAxis(("layers", 0, "b"), 0),
                        PermAxis(("layers", 1, "w"), 0))}

A permutation ``p`` (n,) maps B to B' with unit ``j`` of B' = unit ``p[j]`` of B (``take``).

Two ways to find ``p`` (Jordan et al. 2022, arXiv 2211.08403, Sec. 3; Ainsworth et al. 2022,
arXiv 2209.04836):

- activation matching (Li et al. 2015, arXiv 1511.07543): correlate the units' activations on data
  and solve a linear assignment (Hungarian) maximising the total matched correlation;
- weight matching (Git Re-Basin): coordinate ascent over the permutations, each step a linear
  assignment maximising the inner product between A's weights and B's permuted weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from baselines import heads as head_models
from baselines import mlp
from solvers import checks

Path = tuple[str | int, ...]
Perms = dict[str, np.ndarray]


class PermAxis(NamedTuple):
    """Permutation acting on axis ``axis`` of the leaf at ``path``. ``group``: the axis holds
    n consecutive blocks of ``group`` entries (e.g. one block of head_dim per head), moved whole."""

    path: Path
    axis: int
    group: int = 1


PermSpec = Mapping[str, tuple[PermAxis, ...]]


def _path(key_path: tuple[Any, ...]) -> Path:
    out: list[str | int] = []
    for k in key_path:
        if isinstance(k, jax.tree_util.DictKey):
            out.append(k.key)
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(k.idx)
        else:
            out.append(k.name)
    return tuple(out)


def _leaves(params: Any) -> dict[Path, Any]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {_path(kp): leaf for kp, leaf in flat}


def _by_leaf(spec: PermSpec) -> dict[Path, list[tuple[str, PermAxis]]]:
    out: dict[Path, list[tuple[str, PermAxis]]] = {}
    for name, axes in spec.items():
        for ax in axes:
            out.setdefault(tuple(ax.path), []).append((name, ax))
    return out


def perm_sizes(params: Any, spec: PermSpec) -> dict[str, int]:
    """Number of units n each permutation of ``spec`` moves; ValueError if ``spec`` does not fit
    ``params`` (missing leaf, axis out of range, axes of one permutation with different n)."""
    leaves = _leaves(params)
    sizes: dict[str, int] = {}
    for name, axes in spec.items():
        if not axes:
            raise ValueError(f"spec[{name!r}] must list at least one PermAxis")
        for ax in axes:
            leaf = leaves.get(tuple(ax.path))
            if leaf is None:
                raise ValueError(f"spec[{name!r}]: params has no leaf at path {ax.path!r}")
            if not 0 <= ax.axis < leaf.ndim or ax.group < 1 or leaf.shape[ax.axis] % ax.group:
                raise ValueError(
                    f"spec[{name!r}]: leaf {ax.path!r} of shape {leaf.shape} has no axis "
                    f"{ax.axis} divisible into groups of {ax.group}"
                )
            n = leaf.shape[ax.axis] // ax.group
            if sizes.setdefault(name, n) != n:
                raise ValueError(f"spec[{name!r}]: axes disagree on the number of units")
    return sizes


def _check_perms(perms: Mapping[str, Any], sizes: Mapping[str, int]) -> None:
    if set(perms) != set(sizes):
        raise ValueError(f"perms must have keys {sorted(sizes)}, got {sorted(perms)}")
    for name, n in sizes.items():
        p = np.asarray(perms[name])
        if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
            raise ValueError(f"perms[{name!r}] must be a permutation of range({n})")


def _take(x: Any, perm: np.ndarray, ax: PermAxis) -> Any:
    idx = (perm[:, None] * ax.group + np.arange(ax.group)).ravel()
    return x.take(idx, axis=ax.axis)


def permute(params: Any, spec: PermSpec, perms: Mapping[str, Any]) -> Any:
    """``params`` with every permutation of ``spec`` applied (unit j <- unit perms[name][j])."""
    _check_perms(perms, perm_sizes(params, spec))
    by_leaf = _by_leaf(spec)
    perms = {name: np.asarray(p) for name, p in perms.items()}

    def move(key_path: tuple[Any, ...], leaf: Any) -> Any:
        for name, ax in by_leaf.get(_path(key_path), ()):
            leaf = _take(leaf, perms[name], ax)
        return leaf

    return jax.tree_util.tree_map_with_path(move, params)


def correlation(feats_a: Any, feats_b: Any, eps: float = 1e-4) -> np.ndarray:
    """Correlation matrix (n, n) between the units of A and of B, in float64.

    feats_*: (M, n) activations of n units on M samples, or (M, n, k) with k coordinates per unit
    that correspond between A and B (e.g. a head's output in the shared residual space); entry
    (j, l) is then the mean over the k coordinates of the Pearson correlations. ``eps`` is added
    to the standard deviations so that constant (dead) units get correlation 0.
    """
    fa, fb = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if fa.shape != fb.shape or fa.ndim not in (2, 3) or fa.shape[0] < 2:
        raise ValueError(
            f"feats_a and feats_b must share a shape (M, n) or (M, n, k) with M >= 2, "
            f"got {fa.shape} and {fb.shape}"
        )
    if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
        raise ValueError("feats_a and feats_b must be finite")
    if fa.ndim == 2:
        fa, fb = fa[:, :, None], fb[:, :, None]
    za = (fa - fa.mean(0)) / (fa.std(0) + eps)
    zb = (fb - fb.mean(0)) / (fb.std(0) + eps)
    return np.einsum("mjk,mlk->jl", za, zb) / (fa.shape[0] * fa.shape[2])


def activation_matching(
    feats_a: Mapping[str, Any], feats_b: Mapping[str, Any], eps: float = 1e-4
) -> Perms:
    """Permutations maximising the summed correlation of matched units, one per feature key.

    feats_*: name -> (M, n) or (M, n, k) activations (see :func:`correlation`) of the units the
    permutation ``name`` moves. The permutations are solved independently: permuting one set of
    units leaves the function, hence every other unit's activations, unchanged.
    """
    if set(feats_a) != set(feats_b):
        raise ValueError(
            f"feats_a and feats_b need the same keys: {sorted(feats_a)} vs {sorted(feats_b)}"
        )
    return {
        name: linear_sum_assignment(correlation(feats_a[name], feats_b[name], eps), maximize=True)[
            1
        ]
        for name in feats_a
    }


def weight_matching(
    params_a: Any, params_b: Any, spec: PermSpec, *, max_iter: int = 100, seed: int = 0
) -> Perms:
    """Git Re-Basin weight matching: permutations of B maximising sum <W_A, permuted W_B>.

    Coordinate ascent: visit the permutations in random order; for each, solve the linear
    assignment with the others held fixed; stop after a sweep that changes nothing (or
    ``max_iter`` sweeps). Needs no data. Runs on the host in float64.
    """
    max_iter = checks.integer("max_iter", max_iter, 1)
    sizes = perm_sizes(params_a, spec)
    if perm_sizes(params_b, spec) != sizes:
        raise ValueError("params_a and params_b must have the same shapes on the spec's leaves")
    leaves_a = {p: np.asarray(x, np.float64) for p, x in _leaves(params_a).items()}
    leaves_b = {p: np.asarray(x, np.float64) for p, x in _leaves(params_b).items()}
    by_leaf = _by_leaf(spec)
    perms = {name: np.arange(n) for name, n in sizes.items()}
    rng = np.random.default_rng(seed)

    def blocks(x: np.ndarray, ax: PermAxis, n: int) -> np.ndarray:
        return np.moveaxis(x, ax.axis, 0).reshape(n, -1)

    for _ in range(max_iter):
        changed = False
        for name in rng.permutation(list(spec)):
            n = sizes[name]
            gain = np.zeros((n, n))
            for ax in spec[name]:
                wb = leaves_b[tuple(ax.path)]
                for other, oax in by_leaf[tuple(ax.path)]:
                    if (other, oax.axis) != (name, ax.axis):
                        wb = _take(wb, perms[other], oax)
                gain += blocks(leaves_a[tuple(ax.path)], ax, n) @ blocks(wb, ax, n).T
            best = linear_sum_assignment(gain, maximize=True)[1]
            rows = np.arange(n)
            old, new = gain[rows, perms[name]].sum(), gain[rows, best].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[name], changed = best, True
        if not changed:
            break
    return perms


def align(
    params_a: Any,
    params_b: Any,
    spec: PermSpec,
    *,
    method: str = "activation",
    features: Callable[[Any], Mapping[str, Any]] | None = None,
) -> Any:
    """``params_b`` with the permutations of ``spec`` that align it to ``params_a`` applied.

    method: "activation" (needs ``features``: params -> {perm name: (M, n) or (M, n, k)}, see
    :func:`activation_matching`) or "weight" (:func:`weight_matching`, data-free).
    """
    if method == "activation":
        if features is None:
            raise ValueError('method="activation" needs features (for MLPs and heads: inputs X)')
        perms = activation_matching(features(params_a), features(params_b))
    elif method == "weight":
        perms = weight_matching(params_a, params_b, spec)
    else:
        raise ValueError(f'method must be "activation" or "weight", got {method!r}')
    return permute(params_b, spec, perms)


def mlp_spec(params: mlp.Params) -> dict[str, tuple[PermAxis, ...]]:
    """Spec ``{"hidden{l}": ...}`` permuting hidden layer l's units: its columns of w, its b,
    LayerNorm scale and bias, and the rows of the next layer's w."""
    mlp.check_params(params)
    spec = {}
    for l, layer in enumerate(params["layers"][:-1]):
        own = [PermAxis(("layers", l, "w"), 1)]
        own += [PermAxis(("layers", l, k), 0) for k in ("b", "ln_scale", "ln_bias") if k in layer]
        spec[f"hidden{l}"] = (*own, PermAxis(("layers", l + 1, "w"), 0))
    return spec


def mlp_features(params: mlp.Params, X: Any) -> dict[str, Any]:
    """Post-ReLU activations ``{"hidden{l}": (N, h_l)}`` of ``X`` (N, d), keyed like mlp_spec."""
    return {f"hidden{l}": h for l, h in enumerate(mlp.trace(params, X).post)}


def align_mlp(
    params_a: mlp.Params, params_b: mlp.Params, X: Any = None, *, method: str = "activation"
) -> mlp.Params:
    """``params_b`` with its hidden units permuted to match ``params_a``; same function.

    method: "activation" (on inputs ``X`` (N, d)) or "weight" (``X`` unused).
    """
    features = None if X is None else partial(mlp_features, X=X)
    return align(params_a, params_b, mlp_spec(params_b), method=method, features=features)


def heads_spec(heads: Mapping[str, Any]) -> dict[str, tuple[PermAxis, ...]]:
    """Spec ``{"heads": ...}`` moving axis 0 (the head axis) of every entry of a head-sum model
    (baselines.heads: heads dicts or trainable params alike, e.g. w1 or w1_logits, w2, a, gates)."""
    if not isinstance(heads, Mapping) or not heads:
        raise ValueError("heads must be a non-empty dict of arrays with the head axis first")
    return {"heads": tuple(PermAxis((k,), 0) for k in sorted(heads))}


def heads_features(kind: str, heads: Mapping[str, Any], X: Any) -> dict[str, Any]:
    """``{"heads": (N, h, k)}``: each head's own contribution to ``forward(kind, heads, X)``
    (X: (N, n, d)), flattened to k outputs; the model output is their sum over heads."""
    h = heads["a"].shape[0]
    one_hot = jnp.eye(h, dtype=heads["a"].dtype)

    def contribution(mask: jax.Array) -> jax.Array:
        a = heads["a"] * mask.reshape((h,) + (1,) * (heads["a"].ndim - 1))
        return head_models.forward(kind, {**heads, "a": a}, X)

    per_head = jax.vmap(contribution)(one_hot)  # (h, N, ...)
    return {"heads": jnp.moveaxis(per_head.reshape(h, per_head.shape[1], -1), 0, 1)}


def match_head_signs(heads_a: Mapping[str, Any], heads_b: Mapping[str, Any]) -> dict[str, Any]:
    """``heads_b`` with (w2_j, a_j) negated wherever that brings head j closer to head j of A.

    Each head's output is bilinear in (w2_j, a_j) (W2_j for "sequence"), so flipping both signs
    is a symmetry that permutations cannot undo: without it, interpolating two matched heads of
    opposite signs cancels them. Head j flips when <w2_A_j, w2_B_j> + <a_A_j, a_B_j> < 0.
    """
    signed = [k for k in ("w2", "W2", "a") if k in heads_b]
    if "a" not in signed or len(signed) != 2:
        raise ValueError(f"heads need 'a' and one of 'w2' / 'W2', got keys {sorted(heads_b)}")
    h = heads_b["a"].shape[0]
    agreement = sum(jnp.sum((heads_a[k] * heads_b[k]).reshape(h, -1), axis=1) for k in signed)
    sign = jnp.where(agreement < 0, -1.0, 1.0).astype(heads_b["a"].dtype)
    flip = {k: heads_b[k] * sign.reshape((h,) + (1,) * (heads_b[k].ndim - 1)) for k in signed}
    return {**heads_b, **flip}


def align_heads(
    kind: str,
    heads_a: Mapping[str, Any],
    heads_b: Mapping[str, Any],
    X: Any = None,
    *,
    method: str = "activation",
) -> dict[str, Any]:
    """``heads_b`` with its heads permuted to match ``heads_a``, then their signs matched
    (:func:`match_head_signs`); same function.

    method: "activation" (per-head contributions on inputs ``X`` (N, n, d); these do not
    change under the sign symmetry) or "weight" (inner products of the raw weights, which do:
    prefer "activation" for independently trained heads).
    """
    features = None if X is None else partial(heads_features, kind, X=X)
    permuted = align(heads_a, heads_b, heads_spec(heads_b), method=method, features=features)
    return match_head_signs(heads_a, permuted)


def transformer_spec(params: Any, cfg: Any) -> dict[str, tuple[PermAxis, ...]]:
    """Spec of the symmetries of a ``baselines.transformer`` stack (cfg: TransformerConfig).

    ``"heads{i}"``: the heads of layer i's "softmax" mixer (column blocks of wq, wk, wv, row
    blocks of wo, head_dim wide) or "simplex" mixer (logits / w1 along the head axis, wv, wo).
    ``"ffn{i}"``: the hidden units of layer i's "mlp" FFN (columns of w1, b1, rows of w2).
    Other layer kinds (GSS, MoE) contribute no permutation: they are aligned as they are.
    """
    dim = cfg.width // cfg.heads
    spec: dict[str, tuple[PermAxis, ...]] = {}
    layers = zip(params["layers"], cfg.mixers, cfg.ffns, strict=True)
    for i, (layer, mixer, ffn) in enumerate(layers):
        mix, ff = ("layers", i, "mixer"), ("layers", i, "ffn")
        values = (PermAxis((*mix, "wv"), 1, dim), PermAxis((*mix, "wo"), 0, dim))
        if mixer == "softmax":
            queries_keys = (PermAxis((*mix, "wq"), 1, dim), PermAxis((*mix, "wk"), 1, dim))
            spec[f"heads{i}"] = (*queries_keys, *values)
        elif mixer == "simplex":
            mixing = "logits" if "logits" in layer["mixer"] else "w1"
            spec[f"heads{i}"] = (PermAxis((*mix, mixing), 0), *values)
        if ffn == "mlp":
            spec[f"ffn{i}"] = (
                PermAxis((*ff, "w1"), 1),
                PermAxis((*ff, "b1"), 0),
                PermAxis((*ff, "w2"), 0),
            )
    return spec
