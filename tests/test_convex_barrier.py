"""Issue 6's convex side: two convex-attention solutions have no loss barrier between them.
(The Adam-trained side, a barrier of 6.13 between simplex-head networks before alignment, is
measured by ``python -m experiments.repair_barrier``.)"""

import numpy as np

import convextx as cx
from baselines.repair import barrier


def test_two_convex_solutions_from_different_solvers_and_starts_show_no_barrier():
    task = cx.tasks.load("student_teacher", N_train=40, N_test=40, n=6, d=4, heads=2, seed=3)
    program = cx.convex_program(task.X_train, task.y_train, "scalar", 0.5)
    by_fista = program.solve(tol=1e-10, max_iter=50_000).x
    start = np.random.default_rng(0).standard_normal(program.shape)
    from_elsewhere = program.solve(tol=1e-10, max_iter=50_000, x0=start).x
    by_cvxpy = program.solve(method="cvxpy", tol=1e-9).x

    def objective(x):
        return {"objective": float(program.problem.objective(x))}

    alphas = np.linspace(0, 1, 11)
    for other in (from_elsewhere, by_cvxpy):
        result = barrier(objective, by_fista, np.asarray(other), alphas)
        scale = abs(result.endpoints["objective"][0])
        assert result.barrier["objective"] <= 1e-9 * scale  # Jensen: convex objective
        assert max(result.curves["objective"]) <= scale * (1 + 1e-6)  # every point optimal
