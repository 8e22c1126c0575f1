"""A walk through convextx in five steps, run as one script (CI runs it: tests/test_tutorial.py).

1. Fit the paper's vector program (P2) on digits and read its certificate.
2. Recover the attention network and check that it reaches the convex optimum.
3. Follow a warm-started regularization path and choose beta by cross-validation.
4. Certify how far an Adam-trained network of the same architecture is from the optimum.
5. Benchmark the convex solve against Adam and a softmax transformer through the zoo.

    python -m experiments.tutorial                  # about a minute on 2 CPU cores
    python -m experiments.tutorial --out my-folder  # keep the benchmark's files there

Every printed number is computed here; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import numpy as np

import convextx as cx
from convextx import bench

SAMPLES = 600  # training samples of digits used by steps 1-4 (the split has 1348)
BETA = 1.0


def fit_and_certify(task: cx.tasks.Task) -> cx.ConvexAttention:
    """Step 1. ``fit`` solves the convex program; ``status_`` says whether the duality gap
    reached tol, and the global optimum of the training problem lies in
    [objective_ - gap_, objective_]."""
    X, y = task.X_train[:SAMPLES], task.y_train[:SAMPLES]
    est = cx.ConvexAttention(kind="vector", beta=BETA, loss="cross_entropy").fit(X, y)
    print(f"1. status {est.status_}: optimum in [{est.objective_ - est.gap_:.6f}, ", end="")
    print(f"{est.objective_:.6f}]; test accuracy {est.score(task.X_test, task.y_test):.4f}")
    return est


def recover(est: cx.ConvexAttention, task: cx.tasks.Task) -> None:
    """Step 2. ``heads_`` are the weights of an ordinary simplex-attention network (one
    row-stochastic mixer and one readout per head) whose weight-decay objective equals the
    convex optimum."""
    X, y = task.X_train[:SAMPLES], task.y_train[:SAMPLES]
    labels = est.classes_.searchsorted(y)
    value = cx.nonconvex_objective(
        est.heads_, X, labels, beta=BETA, kind="vector", loss="cross_entropy"
    )
    print(
        f"2. {est.attention_.shape[0]} heads over {est.active_tokens_.size} active tokens; ", end=""
    )
    print(f"network objective {value:.6f} vs convex {est.objective_:.6f}")
    assert abs(value - est.objective_) <= 1e-6 * abs(est.objective_)


def path_and_cv(task: cx.tasks.Task) -> float:
    """Step 3. ``cx.path`` solves from beta_max (the smallest beta whose solution is 0) down,
    each solve warm-started from the last; ``ConvexAttentionCV`` picks beta by k-fold CV."""
    X, y = task.X_train[:SAMPLES], task.y_train[:SAMPLES]
    path = cx.path(X, y, num=6, min_ratio=0.01, kind="vector")
    for record in path.records:
        print(
            f"3. beta {record['beta']:9.4g}: {record['active_tokens']} tokens, "
            f"{record['iterations']:4d} iterations, train accuracy {record['train_score']:.3f}"
        )
    cv = cx.ConvexAttentionCV(cx.ConvexAttention(kind="vector"), num=6, min_ratio=0.01, cv=3)
    cv.fit(X, y)
    print(f"3. cross-validated beta {cv.beta_:.4g} (mean CV accuracy {cv.mean_scores_.max():.4f})")
    return float(cv.beta_)


def certify_adam(est: cx.ConvexAttention, task: cx.tasks.Task) -> None:
    """Step 4. The zoo's ``simplex-adam`` trains the same architecture and objective by Adam;
    the convex certificate bounds its excess over the global optimum from above."""
    X, y = task.X_train[:SAMPLES], task.y_train[:SAMPLES]
    small = cx.tasks.from_arrays(X, y, task.X_test, task.y_test, name="digits-600")
    adam = cx.zoo.make("simplex-adam", beta=BETA, steps=1500, seed=0).fit(small).report()
    lower = est.objective_ - est.gap_
    print(f"4. Adam objective {adam['objective']:.4f}; certified excess <= ", end="")
    print(f"{adam['objective'] - lower:.4f} ({(adam['objective'] - lower) / lower:.2%})")
    assert adam["objective"] >= lower  # no network beats the certified optimum


def benchmark(out: Path) -> None:
    """Step 5. ``convextx.bench.run`` runs a grid of (task, model, seed) through the zoo and writes
    runs.jsonl, a leaderboard and plots; a second call reuses the stored runs."""
    result = bench.run(
        ["digits"],
        ["convex-fista", "simplex-adam", "softmax-transformer"],
        [0],
        out,
        model_cfg={
            "convex-fista": {"beta": 10.0},
            "simplex-adam": {"beta": 10.0, "steps": 600},
            "softmax-transformer": {"steps": 100},
        },
        progress=False,
    )
    print("5.", (out / "leaderboard.md").read_text().strip().replace("\n", "\n   "))
    print(f"   files: {', '.join(p.name for p in result.files)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="benchmark folder (default: temp)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    np.set_printoptions(precision=4)
    task = cx.tasks.load("digits")
    est = fit_and_certify(task)
    recover(est, task)
    path_and_cv(task)
    certify_adam(est, task)
    if args.out is None:
        with tempfile.TemporaryDirectory() as folder:
            benchmark(Path(folder))
    else:
        benchmark(args.out)


if __name__ == "__main__":
    main()
