"""The ``convextx`` command: ``demo``, ``bench``, ``solve`` and ``predict``.

::

    convextx demo [--out DIR] [--quick]
    convextx bench --tasks digits,student_teacher --models convex-fista,simplex-adam \\
                   --seeds 0,1 --device cpu --out DIR
    convextx bench --data MINE.npz --models convex-fista,simplex-adam --out DIR
    convextx bench --tasks digits --models convex-fista,simplex-adam \\
                   --sizes 32,64,128,256,512 [--held-out 1] --out DIR
    convextx solve --data FILE.npz --kind vector --beta 1e-2 [--loss ...] [--out MODEL.npz]
    convextx predict --model MODEL.npz --data FILE.npz [--out PREDICTIONS.npz]

Errors. A user's mistake (a bad argument, file or folder: ValueError, TypeError, KeyError,
OSError, or ``bench.BenchError``) prints one line ``convextx COMMAND: error: ...`` to stderr and
exits 2; Ctrl-C exits 130 without a traceback. Any other exception is a bug in convextx and keeps
its traceback. Every output path is checked before any work, and no command overwrites a file it
did not write unless given ``--force``; nothing is ever deleted.

Imports. Nothing heavy is imported to parse a command line: ``convextx --help`` and
``--version`` load neither NumPy, JAX, cvxpy nor scikit-learn. Only the named command's
arguments are added to the parser (``bench``'s list the registries' task and model names,
``solve``'s the families, which imports them), and each command imports what it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import convextx
from convextx._store import BenchError, atomic_path

if TYPE_CHECKING:
    import numpy as np

    from convextx.tasks import Task

#: the arrays of ``bench --data`` (``convextx.tasks.from_arrays``)
DATA_KEYS = ("X_train", "y_train", "X_test", "y_test")


def _names(kind: str, valid: Callable[[], list[str]]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from ``valid()``."""

    def parse(text: str) -> list[str]:
        from convextx import bench

        names = [name.strip() for name in text.split(",") if name.strip()]
        try:
            return bench.check_names(kind, names, valid())
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _seeds(text: str) -> list[int]:
    from convextx import bench

    try:
        return bench.check_seeds([int(s) for s in text.split(",")])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (e.g. --seeds 0,1,2)") from None


def _sizes(text: str) -> list[int]:
    """An argparse type: comma-separated ints (``bench.run`` checks the rest)."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints, e.g. --sizes 64,128,256,512,1024; got {text!r}"
        ) from None


def _settings(text: str) -> dict[str, dict[str, Any]]:
    """An argparse type: JSON {name: {setting: value}}."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('expected {"name": {"setting": value, ...}, ...}')
    return value


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, with the arguments of ``command`` only (None: of none):
    some commands' arguments import the registries, and the others' are not needed."""
    parser = argparse.ArgumentParser(
        prog="convextx",
        description="Train attention by convex optimization and benchmark it against SGD/Adam.",
    )
    parser.add_argument("--version", action="version", version=f"convextx {convextx.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sub = commands.add_parser(name, help=spec.help, description=spec.description)
        if name == command:
            spec.arguments(sub)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first argument that is not an option (the top-level
    options, --help and --version, take no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--out", type=Path, default=Path("convextx-demo"), help="output folder")
    demo.add_argument("--quick", action="store_true", help="fewer training steps (smoke run)")
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars (shown only when stderr is a terminal)",
    )
    demo.add_argument(
        "--force",
        action="store_true",
        help="write into an --out holding a runs.jsonl, leaderboard or plots that the demo did "
        "not write: the demo's runs are appended to runs.jsonl (nothing is deleted), the "
        "leaderboard and plots rewritten",
    )


def _bench_arguments(grid: argparse.ArgumentParser) -> None:
    from convextx import bench, learning_curves, tasks, zoo

    grid.add_argument(
        "--tasks",
        type=_names("tasks", tasks.names),
        default=[],
        help=f"comma-separated, from: {','.join(tasks.names())}",
    )
    grid.add_argument(
        "--data",
        type=Path,
        default=None,
        help="your own task: an .npz with X_train (N, n, d), y_train, X_test (N', n, d) and "
        "y_test (labels of any kind, or float targets), validated as every task "
        "(convextx.tasks.from_arrays) and named after the file; with or instead of --tasks",
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
        "--sizes",
        type=_sizes,
        default=None,
        help="sweep the training-set size: comma-separated, strictly increasing ints, at least "
        f"{learning_curves.FIT_SIZES_NEEDED} + --held-out of them (each run trains on the first N of a permutation of the train "
        "split per seed; the test split is kept); the scaling laws M1-M4 (arXiv 2209.06640) "
        "are fitted on the smaller sizes and their extrapolation error at the held-out largest "
        "written to OUT/scaling.json, OUT/scaling_<task>.png and the leaderboard",
    )
    grid.add_argument(
        "--held-out",
        type=int,
        default=None,
        help="with --sizes: how many of the largest sizes the laws extrapolate to (1)",
    )
    grid.add_argument(
        "--task-cfg", type=_settings, default={}, help='JSON settings per task: {"digits": {...}}'
    )
    grid.add_argument(
        "--model-cfg",
        type=_settings,
        default={},
        help='JSON settings per model: {"simplex-adam": {"steps": 500}}',
    )
    grid.add_argument(
        "--fresh",
        action="store_true",
        help="recompute every run of the grid, even those already stored: the new rows are "
        "appended to OUT/runs.jsonl and supersede the old ones, which stay in the file",
    )
    grid.add_argument(
        "--force",
        action="store_true",
        help="write into an --out holding a leaderboard or plots but no runs.jsonl (rewrites them)",
    )
    grid.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars (shown only when stderr is a terminal)",
    )


def _solve_arguments(solve: argparse.ArgumentParser) -> None:
    from convextx.estimator import SOLVERS
    from convextx.programs import KINDS, LOSSES

    solve.add_argument("--data", type=Path, required=True, help=".npz holding X and y")
    solve.add_argument("--kind", choices=KINDS, default="vector")
    solve.add_argument("--beta", type=float, required=True, help="weight decay (> 0)")
    solve.add_argument("--loss", choices=LOSSES, default=None, help="default: from y's dtype")
    solve.add_argument("--solver", choices=SOLVERS, default="fista")
    solve.add_argument("--tol", type=float, default=None, help="relative duality gap")
    solve.add_argument("--max-iter", type=int, default=10_000)
    _out_arguments(
        solve,
        ".npz for the fitted model (ConvexAttention.save: coef, heads_*, metadata; read "
        "by ConvexAttention.load and convextx predict; .npz is appended to a name without it)",
    )


def _predict_arguments(predict: argparse.ArgumentParser) -> None:
    predict.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a saved model (ConvexAttention.save, convextx solve --out)",
    )
    predict.add_argument("--data", type=Path, required=True, help=".npz holding X (N, n, d)")
    _out_arguments(
        predict,
        ".npz for predictions (and proba, for classifiers; .npz is appended to a name "
        "without it); without --out, only the summary is printed",
    )


def _out_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out`` (help ``what``) and the ``--force`` that lets it overwrite a file."""
    parser.add_argument("--out", type=Path, default=None, help=what)
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only in a terminal (a log gets no escape codes) and without --no-progress."""
    return not args.no_progress and sys.stderr.isatty()


def _demo(args: argparse.Namespace) -> None:
    from convextx import bench, report

    print(
        f"convextx demo: digits (8 row tokens of 8 pixels, 10 classes), beta={bench.DEMO_BETA}, "
        f"models {', '.join(bench.DEMO_MODELS)}{' (quick)' if args.quick else ''}"
    )
    result = bench.demo(args.out, quick=args.quick, progress=_progress(args), force=args.force)
    print()
    print(report.table(result.rows))
    print(
        "\ntrain objective: the sum over training samples of the cross-entropy, plus the weight\n"
        "decay for the simplex-attention architecture (convex-fista, simplex-adam), whose convex\n"
        "program's global optimum is certified to lie in [certified optimum - gap, certified optimum].\n"
        "The transformer has no weight decay: its objective is not on that scale."
    )
    print(f"\nwrote {', '.join(str(f) for f in result.files)}")


def _data_task(path: Path) -> Task:
    """The task of the user's arrays ``DATA_KEYS`` in the .npz ``path``, named after the file."""
    from convextx import tasks

    arrays = _load_npz(path, DATA_KEYS)
    try:
        return tasks.from_arrays(*arrays, name=path.stem)
    except (TypeError, ValueError) as error:
        raise type(error)(f"--data {path}: {error}") from None


def _bench(args: argparse.Namespace) -> None:
    from convextx import bench

    if not args.tasks and args.data is None:
        raise ValueError("give --tasks, --data or both")
    if args.held_out is not None and args.sizes is None:
        raise ValueError("--held-out needs --sizes (the sizes it holds out)")
    given = {} if args.data is None else {args.data.stem: _data_task(args.data)}
    result = bench.run(
        [*args.tasks, *given],
        args.models,
        args.seeds,
        args.out,
        task_cfg=args.task_cfg,
        model_cfg=args.model_cfg,
        budget_seconds=args.budget,
        device=args.device,
        resume=not args.fresh,
        force=args.force,
        progress=_progress(args),
        given_tasks=given,
        sizes=args.sizes,
        held_out=1 if args.held_out is None else args.held_out,
    )
    print(f"{result.ran} runs computed, {result.skipped} found in {args.out / bench.RUNS_FILE}")
    if result.retried:
        print(f"{result.retried} of the computed runs retried a stored failed run")
    if result.ignored:
        print(
            f"{result.ignored} stored runs of other configurations ignored (other settings, "
            "budget, device or convextx version; not in this leaderboard)"
        )
    print()
    print((args.out / bench.LEADERBOARD_FILE).read_text())
    print(f"wrote {', '.join(str(f) for f in result.files)}")


def _numeric(path: Path, data: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """Array ``key`` of an open npz, as stored; ValueError unless it holds numbers."""
    import numpy as np

    try:
        array = data[key]
    except ValueError:  # numpy refuses object arrays without pickle
        raise ValueError(
            f"--data {path}: {key} is an object array, which is not loaded (no pickles); "
            "store a numeric array"
        ) from None
    if not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)):
        raise ValueError(f"--data {path}: {key} must hold numbers; it holds dtype {array.dtype}")
    return array


def _open_npz(path: Path, keys: Sequence[str]) -> np.lib.npyio.NpzFile:
    """The open archive at ``path`` (no pickles); ValueError if it is not an .npz archive
    (``keys``: what it should hold, for the message)."""
    import numpy as np

    if not path.is_file():
        raise ValueError(f"--data {path}: {'a folder' if path.is_dir() else 'no such file'}")
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError):  # ValueError: neither .npy, .npz nor a pickle allowed
        raise ValueError(f"--data {path} is not an .npz archive (np.savez)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            f"--data {path} is a single .npy array; expected an .npz with {', '.join(keys)}"
        )
    return data


def _load_npz(path: Path, keys: Sequence[str]) -> tuple[np.ndarray, ...]:
    """The arrays ``keys`` of an .npz file, as stored; ValueError naming what is missing or not
    numeric."""
    with _open_npz(path, keys) as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ValueError(f"--data {path} lacks {missing}; it holds {sorted(data.files)}")
        return tuple(_numeric(path, data, key) for key in keys)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through symbolic or hard links)."""
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _check_out(out: Path, inputs: Sequence[Path], force: bool) -> Path:
    """``out`` (an output file), checked before any work: its folder exists and is writable, it
    is not a folder nor one of ``inputs``, and it does not exist unless ``force``."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; expected a file name")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder {folder} is not writable")
    clash = [str(path) for path in inputs if _same_file(out, path)]
    if clash:
        raise ValueError(f"--out {out} is the input {clash[0]}; choose another file")
    if out.exists() and not force:
        raise ValueError(f"--out {out} exists; pass --force to overwrite it")
    return out


def _npz_name(path: Path) -> Path:
    """The file ``np.savez`` writes for ``path``: .npz appended unless it ends so."""
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _solve(args: argparse.Namespace) -> None:
    from convextx.estimator import ConvexAttention

    out = None if args.out is None else _check_out(_npz_name(args.out), [args.data], args.force)
    X, y = _load_npz(args.data, ("X", "y"))
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
    print(f"heads          {est.attention_.shape[0]}")
    print(f"time           {seconds:.3f} s (solve {result.seconds:.3f} s)")
    if out is not None:
        est.save(out, force=args.force)
        heads = ", ".join(f"heads_{k}" for k in est.heads_)
        print(f"wrote          {out} (the model: coef, {heads}; convextx predict --model)")


def _summary(est: Any, predictions: np.ndarray) -> str:
    """Counts per class (classification) or the range and mean (regression) of predictions."""
    import numpy as np

    if est.classes_ is None:
        return (
            f"min {predictions.min():.4g}, mean {predictions.mean():.4g}, "
            f"max {predictions.max():.4g}"
        )
    labels, counts = np.unique(predictions, return_counts=True)
    return "counts " + ", ".join(
        f"{label}: {count}" for label, count in zip(labels, counts, strict=True)
    )


def _predict(args: argparse.Namespace) -> None:
    import numpy as np

    from convextx.estimator import ConvexAttention

    inputs = [args.data, args.model]
    out = None if args.out is None else _check_out(_npz_name(args.out), inputs, args.force)
    est = ConvexAttention.load(args.model)
    (X,) = _load_npz(args.data, ("X",))
    arrays = {"predictions": est.predict(X)}
    if est.classes_ is not None:
        arrays["proba"] = est.predict_proba(X)
    print(f"model          kind {est.kind}, loss {est.loss_}, beta {est.beta:g} ({args.model})")
    print(f"data           X {X.shape} ({args.data})")
    print(f"predictions    {arrays['predictions'].shape}: {_summary(est, arrays['predictions'])}")
    if out is not None:
        with atomic_path(out) as temporary:
            np.savez(temporary, **arrays)
        print(f"wrote          {out} ({', '.join(arrays)})")


class _Command(NamedTuple):
    """A command: its one-line help, its description, what adds its arguments, what runs it."""

    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


COMMANDS = {
    "demo": _Command(
        "certified convex attention vs Adam vs a softmax transformer on digits",
        "Fit the certified convex attention classifier, the same architecture by Adam, and a "
        "softmax transformer on the digits task; print a table and save a plot.",
        _demo_arguments,
        _demo,
    ),
    "bench": _Command(
        "run a (task, model, seed) grid; resumable; writes a leaderboard and plots",
        "Run every (task, model, seed), appending to OUT/runs.jsonl, then write "
        "OUT/leaderboard.md and PNG plots from this grid's runs. Each run is keyed on its whole "
        "configuration (task and model settings, seed, budget, device, convextx version): a "
        "rerun skips the configurations already done, retries the failed ones, and ignores (and "
        "counts) stored runs of other configurations.",
        _bench_arguments,
        _bench,
    ),
    "solve": _Command(
        "solve a convex attention program on your arrays (npz with X and y)",
        "Fit convextx.ConvexAttention on X (N, n, d) and y from an .npz file, print the "
        "certificate, and save the model with --out.",
        _solve_arguments,
        _solve,
    ),
    "predict": _Command(
        "predict with a saved model on your arrays (npz with X)",
        "Load a model saved by ConvexAttention.save or convextx solve --out, predict on X "
        "(N, n, d) from an .npz file, print a summary, and write the predictions (and class "
        "probabilities, for classifiers) with --out.",
        _predict_arguments,
        _predict,
    ),
}
#: what a user's input can raise (see the module docstring); anything else is a bug
USER_ERRORS = (ValueError, TypeError, KeyError, OSError, BenchError)


def _message(error: BaseException) -> str:
    """One line for a user error: its message (a KeyError's key is quoted by ``str``)."""
    keyed = isinstance(error, KeyError) and error.args
    text = f"missing {error.args[0]!r}" if keyed else str(error)
    return " ".join(text.split()) or type(error).__name__


def _one_line_warnings(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` printing ``convextx COMMAND: warning: ...`` to stderr."""

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        print(f"convextx {command}: warning: {message}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``convextx`` console script; returns the exit status: 0, 2 for a
    user error (one line on stderr), 130 when interrupted."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(_named_command(argv)).parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(args.command)
            COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as error:
        print(f"convextx {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
