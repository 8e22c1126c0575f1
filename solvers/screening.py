"""Gap-safe screening for group-sparse problems (``GroupL2`` / ``L1`` penalties).

Ndiaye, Fercoq, Gramfort, Salmon, "Gap safe screening rules for sparsity enforcing penalties"
(JMLR 2017): from any x and the certificate's dual point u, certify groups that are zero at
EVERY optimum.

**The rule for this package's dual** (``certificate.py``). The dual is
``max_u D(u) = -L*(u)`` s.t. ``max_g |[-A_g^T u]|_2 <= beta`` (``[.]`` the positive part when the
penalty is nonnegative, the identity otherwise). grad L is ``L_s``-Lipschitz
(``loss.lipschitz()``), so L* is ``1/L_s``-strongly convex and D ``1/L_s``-strongly concave;
its maximizer u* over the (convex) feasible set is unique and satisfies
``<grad D(u*), u - u*> <= 0`` for every feasible u, hence
``D(u) <= D(u*) - |u - u*|^2 / (2 L_s)``. Weak duality ``D(u*) <= P(x)`` gives, for the
certificate's feasible u,

    |u - u*|_2 <= r = sqrt(2 L_s (P(x) - D(u))) = sqrt(2 L_s gap).

At every primal optimum x*, ``u* = grad L(A x*)`` and ``x*_g != 0`` forces
``|[-A_g^T u*]|_2 = beta``. Both maps ``w -> [w]`` are 1-Lipschitz, so
``|[-A_g^T u*]| <= |[-A_g^T u]| + |A_g|_2 r``: a group with

    |[-A_g^T u]|_2 + r |A_g|_2 < beta

is zero at every optimum. Any upper bound on the operator norm ``|A_g|_2`` keeps the rule safe
(e.g. the Frobenius norm of the block of columns).

**Screened problems keep the optimum.** Removing groups that are zero at every optimum does not
change the optimal value p*, and the optimal dual point u* (the gradient at the optimal
predictions) is the same for both problems. So the certificate of the problem restricted to the
surviving groups is a lower bound on p* too, and the radius above stays valid: the working-set
solver (``solvers.working_set``) certifies its rounds on the survivors once they are few.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from solvers.certificate import dual_value
from solvers.compile import problem_jit
from solvers.materialize import materialize
from solvers.penalties import GroupL2
from solvers.problem import Problem

Array = jax.Array


class Screening(NamedTuple):
    """inactive: (G,) bool, groups certified zero at every optimum.  radius: r of the rule.
    primal, dual, gap: the certificate the rule used.  scores: (G,) ``|[-A_g^T u]|_2`` at
    the scaled dual point u (<= beta for every group: u is feasible)."""

    inactive: np.ndarray
    radius: float
    primal: float
    dual: float
    gap: float
    scores: np.ndarray


class GroupCertificate(NamedTuple):
    """A certificate with its group scores: primal P(x), dual D(theta grad), the unscaled scores
    ``|[-A_g^T grad L(Ax)]|_2`` (G,), and theta = min(1, beta / max score)."""

    primal: Array
    dual: Array
    scores: Array
    theta: Array


def check_group_penalty(problem: Problem) -> GroupL2:
    """The problem's penalty, if it has groups (``GroupL2`` / ``L1``); TypeError otherwise."""
    if not isinstance(problem.penalty, GroupL2):
        raise TypeError(
            "screening and working sets need a GroupL2 or L1 penalty; "
            f"got {type(problem.penalty).__name__}"
        )
    return problem.penalty


def group_scores(penalty: GroupL2, w: Array) -> Array:
    """(G,) ``|[w_g]|_2``: each group's contribution to the dual norm of w."""
    if penalty.nonneg:
        w = jnp.maximum(w, 0.0)
    return penalty.group_norms(w)


@problem_jit
def group_certificate(problem: Problem, x: Array, pred: Array) -> GroupCertificate:
    """The certificate at x given pred = A x, with its group scores (one compiled function)."""
    grad = problem.loss.grad(pred)
    adjoint = problem.adjoint(grad)
    scores = group_scores(problem.penalty, -adjoint)
    primal = problem.loss.value(pred) + problem.penalty.value(x)
    dual = dual_value(problem, grad, adjoint, dual_norm=jnp.max(scores))
    beta = problem.penalty.beta
    theta = jnp.minimum(1.0, beta / jnp.maximum(jnp.max(scores), jnp.finfo(x.dtype).tiny))
    return GroupCertificate(primal, dual, scores, theta)


def radius(problem: Problem, gap: float) -> float:
    """r = sqrt(2 L_s gap), the distance from the certificate's dual point to u*."""
    return math.sqrt(2.0 * float(problem.loss.lipschitz()) * max(gap, 0.0))


def safe_inactive(
    scores: np.ndarray, theta: float, gap_radius: float, norms: np.ndarray, beta: float
) -> np.ndarray:
    """(G,) bool: the rule ``theta * score_g + r |A_g| < beta`` (module docstring)."""
    return theta * scores + gap_radius * norms < beta


def check_operator_norms(problem: Problem, operator_norms: Any) -> np.ndarray:
    """(G,) finite bounds >= 0, one per group of the problem's penalty."""
    G = check_group_penalty(problem).group_indices(problem.shape).shape[0]
    norms = np.asarray(operator_norms, dtype=float)
    if norms.shape != (G,) or not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise ValueError(
            f"operator_norms must be (G,) = ({G},) finite values >= 0; got shape {norms.shape}"
        )
    return norms


def group_operator_norms(problem: Problem, matrix: np.ndarray | None = None) -> np.ndarray:
    """(G,) the spectral norm ``|A_g|_2`` of each group's block of columns, exactly.

    matrix: the problem's matrix if already materialized; else ``solvers.materialize`` builds
    it, so this is for small problems (pass a cheaper upper bound, e.g. the Frobenius norm from
    the data, for large ones).
    """
    penalty = check_group_penalty(problem)
    matrix = materialize(problem) if matrix is None else matrix
    groups = penalty.group_indices(problem.shape)
    return np.array([np.linalg.norm(matrix[:, g], 2) for g in groups])


def gap_safe_screen(problem: Problem, x: Any, operator_norms: Any) -> Screening:
    """Groups that are zero at every optimum, certified from x (module docstring).

    operator_norms: (G,) upper bounds on ``|A_g|_2``, in the order of
      ``problem.penalty.group_indices(problem.shape)``.
    """
    norms = check_operator_norms(problem, operator_norms)
    x = jnp.asarray(x, problem.dtype)
    if x.shape != problem.shape:
        raise ValueError(f"x must have the problem shape {problem.shape}; got {x.shape}")
    cert = group_certificate(problem, x, problem.predict(x))
    primal, dual, theta = float(cert.primal), float(cert.dual), float(cert.theta)
    gap = primal - dual
    r = radius(problem, gap)
    scores = np.asarray(cert.scores, dtype=float)
    inactive = safe_inactive(scores, theta, r, norms, float(problem.penalty.beta))
    return Screening(inactive, r, primal, dual, gap, theta * scores)


def zero_screened_groups(problem: Problem, x: Any, operator_norms: Any) -> np.ndarray:
    """x with every group certified zero at every optimum (``gap_safe_screen``) set to 0: a cut
    of negligible groups that is consistent with the certificate (an interior-point solution
    is dense at the 1e-9 level; this cut keeps exactly the groups the certificate cannot rule
    out)."""
    screen = gap_safe_screen(problem, x, operator_norms)
    flat = np.array(x, dtype=float).ravel()
    groups = check_group_penalty(problem).group_indices(problem.shape)
    flat[groups[screen.inactive].ravel()] = 0.0
    return flat.reshape(problem.shape)


__all__ = [
    "GroupCertificate",
    "Screening",
    "check_group_penalty",
    "check_operator_norms",
    "gap_safe_screen",
    "group_certificate",
    "group_operator_norms",
    "group_scores",
    "radius",
    "safe_inactive",
    "zero_screened_groups",
]
