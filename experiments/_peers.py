"""The contestants of ``bench_peers`` and the runner that times one of them in its own process.

This file imports only numpy and the standard library at module level, so that it runs as a
script under any interpreter that has numpy: the main virtual environment (this package,
skglm, celer, pyscnn) or adelie's own (adelie pins numpy 1.26, this package needs numpy 2, so
adelie lives in a separate environment, see ``ADELIE_SETUP``). Each contestant imports its
solver when it is loaded.

The instance (an .npz written by ``save_instance``): X (N, d), y (N,), the gates u1 (P, 1) and
u2 (P, d) of this package's gated family with n = 1 token, beta (this package's penalty
strength) and the loss name. Every contestant derives the same problem from it:

- gate patterns ``D_ij = 1[u1_j (X_i . u2_j) >= 0] = 1[X_i . g_j >= 0]`` with the gate vector
  ``g_j = u1_j u2_j`` (the columns of ``gate_vectors``, pyscnn's G);
- design ``A = [D_1 X, ..., D_P X]`` (N, P d), column ``j d + q`` = ``D_ij X_iq``, one group of d
  columns per gate (``design``);
- weights W (P, d), row j = group j; this package's variable Z (P, 1, 1, d) is W reshaped.

Loss scaling and lambda mapping (module docstring of ``bench_peers``): this package minimizes
``F(W) = sum_i l(A w, y)_i + beta sum_j |W_j|_2`` (a SUM over samples, with l = 1/2 r^2 for the
squared loss); skglm, celer, pyscnn and adelie minimize the MEAN loss plus
``lam sum_j |W_j|_2``, i.e. ``F / N`` with ``lam = beta / N`` (``peer_lambda``): the same
minimizer.

Runner (``python experiments/_peers.py --contestant NAME --instance I.npz ...``):

- ``--tol T --weights W.npy``: one cold solve. Times the import of the solver, the setup of its
  problem (design matrix or gate patterns) and the solve (compilations included), writes the
  weights (P, d) to W.npy and prints one JSON line.
- ``--serve``: warm solves. Imports and sets up once (reported as one JSON line), then answers
  each JSON request line on stdin ``{"tol": T, "weights": "W.npy"}`` with one JSON line; a
  request may add ``"instance": "J.npz"`` to move on to another problem (``bench_keel``).

Only the replies go to stdout: the runner moves file descriptor 1 onto stderr, so whatever a
solver prints (from Python or from C) cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

ADELIE_DEFAULT = Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "convextx", "peers-adelie"
)
ADELIE_SETUP = (
    "python3.11 -m venv {venv} && {venv}/bin/pip install adelie "
    "(a separate environment: adelie pins numpy 1.26, this package needs numpy >= 2)"
)
PYSCNN_SETUP = (
    "pip install 'torch>=2.2,<2.14' && pip install --no-deps pyscnn linalg-backends "
    "(its metadata also asks for torchvision, which the convex solvers never import)"
)
MAX_ITER = 1_000_000  # iteration caps far above any sweep's need: each tol decides the stop


@dataclasses.dataclass(frozen=True)
class Instance:
    """One gated-ReLU group lasso with n = 1 token (module docstring)."""

    X: np.ndarray  # (N, d)
    y: np.ndarray  # (N,): floats (squared) or -1/+1 (logistic)
    u1: np.ndarray  # (P, 1)
    u2: np.ndarray  # (P, d)
    beta: float  # this package's penalty strength
    loss: str  # "squared" | "logistic"

    @property
    def N(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def P(self) -> int:
        return self.u2.shape[0]

    @property
    def peer_lambda(self) -> float:
        """The peers' penalty strength: they minimize F / N, so lam = beta / N."""
        return self.beta / self.N

    @property
    def gate_vectors(self) -> np.ndarray:
        """G (d, P): column j is g_j = u1_j u2_j, so that D = 1[X G >= 0]."""
        return (self.u1[:, :1] * self.u2).T

    def patterns(self) -> np.ndarray:
        """D (N, P), this package's rule 1[X g_j >= 0], as floats."""
        return (self.X @ self.gate_vectors >= 0).astype(self.X.dtype)

    def design(self) -> np.ndarray:
        """A = [D_1 X, ..., D_P X] (N, P d), Fortran-ordered (what coordinate descent reads)."""
        D = self.patterns()
        A = np.empty((self.N, self.P * self.d), order="F")
        for j in range(self.P):
            A[:, j * self.d : (j + 1) * self.d] = D[:, j : j + 1] * self.X
        return A

    def group_starts(self) -> np.ndarray:
        """(P + 1,) int32 offsets of the P contiguous groups of d columns of the design."""
        return np.arange(0, self.P * self.d + 1, self.d, dtype=np.int32)


def save_instance(path: str | os.PathLike, instance: Instance) -> Path:
    """Write ``instance`` to ``path`` (.npz)."""
    path = Path(path)
    fields = dataclasses.asdict(instance)
    np.savez(path, **{k: np.asarray(v) for k, v in fields.items()})
    return path


def load_instance(path: str | os.PathLike) -> Instance:
    """The instance written by ``save_instance``."""
    with np.load(path) as data:
        return Instance(
            X=data["X"], y=data["y"], u1=data["u1"], u2=data["u2"],
            beta=float(data["beta"]), loss=str(data["loss"]),
        )  # fmt: skip


def align_gates(G: np.ndarray, kept: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weights (P, d) in the order of the gate vectors G (d, P), from ``weights`` (p, d) of the
    gates ``kept`` (d, p): a subset of G's columns in another order (pyscnn sorts the
    activation patterns and drops duplicate and all-zero ones). Gates not kept weigh 0."""
    index = {G[:, j].tobytes(): j for j in range(G.shape[1])}
    out = np.zeros((G.shape[1], weights.shape[1]))
    for column, row in zip(kept.T, weights, strict=True):
        j = index.get(np.ascontiguousarray(column).tobytes())
        if j is None:
            raise ValueError("a gate the solver returned is none of the instance's gates")
        out[j] = row
    return out


Solve = Callable[[float], tuple[np.ndarray, dict]]


class Contestant:
    """A solver of the instance. ``load`` imports it; ``prepare(instance)`` builds its problem
    and returns ``solve(tol) -> (weights (P, d), info)``.

    name: the key in ``CONTESTANTS``.  module: what must be importable.  install: how to get it.
    losses: the losses it solves.  environment: "main" (this virtual environment) or "adelie".
    tols: its own tolerance sweep, loosest first (each solver's tol means something else).
    package: whether it is this package (cold runs with and without the compilation cache).
    """

    name: str
    module: str
    install: str
    losses: tuple[str, ...] = ("squared",)
    environment: str = "main"
    tols: tuple[float, ...]
    package: bool = False

    def load(self) -> None:
        raise NotImplementedError

    def prepare(self, instance: Instance) -> Solve:
        raise NotImplementedError


def _decades(loosest: int, tightest: int, step: int = 1) -> tuple[float, ...]:
    return tuple(10.0**-k for k in range(loosest, tightest + 1, step))


class Package(Contestant):
    """This package: ``convextx.convex_program(..., "gated", gates=...)`` solved by ``method``;
    tol is the certified relative duality gap ``gap / max(1, |F|)``."""

    module = "convextx"
    install = "pip install -e ."
    losses = ("squared", "logistic")
    tols = _decades(2, 10)
    package = True

    def __init__(self, name: str, method: str, **options: Any) -> None:
        self.name, self.method, self.options = name, method, options

    def load(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        import convextx

        self.cx = convextx

    def prepare(self, instance: Instance) -> Solve:
        program = self.cx.convex_program(
            instance.X[:, None, :], instance.y, kind="gated", beta=instance.beta,
            loss=instance.loss, gates=self.cx.Gates(instance.u1, instance.u2), dtype="float64",
        )  # fmt: skip
        if program.shape[0] != instance.P:
            raise ValueError("the instance's gates must have distinct patterns (none dropped)")

        def solve(tol: float) -> tuple[np.ndarray, dict]:
            result = program.solve(method=self.method, tol=tol, max_iter=MAX_ITER, **self.options)
            info = {"iterations": result.iterations, "relative_gap": result.relative_gap}
            info["status"] = result.status
            return np.asarray(result.x).reshape(instance.P, instance.d), info

        return solve


class Skglm(Contestant):
    """skglm's GroupBCD on QuadraticGroup / LogisticGroup + WeightedGroupL2 (weights 1), the
    datafit and penalty that ``skglm.GroupLasso`` uses; tol bounds the largest distance of
    ``-grad`` to the subdifferential over the groups (mean loss scale)."""

    name = "skglm"
    module = "skglm"
    install = "pip install skglm"
    losses = ("squared", "logistic")
    tols = _decades(2, 12)

    def load(self) -> None:
        from skglm import datafits, penalties, solvers

        self.datafits, self.penalties, self.solvers = datafits, penalties, solvers

    def prepare(self, instance: Instance) -> Solve:
        A, starts = instance.design(), instance.group_starts()
        indices = np.arange(A.shape[1], dtype=np.int32)
        datafit = {"squared": self.datafits.QuadraticGroup, "logistic": self.datafits.LogisticGroup}
        fit = datafit[instance.loss](starts, indices)
        penalty = self.penalties.WeightedGroupL2(
            instance.peer_lambda, np.ones(instance.P), starts, indices
        )

        def solve(tol: float) -> tuple[np.ndarray, dict]:
            solver = self.solvers.GroupBCD(tol=tol, max_iter=100_000, fit_intercept=False)
            w, _, stop = solver.solve(A, instance.y, fit, penalty)
            return w.reshape(instance.P, instance.d), {"stop_crit": float(stop)}

        return solve


class Celer(Contestant):
    """celer's GroupLasso (squared loss only); tol: duality gap <= tol |y|^2 / N."""

    name = "celer"
    module = "celer"
    install = "pip install celer"
    tols = _decades(2, 12)

    def load(self) -> None:
        import celer

        self.celer = celer

    def prepare(self, instance: Instance) -> Solve:
        A = instance.design()

        def solve(tol: float) -> tuple[np.ndarray, dict]:
            model = self.celer.GroupLasso(
                groups=instance.d, alpha=instance.peer_lambda, tol=tol, max_iter=100_000,
                fit_intercept=False,
            )  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at unreachable tols
                model.fit(A, instance.y)
            return model.coef_.reshape(instance.P, instance.d), {"n_iter": int(model.n_iter_)}

        return solve


class Pyscnn(Contestant):
    """pyscnn's R-FISTA on ConvexGatedReLU(G) with NeuronGL1(lam) (squared loss; pyscnn's
    ``optimize_model`` with unitize_data=False, so its problem is the instance's, and metrics
    off); tol bounds the squared norm of the minimum-norm subgradient."""

    name = "pyscnn"
    module = "scnn"
    install = PYSCNN_SETUP
    tols = _decades(2, 16, 2)  # 1e-18 is below its float64 floor: it never stops

    def load(self) -> None:
        from scnn import metrics, models, optimize, regularizers, solvers

        self.metrics, self.models, self.optimize = metrics, models, optimize
        self.regularizers, self.solvers = regularizers, solvers

    def prepare(self, instance: Instance) -> Solve:
        G = instance.gate_vectors
        off = dict.fromkeys(("objective", "grad_norm", "time"), False)

        def solve(tol: float) -> tuple[np.ndarray, dict]:
            model = self.models.ConvexGatedReLU(G)
            solver = self.solvers.RFISTA(model, max_iters=MAX_ITER, tol=tol)
            fitted, _ = self.optimize.optimize_model(
                model, solver, self.metrics.Metrics(**off), instance.X, instance.y,
                regularizer=self.regularizers.NeuronGL1(instance.peer_lambda),
                return_convex=True, unitize_data=False, dtype="float64",
            )  # fmt: skip
            weights = align_gates(G, fitted.G, np.asarray(fitted.parameters[0])[0])
            return weights, {"gates_kept": int(fitted.G.shape[1])}

        return solve


class Adelie(Contestant):
    """adelie's grpnet at the single lambda lam (penalty factors 1, not adelie's default
    sqrt(group size); no intercept; early exit off; all cores); tol is its coordinate-descent
    tolerance (and IRLS tolerance for the logistic loss). Runs in adelie's own environment."""

    name = "adelie"
    module = "adelie"
    install = ADELIE_SETUP.format(venv=ADELIE_DEFAULT)
    losses = ("squared", "logistic")
    environment = "adelie"
    tols = _decades(5, 16)

    def load(self) -> None:
        import adelie

        self.adelie = adelie

    def prepare(self, instance: Instance) -> Solve:
        A, starts = instance.design(), instance.group_starts()[:-1]
        ad = self.adelie
        if instance.loss == "squared":
            glm = ad.glm.gaussian(instance.y)
        else:
            glm = ad.glm.binomial((instance.y + 1.0) / 2.0)  # labels 0/1; weights 1/N
        matrix = ad.matrix.dense(A, method="naive", n_threads=os.cpu_count() or 1)

        def solve(tol: float) -> tuple[np.ndarray, dict]:
            state = ad.grpnet(
                matrix, glm, groups=starts, alpha=1.0, penalty=np.ones(instance.P),
                lmda_path=np.array([instance.peer_lambda]), intercept=False, early_exit=False,
                tol=tol, irls_tol=tol, max_iters=MAX_ITER, progress_bar=False,
                n_threads=os.cpu_count() or 1,
            )  # fmt: skip
            w = np.asarray(state.betas[-1].toarray()).ravel()
            return w.reshape(instance.P, instance.d), {}

        return solve


CONTESTANTS: dict[str, Contestant] = {
    c.name: c
    for c in (
        Package("fista", "fista"),
        Package("fista_polish", "fista", polish=True),
        Package("working_set", "working_set"),
        Skglm(),
        Celer(),
        Pyscnn(),
        Adelie(),
    )
}
PACKAGE = tuple(name for name, c in CONTESTANTS.items() if c.package)
PEERS = tuple(name for name, c in CONTESTANTS.items() if not c.package)


def _timed(contestant: Contestant, instance: Instance) -> tuple[Solve, dict]:
    """``prepare``'s solve, with the seconds of ``load`` and ``prepare``."""
    start = time.perf_counter()
    contestant.load()
    loaded = time.perf_counter()
    solve = contestant.prepare(instance)
    return solve, {"import_s": loaded - start, "setup_s": time.perf_counter() - loaded}


def _solve_and_save(solve: Solve, tol: float, weights: str) -> dict:
    """Run ``solve(tol)``, write the weights to ``weights`` (.npy), return seconds and info."""
    start = time.perf_counter()
    w, info = solve(tol)
    seconds = time.perf_counter() - start
    np.save(weights, np.asarray(w, dtype=np.float64))
    return {"tol": tol, "solve_s": seconds, "info": info}


def _failure(err: BaseException) -> dict:
    """The reply for a failed setup or solve (the parent records it and goes on)."""
    return {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-1500:]}


def _protocol_stdout() -> TextIO:
    """A private copy of stdout for the replies; file descriptor 1 then points at stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return out


def _reply(out: TextIO, message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(contestant: Contestant, path: Path, requests: TextIO, out: TextIO) -> None:
    """Set up once, then answer every request line (module docstring) until stdin closes. A
    request naming another ``"instance"`` file sets that one up first (its ``setup_s`` is in
    the reply, apart from ``solve_s``), so one process can serve a whole list of problems."""
    try:
        solve, times = _timed(contestant, load_instance(path))
    except Exception as err:  # noqa: BLE001 - reported to the parent
        _reply(out, _failure(err))
        return
    _reply(out, {"ready": True, **times})
    for line in requests:
        request = json.loads(line)
        try:
            setup = {}
            if Path(request.get("instance", path)) != path:
                start, path = time.perf_counter(), Path(request["instance"])
                solve = contestant.prepare(load_instance(path))
                setup = {"setup_s": time.perf_counter() - start}
            reply = {**_solve_and_save(solve, request["tol"], request["weights"]), **setup}
        except Exception as err:  # noqa: BLE001 - reported to the parent
            reply = _failure(err)
        _reply(out, reply)


def one(contestant: Contestant, instance: Instance, tol: float, weights: str) -> dict:
    """A cold solve: import, setup and solve, timed together (``total_s``) and apart."""
    start = time.perf_counter()
    try:
        solve, times = _timed(contestant, instance)
        row = _solve_and_save(solve, tol, weights)
    except Exception as err:  # noqa: BLE001 - reported to the parent
        return _failure(err)
    return {**times, **row, "total_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one bench_peers contestant.")
    parser.add_argument("--contestant", required=True, choices=sorted(CONTESTANTS))
    parser.add_argument("--instance", required=True, type=Path)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--tol", type=float, help="one cold solve at this tol")
    mode.add_argument("--serve", action="store_true", help="warm solves, requests on stdin")
    parser.add_argument("--weights", help="where a cold solve writes its weights (.npy)")
    args = parser.parse_args(argv)
    if args.tol is not None and not args.weights:
        parser.error("--tol needs --weights")
    out = _protocol_stdout()
    contestant = CONTESTANTS[args.contestant]
    if args.serve:
        serve(contestant, args.instance, sys.stdin, out)
        return 0
    reply = one(contestant, load_instance(args.instance), args.tol, args.weights)
    _reply(out, reply)
    return 1 if "error" in reply else 0


if __name__ == "__main__":
    sys.exit(main())
