"""The ``convextx`` command: ``demo``, ``bench`` and ``solve``.

::

    convextx demo [--out DIR] [--quick]
    convextx bench --tasks digits,student_teacher --models convex-fista,simplex-adam \\
                   --seeds 0,1 --device cpu --out DIR
    convextx solve --data FILE.npz --kind vector --beta 1e-2 [--loss ...] [--out W.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convextx import bench, report, tasks, zoo
from convextx.estimator import SOLVERS, ConvexAttention
from convextx.programs import KINDS, LOSSES


def _names(kind: str, valid: Callable[[], list[str]]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from ``valid()``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        try:
            return bench.check_names(kind, names, valid())
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _seeds(text: str) -> list[int]:
    try:
        return bench.check_seeds([int(s) for s in text.split(",")])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (e.g. --seeds 0,1,2)") from None


def _settings(text: str) -> dict[str, dict[str, Any]]:
    """An argparse type: JSON {name: {setting: value}}."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('expected {"name": {"setting": value, ...}, ...}')
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convextx",
        description="Train attention by convex optimization and benchmark it against SGD/Adam.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="certified convex attention vs Adam vs a softmax transformer on digits",
        description="Fit the certified convex attention classifier, the same architecture by "
        "Adam, and a softmax transformer on the digits task; print a table and save a plot.",
    )
    demo.add_argument("--out", type=Path, default=Path("convextx-demo"), help="output folder")
    demo.add_argument("--quick", action="store_true", help="fewer training steps (smoke run)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    grid = commands.add_parser(
        "bench",
        help="run a (task, model, seed) grid; resumable; writes a leaderboard and plots",
        description="Run every (task, model, seed), appending to OUT/runs.jsonl (a rerun skips "
        "the runs already there), then write OUT/leaderboard.md and PNG plots.",
    )
    grid.add_argument(
        "--tasks",
        type=_names("tasks", tasks.names),
        required=True,
        help=f"comma-separated, from: {','.join(tasks.names())}",
    )
    grid.add_argument(
        "--models",
        type=_names("models", zoo.names),
        required=True,
        help=f"comma-separated, from: {','.join(zoo.names())}",
    )
    grid.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated ints (0)")
    grid.add_argument("--device", choices=bench.DEVICES, default="cpu")
    grid.add_argument("--out", type=Path, required=True, help="output folder")
    grid.add_argument("--budget", type=float, default=None, help="seconds per run (fit)")
    grid.add_argument(
        "--task-cfg", type=_settings, default={}, help='JSON settings per task: {"digits": {...}}'
    )
    grid.add_argument(
        "--model-cfg",
        type=_settings,
        default={},
        help='JSON settings per model: {"simplex-adam": {"steps": 500}}',
    )
    grid.add_argument("--fresh", action="store_true", help="delete OUT/runs.jsonl first")
    grid.add_argument("--no-progress", action="store_true", help="hide the progress bars")

    solve = commands.add_parser(
        "solve",
        help="solve a convex attention program on your arrays (npz with X and y)",
        description="Fit convextx.ConvexAttention on X (N, n, d) and y from an .npz file and "
        "print the certificate.",
    )
    solve.add_argument("--data", type=Path, required=True, help=".npz holding X and y")
    solve.add_argument("--kind", choices=KINDS, default="vector")
    solve.add_argument("--beta", type=float, required=True, help="weight decay (> 0)")
    solve.add_argument("--loss", choices=LOSSES, default=None, help="default: from y's dtype")
    solve.add_argument("--solver", choices=SOLVERS, default="fista")
    solve.add_argument("--tol", type=float, default=None, help="relative duality gap")
    solve.add_argument("--max-iter", type=int, default=10_000)
    solve.add_argument("--out", type=Path, default=None, help=".npz for coef and heads")
    return parser


def _demo(args: argparse.Namespace) -> None:
    print(
        f"convextx demo: digits (8 row tokens of 8 pixels, 10 classes), beta={bench.DEMO_BETA}, "
        f"models {', '.join(bench.DEMO_MODELS)}{' (quick)' if args.quick else ''}"
    )
    result = bench.demo(args.out, quick=args.quick, progress=not args.no_progress)
    print()
    print(report.table(result.rows))
    print(
        "\ntrain objective: the sum over training samples of the cross-entropy, plus the weight\n"
        "decay for the simplex-attention architecture (convex-fista, simplex-adam), whose convex\n"
        "program's global optimum is certified to lie in [certified optimum - gap, certified optimum].\n"
        "The transformer has no weight decay: its objective is not on that scale."
    )
    print(f"\nwrote {', '.join(str(f) for f in result.files)}")


def _bench(args: argparse.Namespace) -> None:
    result = bench.run(
        args.tasks,
        args.models,
        args.seeds,
        args.out,
        task_cfg=args.task_cfg,
        model_cfg=args.model_cfg,
        budget_seconds=args.budget,
        device=args.device,
        resume=not args.fresh,
        progress=not args.no_progress,
    )
    print(f"{result.ran} runs computed, {result.skipped} found in {args.out / bench.RUNS_FILE}\n")
    print((args.out / bench.LEADERBOARD_FILE).read_text())
    print(f"wrote {', '.join(str(f) for f in result.files)}")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise ValueError(f"--data {path}: no such file")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("X", "y") if k not in data.files]
        if missing:
            raise ValueError(f"--data {path} lacks {missing}; it holds {sorted(data.files)}")
        return data["X"], data["y"]


def _solve(args: argparse.Namespace) -> None:
    X, y = _load_npz(args.data)
    est = ConvexAttention(
        kind=args.kind,
        beta=args.beta,
        loss=args.loss,
        solver=args.solver,
        max_iter=args.max_iter,
        **({} if args.tol is None else {"tol": args.tol}),
    )
    start = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - start
    result = est.solve_result_
    print(f"data           X {X.shape}, y {y.shape} ({args.data})")
    print(f"program        kind {args.kind}, loss {est.loss_}, beta {args.beta:g}")
    print(f"objective      {est.objective_:.10g}")
    print(f"gap            {est.gap_:.3g} (relative {result.relative_gap:.3g}, tol {result.tol:g})")
    print(f"status         {est.status_} after {est.n_iter_} iterations ({result.method})")
    print(f"active tokens  {[int(k) for k in est.active_tokens_]} of {X.shape[1]}")
    print(f"heads          {np.asarray(est.heads_['a']).shape[0]}")
    print(f"time           {seconds:.3f} s (solve {result.seconds:.3f} s)")
    if args.out is not None:
        heads = {f"heads_{k}": np.asarray(v) for k, v in est.heads_.items()}
        np.savez(args.out, coef=est.coef_, **heads)
        print(f"wrote          {args.out} (coef, {', '.join(heads)})")


COMMANDS = {"demo": _demo, "bench": _bench, "solve": _solve}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convextx`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except ValueError as error:
        print(f"convextx {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
