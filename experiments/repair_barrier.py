"""Loss barriers between two independently trained networks: naive, permuted, permuted + REPAIR.

For each MLP width x depth, two ReLU MLPs are trained on scikit-learn's digits (8x8 images
flattened to 64 features) from different seeds by one ``baselines.train.Trainer``. Then the
test loss and error are measured along the straight line between them (Jordan et al. 2022,
arXiv 2211.08403; barrier of Entezari et al. 2021):

- naive: interpolate the weights as they are;
- permuted: align B's hidden units to A's first (activation matching and, separately, weight
  matching), then interpolate;
- REPAIR: permuted, and every interpolated network's hidden units reset to the interpolated
  endpoint statistics (measured on the training inputs) and fused into the weights.

Also reported: the relative barrier reduction of REPAIR, the variance collapse at alpha = 0.5
(per layer, mean over units of std(interpolated) / interpolated endpoint std, on test inputs), and
the same naive/permuted barrier for two Adam-trained simplex-attention head models (the "vector"
kind of ``baselines.heads`` on the digits' 8 rows as tokens), aligned by head permutation alone
and then also by the heads' sign symmetry (w2_j, a_j) -> (-w2_j, -a_j).

    python -m experiments.repair_barrier                    # CPU defaults, about 1-3 minutes
    python -m experiments.repair_barrier --widths 64 256 --depths 1 2 4 8 --steps 2000

Writes JSON (``--out``, default experiments/results/repair_barrier.json) after every model pair
(``--resume`` keeps the pairs of an earlier run with the same settings) and a PNG of the test
loss against alpha next to it.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from baselines import align, heads, mlp, repair
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.tasks import digits

DEFAULT_OUT = Path(__file__).parent / "results" / "repair_barrier.json"
METHODS = ("activation", "weight")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4], help="hidden layers")
    parser.add_argument("--steps", type=int, default=1000, help="Adam steps per network")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--weight-decay", type=float, default=3.0, help="beta of beta/2 |W|^2 on the summed loss"
    )
    parser.add_argument(
        "--layer-norm",
        action="store_true",
        help="MLPs with LayerNorm before each ReLU; REPAIR then resets the LayerNorm outputs",
    )
    parser.add_argument("--alphas", type=int, default=11, help="grid points on [0, 1]")
    parser.add_argument("--heads", type=int, default=16, help="heads of the attention models")
    parser.add_argument("--heads-steps", type=int, default=2000)
    parser.add_argument("--heads-learning-rate", type=float, default=1e-2)
    parser.add_argument("--heads-beta", type=float, default=1e-2, help="weight decay of heads")
    parser.add_argument("--seeds", type=int, nargs=2, default=[0, 1])
    parser.add_argument("--data-seed", type=int, default=0, help="train/test split seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true", help="reuse pairs of a matching --out")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "heads", "heads_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.widths) < 1 or min(args.depths) < 1:
        parser.error("--widths and --depths must all be >= 1")
    if args.alphas < 3 or args.alphas % 2 == 0:
        parser.error("--alphas must be odd and >= 3 (so that the grid holds alpha = 0.5)")
    if args.seeds[0] == args.seeds[1]:
        parser.error("--seeds must differ")
    return args


def summary(res: repair.Barrier) -> dict[str, Any]:
    """JSON view of a barrier: sup barrier, midpoint barrier, argmax alpha and the curves."""
    mid = int(np.argmin(np.abs(res.alphas - 0.5)))
    out: dict[str, Any] = {"barrier": res.barrier, "argmax": res.argmax, "midpoint": {}}
    for k, curve in res.curves.items():
        line = (1 - res.alphas[mid]) * res.endpoints[k][0] + res.alphas[mid] * res.endpoints[k][1]
        out["midpoint"][k] = float(curve[mid] - line)
    out["curves"] = {k: v.tolist() for k, v in res.curves.items()}
    return out


def variance_ratio(
    a: mlp.Params, b: mlp.Params, mixed: mlp.Params, X: Any, site: str
) -> list[float]:
    """Per hidden layer, mean over units of std(mixed) / ((std_A + std_B) / 2) on ``X``."""
    stats = partial(repair.neuron_stats, X=X, site=site)
    target = repair.interpolate_stats(stats(a), stats(b), 0.5)
    got = stats(mixed)
    return [float(jnp.mean(g.std / t.std)) for g, t in zip(got, target, strict=True)]


def mlp_pair(width: int, depth: int, task: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Train two MLPs and measure naive, permuted and REPAIR barriers (both matching methods)."""
    X_train = jnp.asarray(task.X_train.reshape(task.n_train, -1), jnp.float32)
    X_test = jnp.asarray(task.X_test.reshape(task.n_test, -1), jnp.float32)
    cfg = mlp.MLPConfig(X_train.shape[1], (width,) * depth, task.num_classes, args.layer_norm)
    site = "norm" if args.layer_norm else "linear"
    trainer = Trainer(
        mlp.objective(),
        make_optimizer("adam", args.learning_rate),
        penalty=mlp.WeightDecay(args.weight_decay),
        batch_size=args.batch_size,
    )
    nets = [
        trainer.run(
            mlp.init(jax.random.PRNGKey(seed), cfg),
            (X_train, task.y_train),
            args.steps,
            seed=seed,
            log_every=args.steps,
            progress=False,
        )
        for seed in args.seeds
    ]
    a, b = (net.params for net in nets)
    evaluate = jax.jit(
        lambda p: {
            "loss": mlp.cross_entropy(p, X_test, task.y_test),
            "error": mlp.error_rate(p, X_test, task.y_test),
        }
    )
    alphas = np.linspace(0, 1, args.alphas)
    repaired = partial(repair.repair_interpolate, X=X_train, site=site)
    naive = repair.barrier(evaluate, a, b, alphas)
    out: dict[str, Any] = {
        "width": width,
        "depth": depth,
        "train_accuracy": [net.history["train_accuracy"][-1] for net in nets],
        "train_seconds": [net.seconds for net in nets],
        "endpoints": naive.endpoints,
        "naive": summary(naive),
        "variance_ratio": {
            "naive": variance_ratio(a, b, repair.interpolate(a, b, 0.5), X_test, site)
        },
    }
    for method in METHODS:
        aligned = align.align_mlp(a, b, X_train, method=method)
        permuted = repair.barrier(evaluate, a, aligned, alphas)
        fixed = repair.barrier(evaluate, a, aligned, alphas, interpolate=repaired)
        out[method] = {
            "permuted": summary(permuted),
            "repair": summary(fixed),
            "reduction": {
                k: repair.relative_reduction(permuted.barrier[k], fixed.barrier[k])
                if permuted.barrier[k] > 0
                else None
                for k in permuted.barrier
            },
            "variance_ratio": {
                "permuted": variance_ratio(
                    a, aligned, repair.interpolate(a, aligned, 0.5), X_test, site
                ),
                "repair": variance_ratio(a, aligned, repaired(a, aligned, 0.5), X_test, site),
            },
        }
    return out


def heads_pair(task: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Train two simplex-attention head models (kind "vector") and measure naive and permuted
    (activation-matched heads) barriers, interpolating the heads (w1 on the simplex, w2, a)."""
    X_train = jnp.asarray(task.X_train, jnp.float32)
    X_test = jnp.asarray(task.X_test, jnp.float32)
    _, n, d = X_train.shape
    ce = optax.softmax_cross_entropy_with_integer_labels
    trainer = Trainer(
        heads.objective("vector", ce, accuracy=True),
        make_optimizer("adam", args.heads_learning_rate),
        penalty=heads.WeightDecay("vector", args.heads_beta),
        batch_size=args.batch_size,
    )
    models = []
    for seed in args.seeds:
        params = heads.init_params(
            jax.random.PRNGKey(seed), "vector", args.heads, n, d, c=task.num_classes
        )
        res = trainer.run(
            params,
            (X_train, task.y_train),
            args.heads_steps,
            seed=seed,
            log_every=args.heads_steps,
            progress=False,
        )
        models.append((heads.to_heads(res.params, "vector"), res))

    def evaluate(model: heads.Heads) -> dict[str, jax.Array]:
        logits = heads.forward("vector", model, X_test)
        return {
            "loss": ce(logits, task.y_test).mean(),
            "error": jnp.mean(logits.argmax(-1) != task.y_test, dtype=logits.dtype),
        }

    (a, res_a), (b, res_b) = models
    alphas = np.linspace(0, 1, args.alphas)
    features = partial(align.heads_features, "vector", X=X_train)
    permuted_only = align.align(a, b, align.heads_spec(b), features=features)
    naive = repair.barrier(evaluate, a, b, alphas)
    return {
        "heads": args.heads,
        "train_accuracy": [
            res_a.history["train_accuracy"][-1],
            res_b.history["train_accuracy"][-1],
        ],
        "endpoints": naive.endpoints,
        "naive": summary(naive),
        "permuted_no_signs": summary(repair.barrier(evaluate, a, permuted_only, alphas)),
        "permuted": summary(
            repair.barrier(evaluate, a, align.match_head_signs(a, permuted_only), alphas)
        ),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Test loss against alpha, one panel per model pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(result["mlp"].items()) + (
        [("heads", result["heads"])] if "heads" in result else []
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    alphas = np.linspace(0, 1, result["settings"]["alphas"])
    for ax, (name, pair) in zip(axes[0], panels, strict=True):
        ax.plot(alphas, pair["naive"]["curves"]["loss"], "k-", label="naive")
        if name == "heads":
            ax.plot(alphas, pair["permuted_no_signs"]["curves"]["loss"], "C0:", label="permuted")
            ax.plot(alphas, pair["permuted"]["curves"]["loss"], "C0-", label="+ signs")
            ax.legend(fontsize=7)
            ax.set_title(f"simplex heads (h={pair['heads']})")
        else:
            for method, style in zip(METHODS, ("-", "--"), strict=True):
                short = {"activation": "act.", "weight": "wt."}[method]
                curves = pair[method]
                ax.plot(
                    alphas,
                    curves["permuted"]["curves"]["loss"],
                    "C0" + style,
                    label=f"permuted ({short})",
                )
                ax.plot(
                    alphas,
                    curves["repair"]["curves"]["loss"],
                    "C3" + style,
                    label=f"+REPAIR ({short})",
                )
            ax.set_title(f"MLP width {pair['width']}, depth {pair['depth']}")
        ax.set_xlabel("alpha")
        ax.set_yscale("log")
    axes[0, 0].set_ylabel("test cross-entropy")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("out", "resume")
    }
    result: dict[str, Any] = {"settings": settings, "mlp": {}}
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("settings") == settings:
            result = previous
    args.out.parent.mkdir(parents=True, exist_ok=True)
    task = digits(seed=args.data_seed)

    def save() -> None:  # after every pair, so that a killed run can resume
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    jobs = [(w, depth) for depth in args.depths for w in args.widths]
    for width, depth in tqdm(jobs, desc="MLP pairs"):
        key = f"w{width}_d{depth}"
        if key not in result["mlp"]:
            result["mlp"][key] = mlp_pair(width, depth, task, args)
            save()
    if "heads" not in result:
        result["heads"] = heads_pair(task, args)
        save()
    plot(result, args.out.with_suffix(".png"))
    print(report(result))
    return result


def report(result: dict[str, Any]) -> str:
    """A table of the test-loss (and error) barriers and REPAIR's relative reduction."""
    lines = [
        "test barrier, loss / error (sup over alpha); reduction = 1 - REPAIR / permuted",
        f"{'pair':10} {'naive':>13} {'perm act':>13} {'REPAIR act':>13} {'perm wt':>13} "
        f"{'REPAIR wt':>13} {'red act':>6} {'red wt':>6}",
    ]

    def cell(s: dict[str, Any]) -> str:
        return f"{s['barrier']['loss']:.3f}/{s['barrier']['error']:.3f}"

    def red(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:6.0%}"

    for key, pair in result["mlp"].items():
        act, wt = pair["activation"], pair["weight"]
        lines.append(
            f"{key:10} {cell(pair['naive']):>13} {cell(act['permuted']):>13} "
            f"{cell(act['repair']):>13} {cell(wt['permuted']):>13} {cell(wt['repair']):>13} "
            f"{red(act['reduction']['loss'])} {red(wt['reduction']['loss'])}"
        )
    if "heads" in result:
        h = result["heads"]
        lines.append(
            f"{'heads':10} {cell(h['naive']):>13} {cell(h['permuted_no_signs']):>13} "
            f"(permuted heads, signs not matched); {cell(h['permuted'])} with signs matched"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
