"""Router gradients: bias and variance of LOORF, ARMS, CARMS and straight-through, and the final
loss of an MoE trained with each (``baselines.router_gradients``, ``baselines.moe``).

Three parts, every estimator at the same number n of function evaluations per estimate:

1. Enumerable case: grad_phi E_{z ~ q_phi}[f(z)] for 3 binary gates ("binary3"), one 4-way
   ("cat4") and two 4-way ("cat4x2") categoricals, f an arbitrary table (standard normal
   entries) over the joint configurations. The exact gradient is jax.grad of the enumerated
   expectation; from M independent estimates per (case, method, n): bias (the largest
   |mean - exact| / SE over the coordinates, and |mean - exact|), variance (the trace of the
   covariance) and the mean squared error E|g - exact|^2. ARMS is for the binary gates only.
2. MoE task, gradient: the router gradient of an MoE layer on the mixture-of-teachers task
   (below), at the initialization, model "x -> MoE(x) -> linear head" with ample capacity.
   The loss is per token and nothing is dropped, so E_z[loss] = sum_tokens sum_e q_e loss(e)
   is computed densely (every token through every expert) and differentiated: the exact
   router gradient. Estimates come from ``moe.RouterObjective`` (n stacked copies).
3. MoE task, training: the MoE baseline (``baselines.transformer``: one softmax-attention layer
   with an MoE FFN, per-token output) trained by Adam with each router ("topk" through
   ``transformer.objective``, the others through ``moe.objective`` with n = router_samples);
   final train and test loss (mean squared error per token, deterministic top-1 evaluation
   for the stochastic routers, top-k for "topk").

Mixture-of-teachers task: every token belongs to one of X clusters (uniform), x = 3 e_c + N(0, I)
in d = 4 dimensions, target y = w_c . x with one fixed Gaussian teacher w_c per cluster; the
router should send cluster c to its own expert. Run with X = 2 experts (every router, ARMS
included) and X = 4 (no ARMS).

    python -m experiments.router_gradients            # CPU default, a few minutes
    python -m experiments.router_gradients --quick    # seconds (tests)
    python -m experiments.router_gradients --full     # more draws, steps and seeds

Writes experiments/results/router_gradients[_quick|_full].json after every unit (``--resume``
keeps the units of a matching earlier run) and a PNG next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from baselines import moe, transformer
from baselines import router_gradients as rg
from baselines.ffn import mlp_apply
from baselines.optim import make_optimizer
from baselines.registry import LayerConfig
from baselines.train import Trainer
from experiments import _common

NAME = "router_gradients"
CASES = ("binary3", "cat4", "cat4x2")
ESTIMATORS = ("reinforce_loo", "arms", "carms", "straight_through")
ROUTERS = ("topk", *ESTIMATORS)
DIM, LENGTH, CENTRE = 4, 8, 3.0

ALL = dict(cases=list(CASES), estimators=list(ESTIMATORS), routers=list(ROUTERS))
SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(draws=200, samples=[2], moe_draws=50, moe_samples=[2], experts=[2],
                  N_train=32, N_test=32, steps=10, batch_size=16, train_samples=2, seeds=[0],
                  cases=["binary3"], estimators=list(ESTIMATORS), routers=["topk", "carms"]),
    "default": dict(ALL, draws=20_000, samples=[2, 4, 8], moe_draws=1000, moe_samples=[2, 4],
                    experts=[2, 4], N_train=1024, N_test=512, steps=300, batch_size=64,
                    train_samples=4, seeds=[0, 1]),
    "full": dict(ALL, draws=100_000, samples=[2, 4, 8, 16], moe_draws=5000,
                 moe_samples=[2, 4, 8], experts=[2, 4, 8], N_train=1024, N_test=1024,
                 steps=3000, batch_size=128, train_samples=4, seeds=[0, 1, 2]),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _common.parse_args(__doc__.split("\n")[0], None, argv)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(SIZES[args.size], size=args.size)
    if args.seeds is not None:
        cfg["seeds"] = list(args.seeds)
    return cfg


# ------------------------------------------------------------------ enumerable case


def enumerable_case(name: str) -> tuple[jax.Array, Any]:
    """(logits (V, K), f: one-hots (n, V, K) -> (n,)): f = table[z_1, ..., z_V] written
    multilinearly in the one-hots (so straight-through can evaluate it on the simplex)."""
    rng = np.random.default_rng(CASES.index(name) + 1)
    if name == "binary3":
        logits = jnp.stack([jnp.zeros(3), jnp.array([-1.2, 0.3, 1.5])], axis=-1)
    elif name == "cat4":
        logits = jnp.array([[0.5, -0.7, 1.2, 0.0]])
    else:
        logits = jnp.array([[0.5, -0.7, 1.2, 0.0], [-1.0, 0.4, 0.2, 0.9]])
    V, K = logits.shape
    table = jnp.asarray(rng.standard_normal((K,) * V))
    letters = "abcdefgh"[:V]
    spec = ",".join(f"n{c}" for c in letters) + f",{letters}->n"
    return logits, lambda hot: jnp.einsum(spec, *(hot[:, v] for v in range(V)), table)


def moments(draws: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Bias, variance, MSE and MSE / |exact|^2 of M estimates (M, ...) of ``exact`` (...)."""
    mean, std = draws.mean(axis=0), draws.std(axis=0)
    se = std / math.sqrt(len(draws))
    z = np.abs(mean - exact) / np.where(se > 0, se, np.inf)
    mse = float(((draws - exact) ** 2).sum(axis=tuple(range(1, draws.ndim))).mean())
    return {
        "bias_max_z": float(z.max()),
        "bias_norm": float(np.linalg.norm(mean - exact)),
        "variance": float((std**2).sum()),
        "mse": mse,
        "exact_norm": float(np.linalg.norm(exact)),
        "relative_mse": mse / float(np.sum(exact**2)),
    }


def enumerable_unit(case: str, method: str, n: int, cfg: dict[str, Any]) -> dict[str, Any]:
    logits, f = enumerable_case(case)
    exact = np.asarray(jax.grad(rg.expectation)(logits, f))
    keys = jax.random.split(jax.random.key(1000 + n), cfg["draws"])
    tic = time.perf_counter()
    draws = jax.jit(jax.vmap(lambda k: rg.estimate(method, k, logits, f, n)))(keys)
    draws = np.asarray(draws)
    return {"part": "enumerable", "case": case, "method": method, "n": n,
            "draws": cfg["draws"], "seconds": time.perf_counter() - tic,
            **moments(draws, exact)}  # fmt: skip


# ------------------------------------------------------------------ MoE task


def mixture_of_teachers(N: int, experts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, LENGTH, DIM), y (N, LENGTH, 1)): the module docstring's task (teachers fixed per
    number of clusters, tokens drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, experts, size=(N, LENGTH))
    x = CENTRE * np.eye(DIM)[cluster % DIM] + rng.standard_normal((N, LENGTH, DIM))
    teachers = np.random.default_rng(100 + experts).standard_normal((experts, DIM))
    y = np.einsum("nld,nld->nl", x, teachers[cluster])[..., None]
    return x, y


def _layer_config(router: str, experts: int, n: int) -> LayerConfig:
    options = {"num_experts": experts, "router": router, "router_samples": n,
               "capacity_factor": float(experts), "balance_coef": 0.0, "z_coef": 0.0}  # fmt: skip
    return LayerConfig(width=DIM, hidden_ratio=2, options=options)


@dataclasses.dataclass(frozen=True)
class LayerModel:
    """x (B, L, DIM) -> MoE(x) @ head (B, L, 1), aux in the transformer's format."""

    cfg: LayerConfig

    def __call__(self, params: Any, x: jax.Array, key: jax.Array | None) -> tuple[jax.Array, Any]:
        y, aux = moe.apply(params["moe"], x, self.cfg, key=key, train=key is not None)
        metrics = {f"ffn/{k}": v for k, v in aux.items() if k != "aux_loss"}
        return y @ params["head"], {"aux_loss": aux["aux_loss"], "metrics": [metrics]}


def half_squared(pred: jax.Array, y: jax.Array) -> jax.Array:
    """1/2 sum of squared errors per sample: (B,)."""
    return 0.5 * jnp.sum((pred - y) ** 2, axis=tuple(range(1, pred.ndim)))


def moe_gradient_unit(experts: int, router: str, n: int, cfg: dict[str, Any]) -> dict[str, Any]:
    layer = _layer_config(router, experts, n)
    k_moe, k_head = jax.random.split(jax.random.key(experts))
    params = {"moe": moe.init(k_moe, layer), "head": jax.random.normal(k_head, (DIM, 1)) / 2}
    x, y = (jnp.asarray(a) for a in mixture_of_teachers(16, experts, seed=experts))

    def expected(router_weights: jax.Array) -> jax.Array:
        q = jax.nn.softmax(x @ router_weights, axis=-1)  # (B, L, X)
        out = jax.vmap(lambda e: mlp_apply(e, x))(params["moe"]["experts"]) @ params["head"]
        loss = 0.5 * jnp.sum((out - y) ** 2, axis=-1)  # (X, B, L)
        return jnp.sum(q * jnp.moveaxis(loss, 0, -1))

    exact = np.asarray(jax.grad(expected)(params["moe"]["router"]))
    objective = moe.RouterObjective(LayerModel(layer), half_squared, router, n)

    def router_grad(key: jax.Array) -> jax.Array:
        return jax.grad(lambda p: objective(p, (x, y), key)[0])(params)["moe"]["router"]

    tic = time.perf_counter()
    keys = jax.random.split(jax.random.key(2000 + n), cfg["moe_draws"])
    draws = np.asarray(jax.jit(jax.vmap(router_grad))(keys))
    return {"part": "moe_gradient", "experts": experts, "router": router, "n": n,
            "draws": cfg["moe_draws"], "seconds": time.perf_counter() - tic,
            **moments(draws, exact)}  # fmt: skip


def stack_config(router: str, experts: int, n: int) -> transformer.TransformerConfig:
    """The MoE baseline: 1 pre-norm layer (softmax attention, MoE FFN), width 16, per token."""
    options = {"num_experts": experts}
    if router != "topk":
        options |= {"router": router, "router_samples": n}
    return transformer.TransformerConfig(
        width=16, depth=1, heads=2, input_dim=DIM, max_len=LENGTH, ffn="moe", hidden_ratio=2,
        positions="none", output="token", num_outputs=1, options=options,
    )  # fmt: skip


def mean_squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error over a sample's tokens: (B,)."""
    return jnp.mean((pred - y) ** 2, axis=(1, 2))


def training_unit(
    experts: int, router: str, seed: int, cfg: dict[str, Any], progress: bool
) -> dict[str, Any]:
    n = cfg["train_samples"]
    stack = stack_config(router, experts, n)
    train = tuple(jnp.asarray(a) for a in mixture_of_teachers(cfg["N_train"], experts, seed))
    test = tuple(jnp.asarray(a) for a in mixture_of_teachers(cfg["N_test"], experts, seed + 500))
    trainer = Trainer(
        moe.objective(stack, mean_squared_error, accuracy=False),
        make_optimizer("adam", 1e-2),
        batch_size=cfg["batch_size"],
    )
    params = jax.jit(lambda key: transformer.init(key, stack))(jax.random.key(seed, impl="rbg"))
    result = trainer.run(
        params, train, cfg["steps"], seed=seed, test_data=test, log_every=max(1, cfg["steps"] // 10),
        progress=progress,
    )  # fmt: skip
    history = result.history
    return {"part": "moe_training", "experts": experts, "router": router, "seed": seed,
            "evaluations_per_step": 1 if router == "topk" else n,
            "train_loss": history["train_loss"][-1], "test_loss": history["test_loss"][-1],
            "initial_test_loss": history["test_loss"][0], "train_seconds": result.seconds,
            "status": result.status,
            "curve": {k: history[k] for k in ("step", "train_loss", "test_loss")}}  # fmt: skip


# ------------------------------------------------------------------ driver


def units(cfg: dict[str, Any]) -> list[tuple]:
    """Every unit of work, as a key: ("enumerable", case, method, n), ("moe_gradient",
    experts, router, n), ("moe_training", experts, router, seed)."""
    out: list[tuple] = []
    for case in cfg["cases"]:
        for method in cfg["estimators"]:
            if method == "arms" and case != "binary3":
                continue
            out += [("enumerable", case, method, n) for n in cfg["samples"]]
    for experts in cfg["experts"]:
        routers = [r for r in cfg["estimators"] if r != "arms" or experts == 2]
        out += [("moe_gradient", experts, r, n) for r in routers for n in cfg["moe_samples"]]
    for experts in cfg["experts"]:
        routers = [r for r in cfg["routers"] if r != "arms" or experts == 2]
        out += [("moe_training", experts, r, s) for r in routers for s in cfg["seeds"]]
    return out


def unit_key(record: dict[str, Any]) -> tuple:
    part = record["part"]
    if part == "enumerable":
        return (part, record["case"], record["method"], record["n"])
    if part == "moe_gradient":
        return (part, record["experts"], record["router"], record["n"])
    return (part, record["experts"], record["router"], record["seed"])


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest bias z of the unbiased estimators, relative MSE (E|g - exact|^2 / |exact|^2) per
    case / MoE and estimator and n, and the mean final test loss per (experts, router)."""
    unbiased = [r for r in records if r["part"] != "moe_training"]
    unbiased = [r for r in unbiased if r.get("method", r.get("router")) != "straight_through"]
    mse = {}
    for r in records:
        if r["part"] == "enumerable":
            mse.setdefault(f"{r['case']}", {}).setdefault(r["method"], {})[r["n"]] = r[
                "relative_mse"
            ]
        elif r["part"] == "moe_gradient":
            mse.setdefault(f"moe_X{r['experts']}", {}).setdefault(r["router"], {})[r["n"]] = r[
                "relative_mse"
            ]
    final: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r["part"] == "moe_training":
            final.setdefault(f"X{r['experts']}", {}).setdefault(r["router"], []).append(
                r["test_loss"]
            )
    return {
        "max_bias_z_unbiased_estimators": max((r["bias_max_z"] for r in unbiased), default=None),
        "relative_mse": mse,
        "final_test_loss_mean": {
            k: {router: float(np.mean(v)) for router, v in d.items()} for k, d in final.items()
        },
    }


def plot(results: dict[str, Any], path: Any) -> Any:
    from matplotlib.ticker import NullLocator

    records = results["records"]
    cases = [c for c in results["config"]["cases"] if any(r.get("case") == c for r in records)]
    moe_x = sorted({r["experts"] for r in records if r["part"] == "moe_gradient"})
    fig, axes = _common.figure(1, len(cases) + len(moe_x) + 1)
    panels = [("enumerable", "case", c, "method") for c in cases]
    panels += [("moe_gradient", "experts", x, "router") for x in moe_x]
    for ax, (part, field, value, by) in zip(axes[0], panels, strict=False):
        rows = [r for r in records if r["part"] == part and r[field] == value]
        for method in ESTIMATORS:
            rs = sorted((r for r in rows if r[by] == method), key=lambda r: r["n"])
            if rs:
                ax.plot([r["n"] for r in rs], [r["relative_mse"] for r in rs], "o-", label=method,
                        color=f"C{ESTIMATORS.index(method)}")  # fmt: skip
        title = value if part == "enumerable" else f"MoE router, X = {value}"
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="n samples",
            ylabel="E|g - exact|^2 / |exact|^2",
            title=title,
        )
        ax.set_xticks(results["config"]["samples"] if part == "enumerable" else
                      results["config"]["moe_samples"])  # fmt: skip
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.legend(fontsize=7)
    ax = axes[0, -1]
    training = [r for r in records if r["part"] == "moe_training"]
    labels = []
    for i, (experts, router) in enumerate(
        sorted({(r["experts"], r["router"]) for r in training}, key=lambda t: (t[0], ROUTERS.index(t[1])))
    ):  # fmt: skip
        losses = [
            r["test_loss"] for r in training if (r["experts"], r["router"]) == (experts, router)
        ]
        ax.scatter([i] * len(losses), losses, color=f"C{ROUTERS.index(router)}")
        labels.append(f"X{experts} {router}")
    ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=7)
    ax.set(yscale="log", ylabel="final test MSE", title="MoE training (seeds)")
    return _common.save_plot(fig, path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_of(args)
    path = _common.out_path(args, NAME)
    records: list[dict[str, Any]] = _common.resumed(args, path, cfg, "records")
    done = {unit_key(r) for r in records}
    results = {"config": cfg, "records": records}
    bar = tqdm([u for u in units(cfg) if u not in done], desc=NAME, disable=args.no_progress)
    for unit in bar:
        bar.set_postfix_str(" ".join(map(str, unit)))
        part, a, b, c = unit
        if part == "enumerable":
            records.append(enumerable_unit(a, b, c, cfg))
        elif part == "moe_gradient":
            records.append(moe_gradient_unit(a, b, c, cfg))
        else:
            records.append(training_unit(a, b, c, cfg, progress=False))
        _common.save_progress(path, results, records, summarize)
    return _common.finish(path, results, records, summarize, plot)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, results = _common.run_experiment(argv, parse_args, run, NAME)
    print(results["summary"])
    return results


if __name__ == "__main__":
    main()
