"""The GPU suite in one command, sized for 8 minutes of one device: ``bash experiments/gpu_run.sh``.

Runs ``experiments.bench_solvers --gpu-plan`` (``_bench_plans``, mode "gpu") step by step, each
step a process with its own time limit, so that a slow step costs its limit and no more:

1. ``gpu-targets``: T5, working-set FISTA on 1e8 variables (P3: N=2000, d=500, P=2e5) to a
   1e-4 gap on the GPU;
2. ``gpu-epsilon``: the ladder (P3 from 1e3 to 1e7 variables, P3 with n = 8 tokens and P1/P2
   to 1e6), FISTA and working sets to 1e-4 / 1e-6 / 1e-8, cold and warm, Adam/SGD to 1e4;
3. ``gpu-dtype``: float32 against float64 iterations;
4. ``cpu-epsilon``: the same ladder on the machine's CPU (CPU vs GPU, side by side);
5. ``gpu-sharded``: the samples sharded over every GPU, against one (only with several GPUs;
   with one it is recorded as skipped).

Each ``bench_solvers`` step writes its rows to ``OUT/gpu`` or ``OUT/cpu`` after every measurement
(a step stopped at its limit keeps the rows it finished). ``OUT/gpu_run.json`` (written
atomically after every step) names the device and gives each step's status ("ok", "failed" with
the end of its log, or "time_limit"), seconds and the targets' verdicts. Plots and the Markdown are
made later from the JSON on any machine: ``python -m experiments.bench_solvers --report-only
--out OUT/gpu``.

Nothing is installed: the repository is put on ``PYTHONPATH``, so the machine needs JAX with its
GPU plugin, optax, scikit-learn, scipy and tqdm (cvxpy is not used). ``--smoke`` runs every step
on the CPU at the micro plan in seconds: the test of this script.

    bash experiments/gpu_run.sh [OUT]          # OUT: $OUT, else experiments/results/gpu_run
    python -m experiments.gpu_suite --out DIR --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from experiments import _common

ROOT = _common.ROOT
DEFAULT_OUT = ROOT / "experiments" / "results" / "gpu_run"
PROBE = (
    "import json, jax; d = jax.devices()[0]; print(json.dumps({'backend': jax.default_backend(),"
    " 'device': getattr(d, 'device_kind', str(d)), 'device_count': jax.device_count(),"
    " 'jax': jax.__version__}))"
)


class Step(NamedTuple):
    """One ``bench_solvers`` process: its name, device ("gpu" or "cpu"), suites and limit."""

    name: str
    device: str
    suites: tuple[str, ...]
    seconds: float


STEPS = (
    Step("gpu-targets", "gpu", ("targets",), 150.0),
    Step("gpu-epsilon", "gpu", ("epsilon",), 110.0),
    Step("gpu-dtype", "gpu", ("dtype",), 40.0),
    Step("cpu-epsilon", "cpu", ("epsilon",), 90.0),
    Step("gpu-sharded", "gpu", ("sharded",), 60.0),
)
SMOKE_SECONDS = 120.0  # each step's limit with --smoke


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT, else results")
    parser.add_argument("--smoke", action="store_true", help="every step on the CPU, micro plan")
    parser.add_argument(
        "--force", action="store_true", help="write into an OUT that holds an earlier run"
    )
    args = parser.parse_args(argv)
    args.out = args.out or Path(os.environ.get("OUT") or DEFAULT_OUT)
    return args


def environment() -> dict[str, str]:
    """The steps' environment: the repository importable, output unbuffered."""
    return _common.repository_environment() | {"PYTHONUNBUFFERED": "1"}


def probe(env: dict[str, str]) -> dict:
    """What JAX sees on this machine (its default backend, first device, count, version)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    if out.returncode:
        raise RuntimeError(f"JAX did not start: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def outputs(out: Path) -> list[Path]:
    """The files of an earlier run in ``out`` (the summary and the steps' JSON)."""
    paths = [out / "gpu_run.json"]
    paths += [out / device / "bench_solvers.json" for device in ("gpu", "cpu")]
    return [path for path in paths if path.exists()]


def command(step: Step, out: Path, smoke: bool, fresh: bool) -> list[str]:
    """The step's ``bench_solvers`` command; ``fresh``: its folder's earlier rows are dropped."""
    return [
        sys.executable, "-m", "experiments.bench_solvers", "--micro" if smoke else "--gpu-plan",
        "--device", "cpu" if smoke else step.device, "--suites", *step.suites,
        "--out", str(out / step.device), "--no-plots", "--no-progress",
        *(["--fresh"] if fresh else []),
    ]  # fmt: skip


def run_step(step: Step, out: Path, env: dict[str, str], smoke: bool, fresh: bool) -> dict:
    """One step in its own process, stopped at its limit; its status, seconds and log's end."""
    limit = SMOKE_SECONDS if smoke else step.seconds
    (out / step.device).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command(step, out, smoke, fresh), env=env, cwd=ROOT, capture_output=True,
            text=True, timeout=limit,
        )  # fmt: skip
        status = "ok" if done.returncode == 0 else "failed"
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        status = "time_limit"
        log = "".join(
            s.decode(errors="replace") if isinstance(s, bytes) else s or ""
            for s in (err.stdout, err.stderr)
        )
    row = {"step": step.name, "status": status, "seconds": time.perf_counter() - start}
    row |= {"limit_s": limit, "log_tail": log[-2000:]}
    return row


def verdicts(out: Path) -> dict:
    """The targets' verdicts of the GPU rows (``bench_solvers``' report), if any were written."""
    from experiments import _bench_report as report

    path = out / "gpu" / "bench_solvers.json"
    if not path.exists():
        return {}
    return report.targets(report.Store(path).data)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    summary_path = args.out / "gpu_run.json"
    earlier = outputs(args.out)
    if earlier and not args.force:
        raise SystemExit(
            f"{args.out} holds an earlier run ({', '.join(map(str, earlier))}): pass --force to "
            "replace it, or another --out"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    machine = probe(env)
    if machine["backend"] != "gpu" and not args.smoke:
        raise SystemExit(
            f"no GPU visible to JAX (backend {machine['backend']!r}); install JAX's GPU plugin, "
            "or pass --smoke for the CPU smoke test"
        )
    summary = {"machine": machine, "smoke": args.smoke, "started": time.strftime("%F %T")}
    summary["steps"], started = [], set()
    for step in STEPS:
        if step.suites == ("sharded",) and machine["device_count"] < 2:
            row = {"step": step.name, "status": "skipped", "reason": "one device: nothing to shard"}
        else:
            print(f"{step.name}: at most {step.seconds:.0f} s", flush=True)
            row = run_step(step, args.out, env, args.smoke, fresh=step.device not in started)
            started.add(step.device)
        summary["steps"].append(row)
        _common.write_json(summary_path, summary)
    summary["targets"] = verdicts(args.out)
    _common.write_json(summary_path, summary)
    for row in summary["steps"]:
        print(f"{row['step']}: {row['status']}", flush=True)
    return summary


if __name__ == "__main__":
    main()
