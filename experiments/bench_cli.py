"""Start-up time of the ``convextx`` command: each command line in a fresh process, median of
``--repeats`` runs (a benchmark, not a test: the times depend on the machine and its load).

Timed: ``convextx --help`` and ``--version`` (which import no NumPy, JAX, cvxpy nor
scikit-learn), ``convextx bench --help`` (its arguments list the task and model registries, so it
imports them), and for reference ``python -c "import convextx.bench"``: the stack that every
command line imported before the CLI's imports were lazy.

    python -m experiments.bench_cli   # about 30 s; writes experiments/results/bench_cli.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from experiments import _common


def convextx_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m convextx.cli``."""
    script = shutil.which("convextx", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "convextx.cli"]


def command_lines() -> dict[str, list[str]]:
    """What is timed, by label."""
    cli = convextx_command()
    return {
        "convextx --help": [*cli, "--help"],
        "convextx --version": [*cli, "--version"],
        "convextx bench --help": [*cli, "bench", "--help"],
        "import convextx.bench (the eager stack)": [sys.executable, "-c", "import convextx.bench"],
    }


def seconds(argv: list[str]) -> float:
    """Wall seconds of one run of ``argv`` in a fresh process (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, dict[str, float]]:
    """Median, min and max seconds of each command line over ``repeats`` interleaved runs."""
    lines = command_lines()
    times: dict[str, list[float]] = {label: [] for label in lines}
    for _ in range(repeats):
        for label, argv in lines.items():
            times[label].append(seconds(argv))
    return {
        label: {"median": statistics.median(t), "min": min(t), "max": max(t)}
        for label, t in times.items()
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command line (5)")
    parser.add_argument("--out", type=Path, default=_common.results_dir() / "bench_cli.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    load_before = os.getloadavg()
    timings = measure(args.repeats)
    result = {
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "seconds": timings,
    }
    print(f"{'command line':42s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for label, t in timings.items():
        print(f"{label:42s} {t['median']:9.3f} {t['min']:7.3f} {t['max']:7.3f}")
    print(f"wrote {_common.write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
