"""What ``bench_solvers`` runs in each mode (micro, quick, default, full, gpu): the problems of
each suite and the limits. Sizes are counted in convex-program variables. "gpu" is the plan of
``experiments/gpu_run.sh``: a few minutes of one GPU, and the same ladder on the CPU beside it."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from experiments._bench_programs import Spec

MODES = ("micro", "quick", "default", "full", "gpu")

# The targets of issue 9 (P3 with one token; beta = 0.1 beta_max unless noted).
TARGET_T1 = Spec("gated", N=2000, n=1, d=50, P=200)  # 1e4 variables
TARGET_T2 = Spec("gated", N=10_000, n=1, d=100, P=500)  # 5e4 variables
TARGET_T5 = Spec("gated", N=2000, n=1, d=500, P=200_000)  # 1e8 variables, on one GPU


class EpsilonRow(NamedTuple):
    """One problem of the time-to-epsilon suite and the methods run on it: plain FISTA, the
    working-set solver (P3, whose solutions are sparse over many gates), cvxpy, Adam/SGD."""

    spec: Spec
    plain: bool
    working_set: bool
    cvxpy: bool
    nonconvex: bool


@dataclasses.dataclass(frozen=True)
class Plan:
    """epsilon: the rows of the time-to-epsilon suite.
    scaling_base and scaling_axes: P3 problems varying one of N, n, d, P at a time.
    matmul, dtype: specs of the per-iteration-vs-maps and float32-vs-float64 suites.
    sharded: spec solved on 1 and 4 forced host devices.  working_set: (spec, beta ratios).
    t1, t2: the target problems (None: not run in this mode).
    t5: the GPU-scale target, run only on a GPU unless ``t5_on_cpu`` (micro: a smoke test).
    cvxpy_timeout: seconds per cvxpy solver and problem (None: in process, no limit).
    cvxpy_tols: the epsilons cvxpy is asked for (one solve each).
    adam_lrs, sgd_lrs: learning-rate grids (SGD's are multiplied by 1/N: the objective is a sum).
    min_budget: least seconds given to each Adam/SGD run.  max_iter: FISTA budget.
    """

    epsilon: tuple[EpsilonRow, ...]
    scaling_base: Spec
    scaling_axes: dict[str, tuple[int, ...]]
    matmul: tuple[Spec, ...]
    dtype: tuple[Spec, ...]
    sharded: Spec | None
    working_set: tuple[Spec, tuple[float, ...]]
    t1: Spec | None
    t2: Spec | None
    cvxpy_timeout: float | None
    adam_lrs: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    sgd_lrs: tuple[float, ...] = (1e-2, 1e-1, 1.0)
    cvxpy_tols: tuple[float, ...] = (1e-4, 1e-6, 1e-8)
    min_budget: float = 1.0
    max_iter: int = 20_000
    repeats: int = 3
    t5: Spec | None = None
    t5_on_cpu: bool = False


def _eps_specs(
    sizes: dict[str, list[Spec]], plain_max: int, cvxpy_max: int, nonconvex_max: int
) -> tuple[EpsilonRow, ...]:
    """Every spec of the ladder; plain FISTA, cvxpy and Adam/SGD up to their sizes, working sets
    on every P3 problem from 1e4 variables (below that a working set is the whole problem)."""
    return tuple(
        EpsilonRow(
            spec,
            plain=spec.variables <= plain_max,
            working_set=spec.kind == "gated" and spec.variables >= 10**4,
            cvxpy=spec.variables <= cvxpy_max,
            nonconvex=spec.variables <= nonconvex_max,
        )
        for specs in sizes.values()
        for spec in specs
    )


def _ladder(top: int, dense_top: int, tokens_top: int = 0) -> dict[str, list[Spec]]:
    """P3 (n=1, d=50) at 1e3, 1e4, ... up to ``top`` variables; P1 (n=10) and P2 (c=5, n=10)
    up to ``dense_top``, N shrinking for the widest so the data stay about 2e7 numbers; P3 with
    n=8 tokens (N=1000, d=16, P = variables / 128: attention's token mixing at scale) from 1e4
    up to ``tokens_top``.

    P1/P2 carry N x (variables / c) data numbers and every FISTA iteration streams them twice
    (memory-bound: ~30 ms per iteration for 2e7 float64 on the CPU), whereas P3's data are
    N x n x d plus the (N, n, P) gates, so P3 is the one that reaches large sizes on a CPU."""

    def sizes(limit: int, low: int = 10**3) -> list[int]:
        return [10**k for k in range(3, 8) if low <= 10**k <= limit]

    return {
        "scalar": [
            Spec("scalar", N=min(1000, 2 * 10**7 // s), n=10, d=s // 10) for s in sizes(dense_top)
        ],
        "vector": [
            Spec("vector", N=min(1000, 2 * 10**7 // s), n=10, d=s // 50, c=5)
            for s in sizes(dense_top)
        ],
        "gated": [Spec("gated", N=2000, n=1, d=50, P=s // 50) for s in sizes(top)],
        "gated tokens": [
            Spec("gated", N=1000, n=8, d=16, P=s // 128) for s in sizes(tokens_top, 10**4)
        ],
    }


def make_plan(mode: str) -> Plan:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if mode == "micro":
        tiny = Spec("gated", N=60, n=2, d=4, P=4)
        return Plan(
            epsilon=(EpsilonRow(tiny, plain=True, working_set=True, cvxpy=True, nonconvex=True),),
            scaling_base=tiny,
            scaling_axes={"N": (60, 120)},
            matmul=(tiny,),
            dtype=(tiny,),
            sharded=None,
            working_set=(Spec("gated", N=80, n=1, d=4, P=16), (0.3,)),
            t1=None,
            t2=None,
            t5=Spec("gated", N=80, n=1, d=4, P=16),
            t5_on_cpu=True,
            cvxpy_timeout=None,
            cvxpy_tols=(1e-6,),
            adam_lrs=(1e-2,),
            sgd_lrs=(0.1,),
            min_budget=0.05,
            max_iter=2000,
            repeats=1,
        )
    if mode == "quick":
        return Plan(
            epsilon=_eps_specs(
                _ladder(10**3, 10**3), plain_max=10**3, cvxpy_max=10**3, nonconvex_max=10**3
            ),
            scaling_base=Spec("gated", N=1000, n=1, d=25, P=40),
            scaling_axes={
                "N": (500, 1000, 2000),
                "n": (1, 2, 4),
                "d": (12, 25, 50),
                "P": (20, 40, 80),
            },
            matmul=(Spec("gated", N=1000, n=1, d=25, P=40),),
            dtype=(Spec("gated", N=1000, n=1, d=25, P=40),),
            sharded=Spec("gated", N=1000, n=1, d=25, P=40),
            working_set=(Spec("gated", N=2000, n=1, d=25, P=200), (0.1, 0.3)),
            t1=TARGET_T1,
            t2=None,
            cvxpy_timeout=120.0,
            adam_lrs=(1e-2, 1e-1),
            sgd_lrs=(0.1, 1.0),
        )
    if mode == "gpu":
        return Plan(
            epsilon=_eps_specs(
                _ladder(10**7, 10**6, 10**6), plain_max=10**6, cvxpy_max=0, nonconvex_max=10**4
            ),
            scaling_base=TARGET_T1,
            scaling_axes={},
            matmul=(TARGET_T1,),
            dtype=(TARGET_T1, Spec("scalar", N=1000, n=10, d=1000)),
            sharded=None,
            working_set=(TARGET_T1, (0.1,)),
            t1=None,
            t2=None,
            t5=TARGET_T5,
            cvxpy_timeout=None,
            repeats=2,
        )
    full = mode == "full"
    return Plan(
        epsilon=_eps_specs(
            _ladder(10**7, 10**7, 10**6) if full else _ladder(10**7, 10**4, 10**5),
            plain_max=10**7 if full else 10**5,
            cvxpy_max=10**4 if full else 10**3,
            nonconvex_max=10**4,
        ),
        scaling_base=Spec("gated", N=2000, n=1, d=50, P=100),
        scaling_axes={
            "N": (1000, 2000, 4000, 8000),
            "n": (1, 2, 4, 8),
            "d": (25, 50, 100, 200),
            "P": (50, 100, 200, 400),
        },
        matmul=(
            TARGET_T1,
            Spec("scalar", N=1000, n=10, d=1000),
            Spec("vector", N=1000, n=10, d=200, c=5),
        ),
        dtype=(TARGET_T1, Spec("scalar", N=1000, n=10, d=1000)),
        sharded=TARGET_T1,
        working_set=(TARGET_T1, (0.05, 0.1, 0.2, 0.4)),
        t1=TARGET_T1,
        t2=TARGET_T2,
        t5=TARGET_T5,
        cvxpy_timeout=3600.0 if full else 600.0,
    )
