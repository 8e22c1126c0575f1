"""Helpers shared by the experiment scripts: the CLI, result files and plots.

Every script runs at one of three sizes, chosen on the command line:

- ``--quick``: tiny, seconds (tests, smoke runs);
- default: the reduced CPU run (minutes on two cores);
- ``--full``: the paper-scale run (meant for a GPU).

Results go to ``results_dir()`` (experiments/results/) as JSON, rewritten after each unit of work
(``write_json``, through the bench store's atomic writer ``convextx._store.write_text``: a file is
never half written) so a killed run keeps what it finished and ``read_json`` can resume it; plots
go next to the JSON (``save_plot``, also atomic).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from convextx import _store

SIZES = ("quick", "default", "full")


ROOT = Path(__file__).resolve().parents[1]  # the repository


def repository_environment() -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH, for subprocesses
    that import the package from the source tree (installed or not)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def results_dir() -> Path:
    """experiments/results/, created if missing."""
    path = Path(__file__).resolve().parent / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_args(
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """Parse the common flags, plus those ``extra(parser)`` adds.

    Common flags: ``--quick`` / ``--full`` (mutually exclusive; ``args.size`` is "quick",
    "default" or "full"), ``--seeds S [S ...]`` (alias ``--seed``; None when not given, so each
    size picks its own), ``--out PATH`` (the JSON file; None when not given, see ``out_path``),
    ``--resume`` (keep the finished units of a matching earlier JSON), ``--no-progress``.
    """
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny run (seconds; tests)")
    size.add_argument("--full", action="store_true", help="paper-scale run (GPU)")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=None, dest="seeds")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (PNG next to it)")
    parser.add_argument("--resume", action="store_true", help="reuse units of a matching --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.size = "full" if args.full else "quick" if args.quick else "default"
    if args.seeds is not None and (len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0):
        parser.error(f"--seeds must be distinct ints >= 0, got {args.seeds}")
    return args


def out_path(args: argparse.Namespace, name: str) -> Path:
    """``args.out`` if given, else results_dir()/name.json (name_quick / name_full by size)."""
    if args.out is not None:
        return Path(args.out)
    suffix = "" if args.size == "default" else f"_{args.size}"
    return results_dir() / f"{name}{suffix}.json"


def to_jsonable(obj: Any) -> Any:
    """numpy / jax arrays and scalars as lists and Python numbers; NaN and inf as None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        array = np.asarray(obj)
        return to_jsonable(array.tolist()) if array.ndim else to_jsonable(array.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` (made JSON-safe by ``to_jsonable``) to ``path`` atomically; returns path.
    ``indent=None`` writes compactly (large curves)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _store.write_text(path, json.dumps(to_jsonable(obj), indent=indent) + "\n")


def resumed(args: argparse.Namespace, path: str | os.PathLike, cfg: Any, field: str) -> list[Any]:
    """The entries under ``field`` of the JSON at ``path`` when ``--resume`` is given and that
    JSON was written with the same ``cfg``; else [] (a fresh run)."""
    previous = read_json(path) if args.resume else None
    same = previous is not None and previous.get("config") == to_jsonable(cfg)
    return list(previous[field]) if same else []


def save_progress(
    path: str | os.PathLike,
    results: dict[str, Any],
    records: list[Any],
    summarize: Callable[[list[Any]], Any],
) -> None:
    """Write ``results`` with the summary of the ``records`` so far (after each unit of work)."""
    results["summary"] = summarize(records)
    write_json(path, results)


def finish(
    path: str | os.PathLike,
    results: dict[str, Any],
    records: list[Any],
    summarize: Callable[[list[Any]], Any],
    plot: Callable[[dict[str, Any], Path], Path],
) -> dict[str, Any]:
    """The final results: the summary of every record, written, then ``plot(results, path)``
    beside the JSON; returns them with the plot's path under "plot"."""
    results = to_jsonable(results | {"summary": summarize(records)})
    write_json(path, results)
    results["plot"] = str(plot(results, Path(path)))
    return results


def run_experiment(
    argv: list[str] | None,
    parse: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    name: str,
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """An experiment's ``main`` up to its own printing: float64 on, ``parse(argv)``,
    ``run(args)`` (a result with a "plot" path), and where the JSON and the plot went."""
    import jax

    jax.config.update("jax_enable_x64", True)
    args = parse(argv)
    results = run(args)
    print(f"wrote {out_path(args, name)} and {results['plot']}")
    return args, results


def read_json(path: str | os.PathLike) -> Any:
    """The JSON at ``path``, or None if there is none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def save_plot(fig: Any, path: str | os.PathLike, dpi: int = 60) -> Path:
    """Save a matplotlib figure as PNG (``path`` with suffix .png) and close it; returns path."""
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _store.atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=dpi, bbox_inches="tight", format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def figure(rows: int, cols: int, size: tuple[float, float] = (4.0, 3.2)) -> tuple[Any, Any]:
    """A headless matplotlib figure with a (rows, cols) grid of axes (always a 2-D array)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, constrained_layout=True
    )
    return fig, axes
