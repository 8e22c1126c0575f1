"""This package against the group-lasso solvers a user would otherwise pick, at equal CERTIFIED
accuracy (issue 19, deliverable 1).

Problem: the gated-ReLU group lasso in the peers' own setting, one token (n = 1). Features X
(N, d) and y from ``experiments._bench_programs.make_data`` (a planted gated-ReLU teacher plus
noise), P random gate vectors, ``D_j = diag(1[X g_j >= 0])``, design
``A = [D_1 X, ..., D_P X]`` (N, P d) with one group of d weights per gate. It is this
package's program ``convextx.convex_program(X[:, None, :], y, "gated", gates=P)`` (gates with
duplicate patterns dropped) at beta = ``--beta-ratio`` x beta_max, and every contestant is given
the same instance: X, y, the kept gates and beta (``experiments._peers.Instance``).

Loss scaling and lambda mapping (squared loss; l = log(1 + exp(-y p)) for ``--loss logistic``):

- this package (``solvers.losses``: a SUM over samples, 1/2 for the squared loss):
  ``F(W) = 1/2 sum_i (y_i - (A w)_i)^2 + beta sum_j |W_j|_2``;
- skglm (QuadraticGroup / LogisticGroup + WeightedGroupL2, weights 1) and celer (GroupLasso,
  weights 1): ``1/(2N) |y - A w|^2 + alpha sum_j |W_j|_2``, so alpha = beta / N;
- pyscnn (ConvexGatedReLU + NeuronGL1, R-FISTA): its squared loss is divided by
  ``2 N c`` (c = 1 output): ``1/(2N) |y - sum_j D_j X U_j|^2 + lam sum_j |U_j|_2``, so
  lam = beta / N. Its ``unitize_data`` (on by default) rescales the columns of X, which
  changes the gate patterns and the penalty: it is turned off. It keeps the gates with
  distinct nonzero patterns, sorted; its weights are mapped back by gate (``align_gates``);
- adelie (grpnet, gaussian GLM, weights 1/N by default):
  ``sum_i 1/N (-y_i eta_i + eta_i^2 / 2) + lam sum_j w_j |b_j|_2``
  = ``1/(2N) |y - A b|^2 - |y|^2 / (2N) + ...``, so lam = beta / N with penalty factors
  w_j = 1 (adelie's default is sqrt(group size)), no intercept, alpha = 1. Binomial: labels
  (y + 1) / 2, the same lam.

Each peer's objective is therefore F / N (up to a constant for adelie): the same minimizer. The
tests (tests/test_bench_peers.py) check it: each peer's solution, re-scored here, has the
reference objective.

Scoring: every output (the peers' weights mapped back to this package's variable Z (P, 1, 1, d))
is re-scored by this package's objective (``solvers.certificate.certify``, float64) against a
reference optimum: FISTA at tol 1e-12 in float64 with polish=True (for at most 60 s), cross-
checked by the best peer; F* is the lowest objective of all of them (the reference's dual
bound certifies how close F* is to the optimum), and the TRUE relative suboptimality is
``(F(W) - F*) / |F*|``. Each solver's tol means something else (a duality gap relative to
max(1, |F|) here; the largest subdifferential distance for skglm; a gap scaled by |y|^2 / N
for celer; the squared minimum-norm subgradient for pyscnn; a coordinate-descent tolerance for
adelie), so each one's tol is swept (``Contestant.tols``, loosest first, stopping at the
first tol that reaches 1e-8) and the fastest run reaching 1e-4, 1e-6 and 1e-8 true relative
suboptimality is reported.

Timing (all contestants in their own processes, through the runner ``experiments/_peers.py``):

- warm: one process per contestant imports and sets up once, then solves on request; a pass
  over every tol (untimed: it finds the tol sweep and warms every tol up) is followed by
  ``--repeats`` timed passes. The time is the solve call alone. Medians of the repeats.
- cold: a NEW process per solve, timed from before the import of the solver to its solution:
  import, setup (the design matrix for skglm, celer and adelie; gate patterns and the program
  here), compilation (XLA here, numba for skglm) and the solve. Run at the tols the warm sweep
  selected (the loosest reaching each target; a solve's outcome does not depend on the
  process). This package is run cold twice over, as ``cold_first`` (CONVEXTX_COMPILATION_CACHE=0:
  a first-ever process, XLA compiles everything) and ``cold_cached`` (JAX's persistent
  compilation cache in a folder that an untimed process at the same tol filled first: a user's
  second process). Peers have one ``cold`` mode.
- repeats are interleaved: repeat r of every contestant runs before repeat r + 1 of any.

Sizes (``SIZES``): 2e3 variables (N=1000, d=20, P=100), 1e4 (N=2000, d=50, P=200), 1e5
(N=2000, d=50, P=2000) by default; ``--large`` adds 1e6 (N=500, d=50, P=20000: skglm, celer
and adelie need the dense design, 8 N P d bytes = 4 GB per process). Targets, printed as holds
or fails at each size:

- P1: this package (its fastest method) is at least 3x faster than the fastest peer to a true
  1e-6 relative suboptimality, COLD (judged for cold_first and for cold_cached);
- P2: a cold solve of this package costs at most 1.3x a warm one plus 0.3 s (its fastest
  method cold at 1e-6, against its warm solve at the same tol).

Installing the peers: ``pip install -e ".[peers]"`` (skglm, celer); pyscnn:
``_peers.PYSCNN_SETUP``; adelie in a separate environment: ``_peers.ADELIE_SETUP`` (path:
``--adelie-venv``). A peer that is not installed is skipped with a note saying how to install it.

    python -m experiments.bench_peers                 # 2e3, 1e4, 1e5 variables, 3 repeats
    python -m experiments.bench_peers --large         # + 1e6 variables
    python -m experiments.bench_peers --quick         # smoke test: 2e3, 1 repeat, cold at 1e-6
    python -m experiments.bench_peers --sizes 1e4 --contestants fista skglm --repeats 5

Writes experiments/results/bench_peers.json (bench_peers_quick.json with --quick; ``--out``)
atomically after every size. Times are wall-clock seconds on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments import _common, _peers_report
from experiments._peers import (
    ADELIE_DEFAULT,
    ADELIE_SETUP,
    CONTESTANTS,
    PACKAGE,
    PEERS,
    Contestant,
    Instance,
    save_instance,
)

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram

ROOT = _common.ROOT
RUNNER = Path(__file__).resolve().parent / "_peers.py"
EPSILONS = (1e-4, 1e-6, 1e-8)
P1_RATIO = 3.0
P2_FACTOR, P2_SLACK_S = 1.3, 0.3
REFERENCE_TOL = 1e-12
REFERENCE_SECONDS = 60.0
TARGET_EPS = 1e-6  # the accuracy at which P1 and P2 are judged
CACHE_MODES = {"cold_first": "0", "cold_cached": None}  # None: the run's own cache folder


@dataclasses.dataclass(frozen=True)
class Size:
    """N samples, d features, P gates (before duplicate patterns are dropped)."""

    N: int
    d: int
    P: int

    @property
    def variables(self) -> int:
        return self.P * self.d


SIZES = {
    "2e3": Size(1000, 20, 100),
    "1e4": Size(2000, 50, 200),
    "1e5": Size(2000, 50, 2000),
    "1e6": Size(500, 50, 20000),
}
DEFAULT_SIZES = ("2e3", "1e4", "1e5")


# ---------------------------------------------------------------------- the instance


def make_instance(
    size: Size, loss: str, beta_ratio: float, seed: int
) -> tuple[ConvexProgram, Instance]:
    """(this package's ConvexProgram, the Instance every contestant gets) for ``size``: a
    planted gated-ReLU teacher (``_bench_programs.make_data``). Logistic labels are
    y >= median(y) as +1 / -1 (balanced classes)."""
    from experiments._bench_programs import Spec, make_data

    X, y = make_data(Spec("gated", N=size.N, n=1, d=size.d, P=size.P, seed=seed))
    if loss == "logistic":
        y = np.where(y >= np.median(y), 1.0, -1.0)
    return gated_instance(X[:, 0, :], y, loss, beta_ratio, size.P, seed)


def gated_instance(
    X: np.ndarray, y: np.ndarray, loss: str, beta_ratio: float, gates: int, seed: int
) -> tuple[ConvexProgram, Instance]:
    """The gated program of features X (N, d) and targets y (N,) with ``gates`` random gates
    (those with duplicate patterns dropped) at beta = beta_ratio x beta_max, and its Instance."""
    import solvers
    from convextx.programs import convex_program

    program = convex_program(
        X[:, None, :], y, kind="gated", beta=1.0, loss=loss, gates=gates, dtype="float64",
        seed=seed,
    )  # fmt: skip
    program = program.with_beta(beta_ratio * solvers.beta_max(program.problem))
    kept = program.gates
    instance = Instance(X, y, kept.u1, kept.u2, float(program.beta), loss)
    if np.any(instance.X @ instance.gate_vectors == 0):
        raise ValueError("a gate score is exactly 0: pyscnn's 1[> 0] and 1[>= 0] would differ")
    if not np.array_equal(instance.patterns(), np.asarray(program.data.D)):
        raise AssertionError("the instance's gate patterns differ from the program's")
    return program, instance


def objective(program: ConvexProgram, weights: np.ndarray) -> float:
    """This package's objective F at weights (P, d), in float64 (the certificate's primal)."""
    from solvers.certificate import certify

    return float(certify(program.problem, np.reshape(weights, program.shape)).primal)


def suboptimality(value: float, optimum: float) -> float:
    """True relative suboptimality (F - F*) / |F*|."""
    return (value - optimum) / abs(optimum)


def reference(
    program: ConvexProgram, time_limit: float = REFERENCE_SECONDS, tol: float = REFERENCE_TOL
) -> dict:
    """This package's FISTA at ``tol`` (1e-12) in float64 with the Newton polish, for at most
    ``time_limit`` seconds of iterations (the polish certifies rounding error on the squared
    loss in a few hundred iterations; on the logistic loss FISTA's tail is slow). Its
    certified gap bounds how far F* can be from the optimum (``optimum_bound``)."""
    result = program.solve(
        method="fista", tol=tol, max_iter=10_000_000, polish=True, time_limit=time_limit
    )
    return {k: v for k, v in result.summary().items() if k != "method"}


# -------------------------------------------------------------------------- processes


def interpreter(contestant: Contestant, adelie_venv: Path) -> str:
    """The Python that runs ``contestant``: this one, or adelie's environment's."""
    return (
        str(adelie_venv / "bin" / "python")
        if contestant.environment == "adelie"
        else sys.executable
    )


def missing(contestant: Contestant, adelie_venv: Path) -> str | None:
    """Why ``contestant`` cannot run (how to install it), or None if it can."""
    python = interpreter(contestant, adelie_venv)
    if contestant.environment == "adelie":
        install = ADELIE_SETUP.format(venv=adelie_venv)
        if not Path(python).exists():
            return f"{contestant.name}: no environment at {adelie_venv}; create it: {install}"
        probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({contestant.module!r}) is None)"
        if subprocess.run([python, "-c", probe], capture_output=True).returncode:
            return f"{contestant.name}: not installed in {adelie_venv}; {install}"
        return None
    if importlib.util.find_spec(contestant.module) is None:
        return f"{contestant.name}: not installed; {contestant.install}"
    return None


def environment(cache: str | None = "0") -> dict[str, str]:
    """The runners' environment: the repository importable, the compilation cache as given
    (CONVEXTX_COMPILATION_CACHE: "0" off, or a folder)."""
    env = _common.repository_environment()
    if cache is not None:
        env["CONVEXTX_COMPILATION_CACHE"] = cache
    return env


def _command(python: str, name: str, instance: Path, *mode: str) -> list[str]:
    return [python, str(RUNNER), "--contestant", name, "--instance", str(instance), *mode]


def _tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


class Worker:
    """A warm runner process (``_peers.py --serve``): set up once, then one solve per request,
    each within ``timeout`` seconds (else the process is killed and the reply is an error).
    ``wait_ready()`` returns (and keeps as ``ready``) its setup reply: several runners can
    start at once."""

    def __init__(self, command: list[str], env: dict, log: Path, timeout: float) -> None:
        self.log, self.timeout = log, timeout
        with log.open("a") as err:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True, cwd=ROOT, env=env,
            )  # fmt: skip
        self.ready: dict = {}

    def wait_ready(self) -> dict:
        if not self.ready:
            self.ready = self._read()
        return self.ready

    def _read(self) -> dict:
        readable, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not readable:
            self.close(kill=True)
            return {"error": f"timed out after {self.timeout:g} s", "timed_out": True}
        line = self.process.stdout.readline()
        if not line:
            self.close()
            return {"error": f"the runner exited: {_tail(self.log)}"}
        return json.loads(line)

    def solve(self, instance: Path, tol: float, weights: Path) -> dict:
        """Solve ``instance`` (the runner sets it up first when it is not its current one)."""
        if self.process.poll() is not None:
            return {"error": "the runner is not running"}
        request = {"instance": str(instance), "tol": tol, "weights": str(weights)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self, kill: bool = False) -> None:
        """End the runner: closing its stdin ends its request loop (``kill``: at once)."""
        if self.process.poll() is not None:
            return
        if not kill:
            self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_runner(name: str, instance: Path, adelie_venv: Path, log: Path, timeout: float) -> Worker:
    """The warm runner (``_peers.py --serve``) of contestant ``name``, set up on ``instance``."""
    python = interpreter(CONTESTANTS[name], adelie_venv)
    return Worker(_command(python, name, instance, "--serve"), environment(), log, timeout)


def cold_solve(command: list[str], env: dict, log: Path, timeout: float) -> dict:
    """One cold runner process (``_peers.py --tol``); ``process_s``: its whole wall time."""
    start = time.perf_counter()
    with log.open("a") as err:
        try:
            done = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env,
                timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:g} s", "timed_out": True}
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"error": f"the runner exited with {done.returncode}: {_tail(log)}"}
    return {**json.loads(lines[-1]), "process_s": time.perf_counter() - start}


# ---------------------------------------------------------------------------- phases


@dataclasses.dataclass
class Bench:
    """One size's measurements: the program (re-scoring), the instance file, the work folder,
    the reference objective (the sweeps' F* until all runs are in) and the options."""

    program: ConvexProgram
    instance: Path
    work: Path
    optimum: float
    adelie_venv: Path
    timeout: float

    def score(self, reply: dict, weights: Path) -> dict:
        """A run row: the reply's times and info, the re-scored objective and suboptimality."""
        if "error" in reply:
            return {"timed_out": False, **reply}
        value = objective(self.program, np.load(weights))
        return {**reply, "objective": value, "subopt": suboptimality(value, self.optimum)}

    def weights(self, name: str) -> Path:
        return self.work / f"{name}.npy"

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"


def reached(row: dict, target: float) -> bool:
    """Whether a scored run got within a true relative suboptimality ``target``."""
    return "error" not in row and row["subopt"] <= target


def _sweep_done(rows: list[dict], tols: Sequence[float], target: float, patience: int = 2) -> bool:
    """A contestant's sweep ends at an error, at the first tol reaching ``target``, when its
    tols are used up, or when its last ``patience`` tols did not improve by 10% on its best
    outcome before them (an iteration cap or a floor: a tighter tol gets no further)."""
    last = rows[-1]
    if "error" in last or reached(last, target) or len(rows) == len(tols):
        return True
    if len(rows) <= patience or any("subopt" not in r for r in rows):
        return False
    before = min(r["subopt"] for r in rows[:-patience])
    return all(r["subopt"] > 0.9 * before for r in rows[-patience:])


def _say(text: str) -> None:
    print(text, flush=True)


def _outcome(row: dict) -> str:
    """A run's last outcome, for the progress lines."""
    if "error" in row:
        return f"error: {row['error'][:200]}"
    seconds = row["seconds"][-1] if row.get("seconds") else row.get("first_s")
    return f"{seconds:.3g} s, subopt {row['subopt']:.1e}"


def sweep(
    bench: Bench, workers: dict[str, Worker], target: float = min(EPSILONS)
) -> dict[str, list[dict]]:
    """Pass 0 (untimed): each contestant's tols, loosest first, interleaved, until one reaches
    a true relative suboptimality ``target``, fails or stalls (``_sweep_done``). A row: tol,
    the re-scored outcome, ``first_s`` (the first solve at that tol in the process,
    compilations included)."""
    runs: dict[str, list[dict]] = {name: [] for name in workers}
    sweeping = [name for name, worker in workers.items() if "error" not in worker.ready]
    for name in workers.keys() - set(sweeping):
        _say(f"  {name}: its runner failed to start: {workers[name].ready['error'][:500]}")
    while sweeping:
        for name in list(sweeping):
            tols = CONTESTANTS[name].tols
            tol = tols[len(runs[name])]
            reply = workers[name].solve(bench.instance, tol, bench.weights(name))
            scored = bench.score(reply, bench.weights(name))
            row = {"tol": tol, "first_s": scored.pop("solve_s", None), **scored, "seconds": []}
            runs[name].append(row)
            _say(f"  sweep {name:<13} tol {tol:.0e}: {_outcome(row)}")
            if _sweep_done(runs[name], tols, target):
                sweeping.remove(name)
    return runs


def warm_phase(bench: Bench, names: Sequence[str], repeats: int) -> dict[str, dict]:
    """Per contestant: {"setup": the runner's import and setup seconds, "runs": [row per tol
    of the sweep]}, each row with ``seconds`` (one per timed pass) and their ``median_s``.
    The timed passes repeat the sweep's tols, contestants interleaved."""
    workers: dict[str, Worker] = {}
    try:
        for name in names:
            workers[name] = start_runner(
                name, bench.instance, bench.adelie_venv, bench.log(name), bench.timeout
            )
        for worker in workers.values():
            worker.wait_ready()
        runs = sweep(bench, workers)
        for repeat in range(repeats):
            for tol_index in range(max(len(r) for r in runs.values())):
                for name, rows in runs.items():
                    if tol_index >= len(rows) or "error" in rows[tol_index]:
                        continue
                    tol = rows[tol_index]["tol"]
                    reply = workers[name].solve(bench.instance, tol, bench.weights(name))
                    if "error" in reply:
                        rows[tol_index]["error"] = reply["error"]
                    else:
                        rows[tol_index]["seconds"].append(reply["solve_s"])
            _say(f"  warm pass {repeat + 1}/{repeats} done")
    finally:
        for worker in workers.values():
            worker.close()
    medians(row for rows in runs.values() for row in rows)
    return {name: {"setup": workers[name].ready, "runs": runs[name]} for name in names}


def selected_tols(runs: list[dict], epsilons: Sequence[float]) -> list[float]:
    """The loosest tol of a sweep reaching each of ``epsilons`` (each at most once)."""
    chosen = []
    for eps in epsilons:
        hit = next((r["tol"] for r in runs if "error" not in r and r["subopt"] <= eps), None)
        if hit is not None and hit not in chosen:
            chosen.append(hit)
    return chosen


def cold_modes(name: str) -> dict[str, str | None]:
    """{mode: CONVEXTX_COMPILATION_CACHE} of a contestant's cold runs (peers: "cold")."""
    return CACHE_MODES if CONTESTANTS[name].package else {"cold": "0"}


def cold_phase(
    bench: Bench, tols: dict[str, list[float]], repeats: int
) -> dict[str, dict[str, list[dict]]]:
    """Per contestant and cold mode: a row per tol, with ``seconds`` = the runner's total_s of
    each repeat (import + setup + solve) and their ``median_s``. The cached mode's folder is
    filled first by an untimed process at each tol."""
    cache = str(bench.work / "jax-cache")
    env = {mode: environment(cache if v is None else v) for mode, v in CACHE_MODES.items()}
    env["cold"] = environment()

    def command(name: str, tol: float) -> list[str]:
        python = interpreter(CONTESTANTS[name], bench.adelie_venv)
        weights = str(bench.weights(name))
        return _command(python, name, bench.instance, "--tol", repr(tol), "--weights", weights)

    for name in (n for n in tols if CONTESTANTS[n].package):
        for tol in tols[name]:
            cold_solve(command(name, tol), env["cold_cached"], bench.log(name), bench.timeout)
    out = {
        n: {m: [{"tol": t, "seconds": [], "process_s": []} for t in tols[n]] for m in cold_modes(n)}
        for n in tols
    }
    jobs = [
        (name, mode, rows[i])
        for i in range(max((len(t) for t in tols.values()), default=0))
        for name, modes in out.items()
        for mode, rows in modes.items()
        if i < len(rows)
    ]  # interleaved: by tol, then contestant, then mode
    keep = ("objective", "subopt", "import_s", "setup_s", "solve_s", "info")
    for _ in range(repeats):
        for name, mode, row in (job for job in jobs if "error" not in job[2]):
            reply = cold_solve(command(name, row["tol"]), env[mode], bench.log(name), bench.timeout)
            scored = bench.score(reply, bench.weights(name))
            if "error" in scored:
                row["error"] = scored["error"]
            else:
                row["seconds"].append(scored["total_s"])
                row["process_s"].append(scored["process_s"])
                row |= {k: scored[k] for k in keep}
            _say(f"  {mode:<11} {name:<13} tol {row['tol']:.0e}: {_outcome(row)}")
    medians(row for _, _, row in jobs)
    return out


def medians(rows: Iterable[dict]) -> None:
    """Set each row's ``median_s`` (None without a timed run), in place."""
    for row in rows:
        row["median_s"] = statistics.median(row["seconds"]) if row["seconds"] else None


# ----------------------------------------------------------------------- summaries


def fastest(rows: Sequence[dict], eps: float) -> dict | None:
    """The run with the least median seconds among those reaching ``eps`` (None if none)."""
    reached = [r for r in rows if r.get("median_s") is not None and r["subopt"] <= eps]
    if not reached:
        return None
    best = min(reached, key=lambda r: r["median_s"])
    return {"tol": best["tol"], "median_s": best["median_s"], "subopt": best["subopt"]}


def rescore(rows: Iterable[dict], optimum: float) -> None:
    """Recompute the suboptimality of every scored row against the final F* (in place)."""
    for row in rows:
        if "objective" in row:
            row["subopt"] = suboptimality(row["objective"], optimum)


def rescore_all(result: dict, optimum: float) -> None:
    """``rescore`` every warm and cold row of a size's result."""
    rescore(_rows(result), optimum)


def _rows(result: dict) -> Iterator[dict]:
    for entry in result["warm"].values():
        yield from entry["runs"]
    for modes in result["cold"].values():
        for rows in modes.values():
            yield from rows


def summarize(result: dict) -> dict[str, dict[str, dict[str, dict | None]]]:
    """{contestant: {mode: {eps: fastest run}}} over the warm and cold rows."""
    best: dict[str, dict[str, dict[str, dict | None]]] = {}
    for name, entry in result["warm"].items():
        best.setdefault(name, {})["warm"] = {
            f"{e:.0e}": fastest(entry["runs"], e) for e in EPSILONS
        }
    for name, modes in result["cold"].items():
        for mode, rows in modes.items():
            best.setdefault(name, {})[mode] = {f"{e:.0e}": fastest(rows, e) for e in EPSILONS}
    return best


def _seconds(best: dict, names: Sequence[str], mode: str, eps: float) -> tuple[str, float] | None:
    """(contestant, seconds) of the fastest of ``names`` in ``mode`` to ``eps``."""
    key = f"{eps:.0e}"
    found = [
        (n, best[n][mode][key]["median_s"]) for n in names if best.get(n, {}).get(mode, {}).get(key)
    ]
    return min(found, key=lambda item: item[1]) if found else None


def verdicts(result: dict) -> dict[str, dict]:
    """P1 and P2 at this size, for each cold mode of this package (module docstring)."""
    best, warm = result["best"], result["warm"]
    out: dict[str, dict] = {}
    peer = _seconds(best, PEERS, "cold", TARGET_EPS)
    for mode in CACHE_MODES:
        ours = _seconds(best, PACKAGE, mode, TARGET_EPS)
        p1: dict[str, Any] = {"package": ours, "peer": peer}
        if ours is None or peer is None:
            p1["verdict"] = "not measured"
        else:
            p1["ratio"] = peer[1] / ours[1]
            p1["verdict"] = "holds" if p1["ratio"] >= P1_RATIO else "fails"
        out[f"P1/{mode}"] = p1
        p2: dict[str, Any] = {"package": ours}
        if ours is None:
            p2["verdict"] = "not measured"
        else:
            tol = best[ours[0]][mode][f"{TARGET_EPS:.0e}"]["tol"]
            row = next((r for r in warm[ours[0]]["runs"] if r["tol"] == tol), None)
            warm_s = None if row is None else row["median_s"]
            p2 |= {"tol": tol, "cold_s": ours[1], "warm_s": warm_s}
            if warm_s is None:
                p2["verdict"] = "not measured"
            else:
                p2["limit_s"] = P2_FACTOR * warm_s + P2_SLACK_S
                p2["verdict"] = "holds" if ours[1] <= p2["limit_s"] else "fails"
        out[f"P2/{mode}"] = p2
    return out


def overall(sizes: dict[str, dict]) -> dict[str, str]:
    """Each target over the sizes measured: holds only if it holds at every one; a note when
    the 1e6 size (``--large``) was not run."""
    out = {}
    for key in (f"P{i}/{m}" for i in (1, 2) for m in CACHE_MODES):
        found = {s["verdicts"][key]["verdict"] for s in sizes.values() if "verdicts" in s}
        if "fails" in found:
            verdict = "fails"
        elif found == {"holds"}:
            verdict = "holds"
        else:
            verdict = "not measured"
        if key.startswith("P1") and "1e6" not in sizes and verdict != "fails":
            verdict += " (1e6 not run: --large)"
        out[key] = verdict
    return out


def run_size(label: str, args: argparse.Namespace, names: Sequence[str], work: Path) -> dict:
    """Build, time and score one size (module docstring)."""
    size = SIZES[label]
    program, instance = make_instance(size, args.loss, args.beta_ratio, args.seed)
    path = save_instance(work / "instance.npz", instance)
    ref = reference(program)
    bench = Bench(program, path, work, ref["objective"], args.adelie_venv, args.timeout)
    result: dict[str, Any] = {
        "size": dataclasses.asdict(size), "P": instance.P, "variables": instance.P * instance.d,
        "beta": instance.beta, "peer_lambda": instance.peer_lambda,
    }  # fmt: skip
    result["warm"] = warm_phase(bench, names, args.repeats)
    tols = {n: selected_tols(result["warm"][n]["runs"], args.cold_epsilons) for n in names}
    result["cold"] = cold_phase(bench, {n: t for n, t in tols.items() if t}, args.repeats)
    values = [
        (n, r["objective"]) for n in names for r in result["warm"][n]["runs"] if "objective" in r
    ]
    peers = [(n, v) for n, v in values if n in PEERS]
    optimum = min([ref["objective"], *(v for _, v in values)])
    rescore_all(result, optimum)
    best_peer = min(peers, key=lambda item: item[1], default=(None, np.nan))
    result["reference"] = {
        **ref,
        "optimum": optimum,  # F*: the least objective seen; the true optimum is in [dual, F*]
        "optimum_bound": (optimum - ref["dual"]) / abs(optimum),
        "best_peer": best_peer[0],
        "best_peer_subopt": suboptimality(best_peer[1], ref["objective"]),  # < 0: peer lower
    }
    result["best"] = summarize(result)
    result["verdicts"] = verdicts(result)
    return result


# ---------------------------------------------------------------------------- driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke test: 2e3, 1 repeat")
    size.add_argument("--large", action="store_true", help="add the 1e6-variable size")
    size.add_argument("--sizes", nargs="+", choices=sorted(SIZES), help="these sizes only")
    parser.add_argument(
        "--contestants", nargs="+", choices=sorted(CONTESTANTS), default=list(CONTESTANTS)
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (3; --quick 1)")
    parser.add_argument("--loss", choices=("squared", "logistic"), default="squared")
    parser.add_argument("--beta-ratio", type=float, default=0.1, help="beta / beta_max")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per solve")
    parser.add_argument("--adelie-venv", type=Path, default=ADELIE_DEFAULT)
    parser.add_argument("--out", type=Path, default=None, help="the JSON file")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1 or not 0 < args.beta_ratio < 1 or args.timeout <= 0:
        parser.error("need --repeats >= 1, 0 < --beta-ratio < 1 and --timeout > 0")
    args.labels = args.sizes or (
        ("2e3",) if args.quick else DEFAULT_SIZES + (("1e6",) if args.large else ())
    )
    args.cold_epsilons = (TARGET_EPS,) if args.quick else EPSILONS
    args.size = "quick" if args.quick else "default"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from experiments.bench_solvers import machine_info

    names, skipped = [], {}
    for name in dict.fromkeys(args.contestants):
        contestant = CONTESTANTS[name]
        reason = missing(contestant, args.adelie_venv)
        if reason is None and args.loss not in contestant.losses:
            reason = f"{name}: no {args.loss} loss (solves {', '.join(contestant.losses)})"
        if reason is None:
            names.append(name)
        else:
            skipped[name] = reason
            print(f"skipping {reason}", flush=True)
    out = _common.out_path(args, "bench_peers")
    blas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP", "MKL"))}
    data: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "size")},
        "machine": machine_info(jax) | {"blas_environment": blas},
        "contestants": names, "skipped": skipped, "sizes": {},
    }  # fmt: skip
    for label in args.labels:
        with tempfile.TemporaryDirectory(prefix=f"bench_peers_{label}_") as work:
            print(f"{label}: timing {', '.join(names)} ...", flush=True)
            data["sizes"][label] = run_size(label, args, names, Path(work))
        data["targets"] = overall(data["sizes"])
        _common.write_json(out, data)
        print("\n" + _peers_report.size_section(label, data["sizes"][label]), flush=True)
    data["machine"]["load_average_end"] = list(os.getloadavg())
    _common.write_json(out, data)
    _peers_report.write(data, out)  # bench_peers.md and bench_peers.png beside the JSON
    print("\nTargets over the sizes run:")
    for key, verdict in data["targets"].items():
        print(f"  {key}: {verdict}")
    print(f"wrote {out}")
    return data


if __name__ == "__main__":
    main()
