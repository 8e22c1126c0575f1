"""Working sets and gap-safe screening for group-sparse problems (``GroupL2`` / ``L1`` penalties).

At an optimum most groups of x are zero (MATH.md section 6). Two ways to exploit that:

- **Gap-safe screening** (Ndiaye, Fercoq, Gramfort, Salmon, "Gap safe screening rules for
  sparsity enforcing penalties", JMLR 2017): from any x and the certificate's dual point u,
  certify groups that are zero at EVERY optimum.
- **Working sets** (Johnson & Guestrin 2015, "Blitz"; Massias, Gramfort, Salmon 2018, "Celer"):
  solve the problem restricted to a few groups, check the certificate of the FULL problem, add
  the groups that violate dual feasibility, repeat. Optimality is only ever claimed from the
  full certificate; the restricted solves are a means to reach it.

The restricted problems are cheaper per iteration only when the linear map itself can be
restricted (e.g. keep the columns of the data that feed the kept groups). That knowledge belongs
to whoever built the map, so it comes in as a ``restrict`` callable; without one, the generic
restriction embeds the kept variables into the full map (correct, but a full map per iteration).

**The screening rule for this package's dual** (``certificate.py``). The dual is
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

**Certificates on the screened problem** (dynamic screening). Removing groups that are zero at
every optimum does not change the optimal value p*, and the optimal dual point u* (the gradient
at the optimal predictions) is the same for both problems. So the certificate of the problem
restricted to the surviving groups, at x (zero on the removed groups), is a lower bound on p*,
its gap bounds the suboptimality of x, and the radius above stays valid. Once screening has
removed most groups, ``solve_working_set`` certifies each round on that smaller problem (a map
whose cost shrinks with the survivors) and confirms the final claim with one certificate of the
full problem.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from solvers.certificate import is_solved
from solvers.cvxpy_backend import materialize
from solvers.penalties import GroupL2
from solvers.problem import Problem
from solvers.solve import SolveResult, _status, solve

Array = jax.Array
KEEP_RATIO = 0.5  # support groups scoring below KEEP_RATIO * beta leave the working set
MARGIN = 1.25  # the working set holds MARGIN times the kept groups (before rounding up)
INNER_RATIO = 0.1  # each round solves the restricted problem to this fraction of the current gap
SHRINK_RATIO = 0.125  # certify on the screening survivors once they are this fraction of the groups


class Restriction(NamedTuple):
    """The problem restricted to some groups.

    problem: a ``Problem`` over the kept variables, with the same loss and penalty strength.
    index: integer array of ``problem.shape``: the flat index, in the full variable, of each kept
      entry. Embedding (zeros elsewhere) must preserve predictions and penalty:
      ``full.predict(embed(x_r)) == problem.predict(x_r)``. It must hold whole groups and may hold
      more groups than requested (e.g. padded to a size that reuses a compiled solver).
    """

    problem: Problem
    index: np.ndarray


Restrict = Callable[[np.ndarray], Restriction]


class Screening(NamedTuple):
    """inactive: (G,) bool, groups certified zero at every optimum.  radius: r of the rule.
    primal, dual, gap: the full certificate the rule used.  scores: (G,) ``|[-A_g^T u]|_2`` at
    the scaled dual point u (<= beta for every group: u is feasible)."""

    inactive: np.ndarray
    radius: float
    primal: float
    dual: float
    gap: float
    scores: np.ndarray


def _check_penalty(problem: Problem) -> GroupL2:
    if not isinstance(problem.penalty, GroupL2):
        raise TypeError(
            "screening and working sets need a GroupL2 or L1 penalty; "
            f"got {type(problem.penalty).__name__}"
        )
    return problem.penalty


def _group_scores(penalty: GroupL2, w: Array) -> Array:
    """(G,) ``|[w_g]|_2``: each group's contribution to the dual norm of w."""
    if penalty.nonneg:
        w = jnp.maximum(w, 0.0)
    return penalty.group_norms(w)


def _full_certificate(
    problem: Problem, x: Array, pred: Array | None = None
) -> tuple[Array, Array, Array, Array]:
    """At x: primal P(x), dual D(theta grad), the group scores |[-A_g^T grad L(Ax)]|_2 (unscaled)
    and theta = min(1, beta / max score), which makes theta grad dual feasible.
    pred: A x if already known (e.g. from a restriction holding x's support): saves one map."""
    return _certificate_at(problem, x, _predict(problem, x) if pred is None else pred)


@jax.jit
def _certificate_at(problem: Problem, x: Array, pred: Array) -> tuple[Array, Array, Array, Array]:
    """``_full_certificate`` given pred = A x (one compiled function whether pred was known)."""
    grad = problem.loss.grad(pred)
    scores = _group_scores(problem.penalty, -problem.adjoint(grad))
    beta = problem.penalty.beta
    theta = jnp.minimum(1.0, beta / jnp.maximum(jnp.max(scores), jnp.finfo(x.dtype).tiny))
    primal = problem.loss.value(pred) + problem.penalty.value(x)
    return primal, -problem.loss.conjugate(theta * grad), scores, theta


def _radius(problem: Problem, gap: float) -> float:
    return math.sqrt(2.0 * float(problem.loss.lipschitz()) * max(gap, 0.0))


class _Certificate(NamedTuple):
    """x: the point certified (zero outside the certificate's groups).  primal, dual: its
    objective and a lower bound on the optimum.  scores: (G,) unscaled ``|[-A_g^T grad]|_2``
    (0 outside the certificate's groups: screened).  theta: the dual scaling."""

    x: Array
    primal: float
    dual: float
    scores: np.ndarray
    theta: float


def _certify(
    problem: Problem,
    x: Array,
    domain: Restriction | None = None,
    groups: np.ndarray | None = None,
    pred: Array | None = None,
) -> _Certificate:
    """The certificate at x of ``problem`` (domain None; pred: A x if known) or of its
    restriction ``domain`` to the groups ``groups`` that survived screening (module docstring);
    x is projected on them."""
    if domain is None:
        values = [np.asarray(v, dtype=float) for v in _full_certificate(problem, x, pred)]
        return _Certificate(x, float(values[0]), float(values[1]), values[2], float(values[3]))
    sub, index = domain
    x_sub = _gather(x, jnp.asarray(index.ravel())).reshape(sub.shape)
    primal, dual, sub_scores, theta = (
        np.asarray(v, dtype=float) for v in _full_certificate(sub, x_sub)
    )
    group_size = index.size // groups.size  # groups: one per row of index.reshape(-1, size)
    scores = np.zeros(problem.size // group_size)
    scores[groups] = sub_scores
    return _Certificate(_embed(problem, index, x_sub), float(primal), float(dual), scores, theta)


def group_operator_norms(problem: Problem) -> np.ndarray:
    """(G,) the spectral norm ``|A_g|_2`` of each group's block of columns, exactly.

    Materializes A (``solvers.materialize``), so it is for small problems; pass a cheaper upper
    bound (e.g. the Frobenius norm from the data) for large ones.
    """
    penalty = _check_penalty(problem)
    matrix = materialize(problem)
    groups = penalty.group_indices(problem.shape)
    return np.array([np.linalg.norm(matrix[:, g], 2) for g in groups])


def gap_safe_screen(problem: Problem, x: Any, operator_norms: Any) -> Screening:
    """Groups that are zero at every optimum, certified from x (module docstring).

    operator_norms: (G,) upper bounds on ``|A_g|_2``, in the order of
      ``problem.penalty.group_indices(problem.shape)``.
    """
    penalty = _check_penalty(problem)
    G = penalty.group_indices(problem.shape).shape[0]
    norms = np.asarray(operator_norms, dtype=float)
    if norms.shape != (G,) or not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise ValueError(
            f"operator_norms must be (G,) = ({G},) finite values >= 0; got {norms.shape}"
        )
    x = jnp.asarray(x, problem.dtype)
    if x.shape != problem.shape:
        raise ValueError(f"x must have the problem shape {problem.shape}; got {x.shape}")
    primal, dual, raw, theta = (np.asarray(v, dtype=float) for v in _full_certificate(problem, x))
    gap = float(primal - dual)
    radius = _radius(problem, gap)
    scores = theta * raw
    inactive = scores + radius * norms < float(penalty.beta)
    return Screening(inactive, radius, float(primal), float(dual), gap, scores)


def _embedded_predict(predict: Callable, index: Array, template: Array, x: Array) -> Array:
    full = template.ravel().at[index].set(x.ravel().astype(template.dtype), unique_indices=True)
    return predict(full.reshape(template.shape))


def restrict_groups(problem: Problem, groups: np.ndarray) -> Restriction:
    """The generic restriction: the kept groups as a (k, S) variable embedded in the full map.

    Correct for any ``GroupL2``/``L1`` problem but no cheaper per iteration than the full map;
    a ``restrict`` that slices the data is what makes working sets pay off.
    """
    penalty = _check_penalty(problem)
    index = penalty.group_indices(problem.shape)[np.asarray(groups, dtype=int)]
    template = jnp.zeros(problem.shape, problem.dtype)
    predict = Partial(_embedded_predict, problem.predict, jnp.asarray(index.ravel()), template)
    sub = Problem(
        predict=predict,
        shape=index.shape,
        loss=problem.loss,
        penalty=GroupL2(penalty.beta, axis=-1, nonneg=penalty.nonneg),
        dtype=problem.dtype,
        check_linear=False,
    )
    return Restriction(sub, index)


def _embed(problem: Problem, index: np.ndarray, x_r: Array) -> Array:
    """The full variable with x_r at ``index`` and zeros elsewhere."""
    return _scatter(problem.shape, jnp.asarray(index.ravel()), jnp.asarray(x_r, problem.dtype))


@functools.partial(jax.jit, static_argnums=0)
def _scatter(shape: tuple[int, ...], flat_index: Array, values: Array) -> Array:
    full = jnp.zeros(math.prod(shape), values.dtype).at[flat_index]
    return full.set(values.ravel(), unique_indices=True).reshape(shape)


def _check_restriction(
    problem: Problem, restriction: Any, groups: np.ndarray, group_of: np.ndarray, group_size: int
) -> Restriction:
    """ValueError unless ``restriction`` keeps whole groups, all of ``groups``, and the map."""
    if not (isinstance(restriction, tuple) and len(restriction) == 2):
        raise TypeError("restrict must return a Restriction(problem, index)")
    sub, index = restriction
    index = np.asarray(index)
    if not isinstance(sub, Problem):
        raise TypeError(f"restrict returned a {type(sub).__name__}, not a solvers.Problem")
    if index.shape != sub.shape or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"restriction index must be an int array of shape {sub.shape}")
    flat = index.ravel()
    if flat.min() < 0 or flat.max() >= problem.size or np.unique(flat).size != flat.size:
        raise ValueError("restriction index must hold distinct indices of the full variable")
    counts = np.bincount(group_of[flat], minlength=group_of.max() + 1)
    kept = np.flatnonzero(counts)
    if np.any(counts[kept] != group_size) or not np.isin(groups, kept).all():
        raise ValueError("restriction must keep whole groups, including every requested group")
    if sub.prediction_shape != problem.prediction_shape:
        raise ValueError(
            f"restricted predictions have shape {sub.prediction_shape}, "
            f"the full problem's {problem.prediction_shape}"
        )
    # Compiled pieces the solve needs anyway (full predict, the restricted predict, the embedding),
    # so a check costs few compilations of its own.
    x_r = jnp.asarray(np.random.default_rng(1).standard_normal(sub.shape), problem.dtype)
    full = _embed(problem, index, x_r)
    a, b = np.asarray(_predict(sub, x_r)), np.asarray(_predict(problem, full))
    scale = 1e4 * float(jnp.finfo(problem.dtype).eps) * max(1.0, float(np.max(np.abs(b))))
    if np.max(np.abs(a - b)) > scale:
        raise ValueError("restricted predict disagrees with the full predict on embedded x")
    pa, pb = float(_penalty_value(sub.penalty, x_r)), float(_penalty_value(problem.penalty, full))
    if abs(pa - pb) > scale * max(1.0, abs(pb)):
        raise ValueError("restricted penalty disagrees with the full penalty on embedded x")
    return Restriction(sub, index)


@jax.jit
def _penalty_value(penalty: GroupL2, x: Array) -> Array:
    return penalty.value(x)


@jax.jit
def _predict(problem: Problem, x: Array) -> Array:
    return problem.predict(x)


@jax.jit
def _gather(x: Array, flat_index: Array) -> Array:
    """x.ravel()[flat_index], compiled (an eager gather re-traces its indexing every call)."""
    return jnp.take(x.ravel(), flat_index, unique_indices=True)


def _ladder(size: int, initial: int, total: int) -> int:
    """The smallest ``initial * 2^j`` >= size, capped at ``total``: few distinct shapes, so few
    compilations of the restricted solver."""
    step = initial
    while step < size:
        step *= 2
    return min(step, total)


def solve_working_set(
    problem: Problem,
    restrict: Restrict | None = None,
    tol: float = 1e-8,
    max_iter: int = 10_000,
    x0: Any = None,
    operator_norms: Any = None,
    initial_size: int = 32,
    max_outer: int = 50,
    check_restriction: bool = True,
    verbose: bool = False,
    **fista_options: Any,
) -> SolveResult:
    """Solve ``problem`` by FISTA on growing working sets, certified on the FULL problem.

    Each outer round: certificate of the full problem at x (one full adjoint: A x comes from the
    restriction that produced x), or, once gap-safe screening has left at most ``SHRINK_RATIO``
    of the groups, of the problem restricted to the survivors (``restrict``; module docstring);
    a claim of optimality is confirmed by the full problem's own forward and adjoint maps (one
    more certificate; if it disagrees the rounds go on); stop if the relative gap is <= tol;
    otherwise keep the support of x (except groups whose
    score ``|[-A_g^T u]|`` fell below ``KEEP_RATIO * beta`` or that are screened) plus the groups
    closest to violating dual feasibility (``beta - score_g``, divided by ``|A_g|`` when operator
    norms are given, as in Celer), ``MARGIN`` times as many groups as kept, rounded up to
    ``initial_size * 2^j`` (few shapes, few compilations), doubling when the gap stalls for two
    rounds;
    solve the restricted problem warm-started from x to a relative gap of
    ``max(tol / 2, INNER_RATIO * current gap)``; embed.

    restrict: ``groups -> Restriction`` (see ``Restriction``); default ``restrict_groups``
      (whose restrictions embed into the full map, so certificates stay on the full problem).
    operator_norms: optional (G,) upper bounds on ``|A_g|_2``: enables gap-safe screening
      (groups certified zero never enter the working set, and with ``restrict`` the certificates
      shrink to the survivors) and the Celer priority.
    max_iter: budget of inner FISTA iterations over all rounds.
    check_restriction: validate the first restriction of each restricted shape (whole groups,
      every requested group, the same map and penalty on embedded points). Optimality is only
      claimed from the full certificate, so a faulty restriction could slow the solve but never
      fake a solution.
    fista_options: passed to ``solvers.solve`` (step_size, restart, power_iterations,
      lipschitz_decay, lipschitz). Each round after the first starts from the previous round's
      final Lipschitz estimate (no power method; backtracking corrects it as the set grows).

    Returns a ``SolveResult`` (method "fista/working_set") whose objective, dual and gap are the
    full problem's (lipschitz: the last restricted problem's estimate, a lower bound for the
    full problem's). history holds one row per round: "iteration" (cumulative inner iterations),
    "objective", "gap" (the round's certificate: the full problem's, or the screening
    survivors', which bounds the same optimum; the last row's is the full problem's),
    "working_set" (groups in the restricted problem that produced x), "screened" (groups certified zero so far), "inner_seconds" (cumulative seconds
    in the restricted FISTA solves; the rest is certificates and restrictions), "seconds" (wall
    time since the call began, at the round's certificate: time to each gap).
    """
    penalty = _check_penalty(problem)
    if not (isinstance(tol, float | int) and tol > 0):
        raise ValueError(f"tol must be a number > 0; got {tol!r}")
    for name, value in (("max_iter", max_iter), ("initial_size", initial_size)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    if not (isinstance(max_outer, int) and max_outer >= 1):
        raise ValueError(f"max_outer must be an int >= 1; got {max_outer!r}")
    start = time.perf_counter()
    groups = penalty.group_indices(problem.shape)
    G = groups.shape[0]
    group_of = np.empty(problem.size, dtype=int)
    group_of[groups] = np.arange(G)[:, None]
    norms = None
    if operator_norms is not None:
        norms = np.asarray(operator_norms, dtype=float)
        if norms.shape != (G,) or not np.all(np.isfinite(norms)) or np.any(norms < 0):
            raise ValueError(f"operator_norms must be (G,) = ({G},) finite values >= 0")
    if x0 is None:
        x = problem.zeros()
    else:
        x = jnp.asarray(x0, problem.dtype)
        if x.shape != problem.shape:
            raise ValueError(f"x0 must have the problem shape {problem.shape}; got {x.shape}")
    beta = float(penalty.beta)
    screened = np.zeros(G, dtype=bool)
    rows: list[tuple[float, ...]] = []
    iterations, growth, width, inner_seconds = 0, 1, 0, 0.0
    best_dual = full_dual = -np.inf  # best lower bounds: any certificate's, the full problem's
    gaps: list[float] = []
    checked_shapes: set[tuple[int, ...]] = set()

    def checked(restriction: Any, requested: np.ndarray) -> Restriction:
        """``restriction``, validated if its shape is new (``check_restriction``)."""
        shape = tuple(np.shape(restriction[1])) if isinstance(restriction, tuple) else None
        if check_restriction and shape not in checked_shapes:
            restriction = _check_restriction(
                problem, restriction, requested, group_of, groups.shape[1]
            )
            checked_shapes.add(shape)
        return Restriction(*restriction)

    lipschitz = fista_options.pop("lipschitz", None)
    # The certificate's problem: the full one, or its restriction to the screening survivors.
    domain, domain_groups, shrink = None, np.arange(G), restrict is not None and norms is not None
    pred = None  # A x when known from the restriction that produced x
    restrict = restrict if restrict is not None else (lambda g: restrict_groups(problem, g))
    for round_ in range(max_outer + 1):  # the last round only certifies the last x
        x, primal, dual, scores, theta = _certify(problem, x, domain, domain_groups, pred)
        exact = domain is None and pred is None  # the full problem's own maps only
        best_dual = max(best_dual, dual)
        full_dual = max(full_dual, dual) if exact else full_dual
        gap = primal - best_dual
        if norms is not None:  # the rule needs the feasible point: scores scaled by theta
            screened |= theta * scores + _radius(problem, gap) * norms < beta
        solved = bool(is_solved(primal, gap, tol))
        last = round_ == max_outer or iterations >= max_iter or not np.isfinite(primal)
        if not exact and (solved or last):  # the result is the full problem's certificate
            full = _certify(problem, x)
            full_dual = max(full_dual, full.dual)
            primal, gap = full.primal, full.primal - full_dual
            solved = bool(is_solved(primal, gap, tol))
            if not solved:  # go on, from the full problem's bounds only
                best_dual = full_dual
        elapsed = time.perf_counter() - start
        rows.append((iterations, primal, gap, width, screened.sum(), inner_seconds, elapsed))
        gaps.append(gap)
        if solved or last:
            break
        survivors = np.flatnonzero(~screened)
        if shrink and 0 < survivors.size <= SHRINK_RATIO * domain_groups.size:
            domain = checked(restrict(survivors), survivors)
            domain_groups = group_of[np.asarray(domain.index).reshape(-1, groups.shape[1])[:, 0]]
        # Keep the support, except groups on their way out (score far below beta) or screened.
        kept = (np.asarray(penalty.group_norms(x)) > 0) & (scores >= KEEP_RATIO * beta) & ~screened
        priority = beta - scores if norms is None else (beta - scores) / np.maximum(norms, 1e-300)
        order = np.argsort(np.where(kept, -np.inf, np.where(screened, np.inf, priority)))
        # Sizes stay on the ladder (screened groups, last in the order, fill it if need be):
        # a size seen before reuses its compiled solver.
        size = _ladder(max(initial_size, MARGIN * int(kept.sum())) * growth, initial_size, G)
        chosen = np.sort(order[:size])
        stalled = len(gaps) >= 3 and min(gaps[-2:]) >= gaps[-3]  # two rounds without gain
        if stalled:
            growth *= 2  # widen the set (at worst it becomes every group)
            size = _ladder(2 * size, initial_size, G)
            chosen = np.sort(order[:size])
        sub, index = checked(restrict(chosen), chosen)
        width = np.asarray(index).size // groups.shape[1]
        relative = gap / max(1.0, abs(primal))
        inner = solve(
            sub,
            method="fista",
            tol=max(0.5 * tol, INNER_RATIO * relative),
            max_iter=max_iter - iterations,
            x0=_gather(x, jnp.asarray(index.ravel())).reshape(sub.shape),
            lipschitz=lipschitz,
            **fista_options,
        )
        lipschitz = inner.lipschitz
        iterations += inner.iterations
        inner_seconds += inner.seconds
        x = _embed(problem, np.asarray(index), inner.x)
        pred = _predict(sub, inner.x)  # = A x: the next certificate needs only the adjoint
    history = np.array(rows, dtype=float)
    objective, gap = float(history[-1, 1]), float(history[-1, 2])
    result = SolveResult(
        x=x,
        objective=objective,
        dual=objective - gap,
        gap=gap,
        status=_status(objective, gap, tol, budget_hit=True),  # stopped: budget or rounds
        iterations=iterations,
        seconds=time.perf_counter() - start,
        history={
            "iteration": history[:, 0].astype(int),
            "objective": history[:, 1],
            "gap": history[:, 2],
            "working_set": history[:, 3].astype(int),
            "screened": history[:, 4].astype(int),
            "inner_seconds": history[:, 5],
            "seconds": history[:, 6],
        },
        method="fista/working_set",
        tol=tol,
        lipschitz=lipschitz,
    )
    if verbose:
        print(result)
    return result


__all__ = [
    "Restrict",
    "Restriction",
    "Screening",
    "gap_safe_screen",
    "group_operator_norms",
    "restrict_groups",
    "solve_working_set",
]
