"""Solver speed and scale: FISTA vs cvxpy (Clarabel, SCS) vs Adam/SGD on the programs P1-P3.

Suites (all side by side in one process, so ratios share the machine's load):

- epsilon: time to relative duality gap 1e-4, 1e-6, 1e-8 of FISTA and of working-set FISTA
  (P3; cold = compile included, warm), cvxpy+Clarabel and cvxpy+SCS (subprocess, time limit), and the objective Adam and SGD
  reach on the nonconvex twin (``baselines.heads`` + ``baselines.train``, objective = sum loss +
  exact weight decay) in at least FISTA's wall time, as relative suboptimality vs the certified
  optimum.
- scaling: FISTA per-iteration time and time to 1e-6 vs N, n, d, P (log-log slopes).
- matmul: FISTA per-iteration time vs one forward + one adjoint of the map (in one compiled
  loop), and the map's GFLOP/s vs a square GEMM's.
- dtype: float32 vs float64.   sharded: 4 forced host devices, same optimum.
- working_set: ``solvers.screening.solve_working_set`` (data-slicing restriction, gap-safe
  screening) vs plain FISTA as the solution gets sparser.
- targets: the issue-9 targets T1-T4, printed as holds / fails.

    python -m experiments.bench_solvers               # default: P3 to 1e7 variables (working
                                                      # sets; plain FISTA to 1e5), ~25 min CPU
    python -m experiments.bench_solvers --quick       # smaller; --micro: seconds (smoke test)
    python -m experiments.bench_solvers --full        # + plain FISTA and P1/P2 to 1e7, cvxpy
                                                      # to 1e4 (hours on CPU; for a GPU)
    python -m experiments.bench_solvers --suites targets matmul --device cpu --out DIR
    bash experiments/gpu_run.sh                       # --gpu-plan on a GPU and on the CPU

Writes DIR/bench_solvers.json after every measurement (a rerun with the same DIR skips rows
already there: resume a killed run; --fresh starts over), then DIR/bench_solvers.md and PNGs
(--report-only: just rewrite those from the JSON).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

SUITES = ("epsilon", "scaling", "matmul", "dtype", "sharded", "working_set", "targets")
DEFAULT_OUT = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--micro", action="store_true", help="tiny sizes (smoke test)")
    size.add_argument("--quick", action="store_true", help="smaller sizes")
    size.add_argument("--full", action="store_true", help="largest sizes (hours on CPU)")
    size.add_argument(
        "--gpu-plan", action="store_true", help="the plan of experiments/gpu_run.sh (minutes)"
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument("--cvxpy-timeout", type=float, default=None, help="seconds per solve")
    parser.add_argument("--fresh", action="store_true", help="ignore earlier rows in --out")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the Markdown and plots from the JSON"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    flags = {"micro": args.micro, "quick": args.quick, "full": args.full, "gpu": args.gpu_plan}
    args.mode = next((mode for mode, given in flags.items() if given), "default")
    return args


def _configure_jax(device: str):
    """Platform and x64 must be set before JAX starts a backend."""
    import jax

    jax.config.update("jax_platforms", "cuda" if device == "gpu" else "cpu")
    jax.config.update("jax_enable_x64", True)
    return jax


def machine_info(jax) -> dict:
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "load_average": list(os.getloadavg()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    jax = _configure_jax(args.device)
    from experiments import _bench_report as report
    from experiments import _bench_suites as suites
    from experiments._bench_plans import make_plan

    plan = make_plan(args.mode)
    if args.cvxpy_timeout is not None:
        import dataclasses

        plan = dataclasses.replace(plan, cvxpy_timeout=args.cvxpy_timeout)
    store = report.Store(args.out / "bench_solvers.json", fresh=args.fresh)
    if not args.report_only:
        store.add_run({"mode": args.mode, "suites": args.suites, **machine_info(jax)})
        for name in dict.fromkeys(args.suites):  # in the order given
            getattr(suites, f"run_{name}")(plan, store, progress=not args.no_progress)
        store.finish_run({"load_average_end": list(os.getloadavg())})
    verdicts = report.targets(store.data)
    markdown = report.markdown(store.data, verdicts)
    (args.out / "bench_solvers.md").write_text(markdown)
    if not args.no_plots:
        report.plots(store.data, args.out)
    print(report.verdict_lines(verdicts))
    return {"store": store.data, "targets": verdicts}


if __name__ == "__main__":
    main()
