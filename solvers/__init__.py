"""Certified solvers for composite convex problems ``loss(A x) + beta * Omega(x)``.

Knows nothing about attention: a problem is a linear ``predict`` map, a loss and a gauge
penalty; ``solve`` returns a solution with a duality-gap certificate.

    prob = solvers.Problem(predict=f, shape=(n, d), loss=solvers.SquaredLoss(y),
                           penalty=solvers.GroupL2(beta, axis=-1))
    res = solvers.solve(prob, method="fista", tol=1e-8)   # or "working_set", "cvxpy"

Importing solvers turns on JAX's persistent compilation cache (``solvers.cache``; set
``CONVEXTX_COMPILATION_CACHE=0`` to keep it off).
"""

from solvers import checks
from solvers.cache import compilation_cache, configure_from_environment
from solvers.certificate import STATUSES, Certificate, certify, duality_gap, is_solved, status
from solvers.cvxpy_backend import CVXPY_SOLVERS, SolverError
from solvers.fista import FISTA, FistaState
from solvers.losses import LOSSES, LogisticLoss, Loss, SoftmaxCrossEntropy, SquaredLoss, make_loss
from solvers.materialize import materialize
from solvers.path import PathResult, beta_max, regularization_path
from solvers.penalties import L1, GroupL2, NonNegative, NuclearNorm, Penalty, StochasticGauge
from solvers.problem import Problem
from solvers.result import SolveResult
from solvers.solve import METHODS, solve
from solvers.support import active_groups, reduce_support

__all__ = [
    "CVXPY_SOLVERS",
    "FISTA",
    "L1",
    "LOSSES",
    "METHODS",
    "Certificate",
    "FistaState",
    "GroupL2",
    "LogisticLoss",
    "Loss",
    "NonNegative",
    "NuclearNorm",
    "PathResult",
    "STATUSES",
    "Penalty",
    "Problem",
    "SolveResult",
    "SolverError",
    "SoftmaxCrossEntropy",
    "SquaredLoss",
    "StochasticGauge",
    "active_groups",
    "beta_max",
    "certify",
    "checks",
    "compilation_cache",
    "duality_gap",
    "is_solved",
    "make_loss",
    "materialize",
    "reduce_support",
    "regularization_path",
    "solve",
    "status",
]

configure_from_environment()  # JAX's persistent compilation cache (solvers.cache)
