"""Working sets for group-sparse problems: the solve method ``"working_set"``.

Johnson & Guestrin 2015, "Blitz"; Massias, Gramfort, Salmon 2018, "Celer": solve the problem
restricted to a few groups, certify, add the groups that come closest to violating dual
feasibility, repeat. Optimality is only ever claimed from a certificate of the FULL problem
(or of the problem restricted to the gap-safe screening survivors, which has the same optimum
and dual optimum; ``solvers.screening``), and a claim is always confirmed by the full
problem's own maps. The restricted solves are a means to reach it.

Each round is four named steps:

1. **certify** x: the full problem's certificate (one adjoint: A x comes from the restriction
   that produced x), or, once screening has left at most ``SHRINK_RATIO`` of the groups, that
   of the problem restricted to the survivors; screening marks more groups inactive;
2. **select** the next working set: the support of x (except groups whose score fell below
   ``KEEP_RATIO * beta`` or that are screened) plus the groups closest to violating dual
   feasibility (``beta - score``, divided by ``|A_g|`` when operator norms are given, as in
   Celer), ``MARGIN`` times as many groups as kept, rounded up to ``initial_size * 2^j`` (few
   shapes, few compilations), doubling when the gap stalls for two rounds;
3. **restrict** the problem to them (``restrict``; validated once per new shape);
4. **solve** the restricted problem by FISTA warm-started from x, to a relative gap of
   ``max(tol / 2, INNER_RATIO * current gap)``, from the previous round's step size.

The restricted problems are cheaper per iteration only when the linear map itself can be
restricted (e.g. keep the columns of the data that feed the kept groups). That knowledge belongs
to whoever built the map, so it comes in as a ``restrict`` callable; without one, the generic
``restrict_groups`` embeds the kept variables into the full map (correct, but a full map per
iteration).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from solvers import checks
from solvers.certificate import honest, is_solved, status
from solvers.compile import problem_jit
from solvers.fista import solve_fista
from solvers.penalties import GroupL2
from solvers.problem import Problem, device_array
from solvers.result import SolveResult
from solvers.screening import (
    check_group_penalty,
    check_operator_norms,
    group_certificate,
    radius,
    safe_inactive,
)

Array = jax.Array
KEEP_RATIO = 0.5  # support groups scoring below KEEP_RATIO * beta leave the working set
MARGIN = 1.25  # the working set holds MARGIN times the kept groups (before rounding up)
INNER_RATIO = 0.1  # each round solves the restricted problem to this fraction of the current gap
SHRINK_RATIO = 0.125  # certify on the screening survivors once they are this fraction of the groups
HISTORY_COLUMNS = (
    "iteration", "objective", "gap", "working_set", "screened", "inner_seconds", "seconds",
)  # fmt: skip


class Restriction(NamedTuple):
    """The problem restricted to some groups.

    problem: a ``Problem`` over the kept variables, with the same loss and the penalty of the
      kept groups. Its penalty strength is set to the full problem's by the solver, so one
      restriction serves a whole regularization path.
    index: integer array of ``problem.shape``: the flat index, in the full variable, of each kept
      entry. Embedding (zeros elsewhere) must preserve predictions and penalty:
      ``full.predict(embed(x_r)) == problem.predict(x_r)``. It must hold whole groups and may hold
      more groups than requested (e.g. padded to a size that reuses a compiled solver).
    """

    problem: Problem
    index: np.ndarray


Restrict = Callable[[np.ndarray], Restriction]


def _embedded_predict(predict: Callable, index: Array, template: Array, x: Array) -> Array:
    full = template.ravel().at[index].set(x.ravel().astype(template.dtype), unique_indices=True)
    return predict(full.reshape(template.shape))


def restrict_groups(problem: Problem, groups: np.ndarray) -> Restriction:
    """The generic restriction: the kept groups as a (k, S) variable embedded in the full map.

    Correct for any ``GroupL2``/``L1`` problem but no cheaper per iteration than the full map;
    a ``restrict`` that slices the data is what makes working sets pay off.
    """
    penalty = check_group_penalty(problem)
    index = penalty.group_indices(problem.shape)[np.asarray(groups, dtype=int)]
    predict = Partial(_embedded_predict, problem.predict, _flat(index), problem.zeros())
    sub = Problem(
        predict=predict,
        shape=index.shape,
        loss=problem.loss,
        penalty=GroupL2(penalty.beta, axis=-1, nonneg=penalty.nonneg),
        dtype=problem.dtype,
        check_linear=False,
    )
    return Restriction(sub, index)


@functools.partial(jax.jit, static_argnums=0)
def _scatter(shape: tuple[int, ...], flat_index: Array, values: Array) -> Array:
    full = jnp.zeros(math.prod(shape), values.dtype).at[flat_index]
    return full.set(values.ravel(), unique_indices=True).reshape(shape)


@functools.partial(jax.jit, static_argnums=2)
def _gather(x: Array, flat_index: Array, shape: tuple[int, ...]) -> Array:
    """x.ravel()[flat_index] reshaped to ``shape``, compiled (an eager gather re-traces its
    indexing every call, and each eager op is a compilation in a new process)."""
    return jnp.take(x.ravel(), flat_index, unique_indices=True).reshape(shape)


def _flat(index: np.ndarray) -> Array:
    """A host index array, flattened, on the device (a transfer, not a compiled copy)."""
    return jax.device_put(np.ravel(index))


def _host_view(x: Array) -> np.ndarray | None:
    """x as a numpy array when it lives in host memory (the CPU backend), else None.

    Indexing on the host costs no compilation; the compiled ``_gather``, ``_scatter`` and
    ``_group_norms`` are one compilation each per working-set shape (15-25 ms apiece in a new
    process on 2 CPU cores), and they keep an accelerator's data on the device."""
    if all(device.platform == "cpu" for device in x.devices()):
        return np.asarray(x)
    return None


def gather(x: Array, index: np.ndarray) -> Array:
    """The entries of the full variable x at ``index``, in its shape (a restricted variable)."""
    host = _host_view(x)
    if host is not None:
        return jax.device_put(host.ravel()[np.ravel(index)].reshape(np.shape(index)))
    return _gather(x, _flat(index), np.shape(index))


@problem_jit
def _predict(problem: Problem, x: Array) -> Array:
    return problem.predict(x)


@jax.jit
def _penalty_value(penalty: GroupL2, x: Array) -> Array:
    return penalty.value(x)


@jax.jit
def _group_norms(penalty: GroupL2, x: Array) -> Array:
    return penalty.group_norms(x)


def embed(problem: Problem, index: np.ndarray, x_r: Array) -> Array:
    """The full variable with x_r at ``index`` and zeros elsewhere."""
    x_r = device_array(x_r, problem.dtype)
    host = _host_view(x_r)
    if host is not None:
        full = np.zeros(problem.size, host.dtype)
        full[np.ravel(index)] = host.ravel()
        return jax.device_put(full.reshape(problem.shape))
    return _scatter(problem.shape, _flat(index), x_r)


def _group_support(penalty: GroupL2, groups: np.ndarray, x: Array) -> np.ndarray:
    """(G,) bool: the groups with a nonzero entry in x. groups: (G, S) flat indices
    (``penalty.group_indices``)."""
    host = _host_view(x)
    if host is not None:
        return np.any(host.ravel()[groups] != 0, axis=1)
    return np.asarray(_group_norms(penalty, x)) > 0


def check_restriction(
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
    x_r = device_array(np.random.default_rng(1).standard_normal(sub.shape), problem.dtype)
    full = embed(problem, index, x_r)
    a, b = np.asarray(_predict(sub, x_r)), np.asarray(_predict(problem, full))
    scale = 1e4 * float(jnp.finfo(problem.dtype).eps) * max(1.0, float(np.max(np.abs(b))))
    if np.max(np.abs(a - b)) > scale:
        raise ValueError("restricted predict disagrees with the full predict on embedded x")
    pa, pb = float(_penalty_value(sub.penalty, x_r)), float(_penalty_value(problem.penalty, full))
    if abs(pa - pb) > scale * max(1.0, abs(pb)):
        raise ValueError("restricted penalty disagrees with the full penalty on embedded x")
    return Restriction(sub, index)


def _ladder(size: int, initial: int, total: int) -> int:
    """The smallest ``initial * 2^j`` >= size, capped at ``total``: few distinct shapes, so few
    compilations of the restricted solver."""
    step = initial
    while step < size:
        step *= 2
    return min(step, total)


class _RoundCertificate(NamedTuple):
    """x (zero outside the certificate's groups), its objective, a lower bound on the optimum,
    the (G,) unscaled group scores (0 outside: screened) and the dual scaling theta."""

    x: Array
    primal: float
    dual: float
    scores: np.ndarray
    theta: float


@dataclasses.dataclass
class _Rounds:
    """The state of one working-set solve (``solve_working_set``), advanced round by round."""

    problem: Problem
    restrict: Restrict
    norms: np.ndarray | None
    tol: float
    max_iter: int
    initial_size: int
    check: bool
    fista_options: dict[str, Any]
    shrink: bool  # certificates may move to the screening survivors
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.penalty = self.problem.penalty
        self.beta = float(self.penalty.beta)
        self.groups = self.penalty.group_indices(self.problem.shape)
        self.G, self.group_size = self.groups.shape
        self.group_of = np.empty(self.problem.size, dtype=int)
        self.group_of[self.groups] = np.arange(self.G)[:, None]
        self.screened = np.zeros(self.G, dtype=bool)
        self.domain: Restriction | None = None  # the certificate's problem: None = the full one
        self.domain_groups = np.arange(self.G)
        self.rows: list[tuple[float, ...]] = []
        self.gaps: list[float] = []
        self.checked_shapes: set[tuple[int, ...]] = set()
        self.iterations, self.growth, self.width, self.inner_seconds = 0, 1, 0, 0.0
        self.best_dual = self.full_dual = -np.inf  # any certificate's, the full problem's
        self.lipschitz = self.fista_options.pop("lipschitz", None)

    # -- step 1: certify ---------------------------------------------------------------

    def _certificate(self, x: Array, pred: Array | None) -> _RoundCertificate:
        """At x: the full problem's certificate (pred: A x if known) or, with a screened
        domain, that of the survivors' problem (x is projected on them)."""
        if self.domain is None:
            pred = _predict(self.problem, x) if pred is None else pred
            cert = group_certificate(self.problem, x, pred)
            scores = np.asarray(cert.scores, float)
            return _RoundCertificate(
                x, float(cert.primal), float(cert.dual), scores, float(cert.theta)
            )
        sub, index = self.domain
        x_sub = gather(x, index)
        cert = group_certificate(sub, x_sub, _predict(sub, x_sub))
        scores = np.zeros(self.G)
        scores[self.domain_groups] = np.asarray(cert.scores, float)
        x = embed(self.problem, index, x_sub)
        return _RoundCertificate(x, float(cert.primal), float(cert.dual), scores, float(cert.theta))

    def certify(self, x: Array, pred: Array | None, last: bool) -> tuple[_RoundCertificate, bool]:
        """Certify x, screen, and confirm a claim (or the last round) by the full problem's own
        maps; record the round. Returns the certificate and whether x is certified optimal."""
        cert = self._certificate(x, pred)
        exact = self.domain is None and pred is None
        self.best_dual = max(self.best_dual, cert.dual)
        if exact:
            self.full_dual = max(self.full_dual, cert.dual)
        primal, gap = cert.primal, cert.primal - self.best_dual
        if self.norms is not None:  # the rule needs the feasible point: scores scaled by theta
            r = radius(self.problem, gap)
            self.screened |= safe_inactive(cert.scores, cert.theta, r, self.norms, self.beta)
        solved = bool(is_solved(primal, gap, self.tol))
        last = last or not np.isfinite(primal)
        if not exact and (solved or last):  # the result is the full problem's certificate
            full = self._certificate_of_full(cert.x)
            self.full_dual = max(self.full_dual, full.dual)
            primal, gap = full.primal, full.primal - self.full_dual
            solved = bool(is_solved(primal, gap, self.tol))
            if not solved:  # go on, from the full problem's bounds only
                self.best_dual = self.full_dual
        elapsed = time.perf_counter() - self.start
        self.rows.append(
            (self.iterations, primal, gap, self.width, self.screened.sum(), self.inner_seconds,
             elapsed)
        )  # fmt: skip
        self.gaps.append(gap)
        return cert._replace(primal=primal), solved

    def _certificate_of_full(self, x: Array) -> _RoundCertificate:
        domain, self.domain = self.domain, None
        try:
            return self._certificate(x, None)
        finally:
            self.domain = domain

    def shrink_domain(self) -> None:
        """Certify on the screening survivors once they are at most SHRINK_RATIO of the groups."""
        survivors = np.flatnonzero(~self.screened)
        if self.shrink and 0 < survivors.size <= SHRINK_RATIO * self.domain_groups.size:
            self.domain = self.checked(self.restrict(survivors), survivors)
            first = np.asarray(self.domain.index).reshape(-1, self.group_size)[:, 0]
            self.domain_groups = self.group_of[first]

    # -- step 2: select ----------------------------------------------------------------

    def select(self, cert: _RoundCertificate) -> np.ndarray:
        """The groups of the next working set (sorted)."""
        beta, scores, screened = self.beta, cert.scores, self.screened
        support = _group_support(self.penalty, self.groups, cert.x)
        kept = support & (scores >= KEEP_RATIO * beta) & ~screened
        priority = (
            beta - scores
            if self.norms is None
            else (beta - scores) / np.maximum(self.norms, 1e-300)
        )
        order = np.argsort(np.where(kept, -np.inf, np.where(screened, np.inf, priority)))
        # Sizes stay on the ladder (screened groups, last in the order, fill it if need be):
        # a size seen before reuses its compiled solver.
        wanted = max(self.initial_size, MARGIN * int(kept.sum())) * self.growth
        size = _ladder(wanted, self.initial_size, self.G)
        gaps = self.gaps
        if len(gaps) >= 3 and min(gaps[-2:]) >= gaps[-3]:  # two rounds without gain
            self.growth *= 2  # widen the set (at worst it becomes every group)
            size = _ladder(2 * size, self.initial_size, self.G)
        return np.sort(order[:size])

    # -- step 3: restrict --------------------------------------------------------------

    def checked(self, restriction: Any, requested: np.ndarray) -> Restriction:
        """``restriction`` at the full problem's penalty strength, validated if its shape is
        new (``check``)."""
        if isinstance(restriction, tuple) and len(restriction) == 2:
            sub, index = restriction
            if isinstance(sub, Problem):
                restriction = Restriction(sub.with_beta(self.beta), index)
        shape = tuple(np.shape(restriction[1])) if isinstance(restriction, tuple) else None
        if self.check and shape not in self.checked_shapes:
            restriction = check_restriction(
                self.problem, restriction, requested, self.group_of, self.group_size
            )
            self.checked_shapes.add(shape)
        return Restriction(*restriction)

    # -- step 4: solve -----------------------------------------------------------------

    def solve_restricted(self, restriction: Restriction, x: Array, gap: float, primal: float):
        """FISTA on the restricted problem from x; returns (the embedded x, its A x)."""
        sub, index = restriction
        self.width = np.asarray(index).size // self.group_size
        relative = gap / max(1.0, abs(primal))
        inner = solve_fista(
            sub,
            tol=max(0.5 * self.tol, INNER_RATIO * relative),
            max_iter=self.max_iter - self.iterations,
            x0=gather(x, index),
            lipschitz=self.lipschitz,
            progress=False,
            **self.fista_options,
        )
        self.lipschitz = inner.lipschitz
        self.iterations += inner.iterations
        self.inner_seconds += inner.seconds
        pred = _predict(sub, inner.x) if inner.prediction is None else inner.prediction
        return embed(self.problem, np.asarray(index), inner.x), pred

    def result(self, x: Array) -> SolveResult:
        history = np.array(self.rows, dtype=float)
        columns = {name: history[:, i] for i, name in enumerate(HISTORY_COLUMNS)}
        for name in ("iteration", "working_set", "screened"):
            columns[name] = columns[name].astype(int)
        last = history[-1]
        cert = honest(last[1], last[1] - last[2])
        return SolveResult(
            x=x,
            objective=cert.primal,
            dual=cert.dual,
            gap=cert.gap,
            status=status(cert.primal, cert.gap, self.tol, "max_iter"),  # budget or rounds
            iterations=self.iterations,
            seconds=time.perf_counter() - self.start,
            history=columns,
            method="fista/working_set",
            tol=self.tol,
            lipschitz=self.lipschitz,
            timeline={k: columns[k] for k in ("iteration", "objective", "gap", "seconds")},
        )


def solve_working_set(
    problem: Problem,
    *,
    tol: float,
    max_iter: int,
    x0: Any = None,
    restrict: Restrict | None = None,
    operator_norms: Any = None,
    initial_size: int = 32,
    max_outer: int = 50,
    check_restriction: bool = True,
    **fista_options: Any,
) -> SolveResult:
    """Solve ``problem`` (a ``GroupL2``/``L1`` penalty) by FISTA on growing working sets,
    certified on the FULL problem (module docstring).

    restrict: ``groups -> Restriction``; default ``restrict_groups`` (whose restrictions embed
      into the full map, so certificates stay on the full problem).
    operator_norms: optional (G,) upper bounds on ``|A_g|_2``: enables gap-safe screening
      (groups certified zero never enter the working set, and with ``restrict`` the certificates
      shrink to the survivors) and the Celer priority.
    max_iter: budget of inner FISTA iterations over all rounds.  max_outer: rounds.
    check_restriction: validate the first restriction of each restricted shape (whole groups,
      every requested group, the same map and penalty on embedded points). Optimality is only
      claimed from the full certificate, so a faulty restriction could slow the solve but never
      fake a solution.
    fista_options: FISTA's (step_size, restart, power_iterations, lipschitz_decay, lipschitz).
      Each round after the first starts from the previous round's final Lipschitz estimate.

    Returns a ``SolveResult`` (method "fista/working_set") whose objective, dual and gap are the
    full problem's (lipschitz: the last restricted problem's estimate, a lower bound for the
    full problem's). history holds one row per round: "iteration" (cumulative inner iterations),
    "objective", "gap" (the round's certificate: the full problem's, or the screening
    survivors', which bounds the same optimum; the last row's is the full problem's),
    "working_set" (groups in the restricted problem that produced x), "screened" (groups
    certified zero so far), "inner_seconds" (cumulative seconds in the restricted FISTA solves;
    the rest is certificates and restrictions), "seconds" (wall time since the call began, at
    the round's certificate: time to each gap).
    """
    check_group_penalty(problem)
    initial_size = checks.integer("initial_size", initial_size, 1)
    max_outer = checks.integer("max_outer", max_outer, 1)
    norms = None if operator_norms is None else check_operator_norms(problem, operator_norms)
    rounds = _Rounds(
        problem=problem,
        restrict=restrict or functools.partial(restrict_groups, problem),
        norms=norms,
        tol=tol,
        max_iter=max_iter,
        initial_size=initial_size,
        check=checks.boolean("check_restriction", check_restriction),
        fista_options=dict(fista_options),
        shrink=restrict is not None and norms is not None,
    )
    x = problem.zeros() if x0 is None else x0
    pred = None  # A x when known from the restriction that produced x
    for round_ in range(max_outer + 1):  # the last round only certifies the last x
        last = round_ == max_outer or rounds.iterations >= max_iter
        cert, solved = rounds.certify(x, pred, last)
        x = cert.x
        if solved or last or not np.isfinite(cert.primal):
            break
        rounds.shrink_domain()
        chosen = rounds.select(cert)
        restriction = rounds.checked(rounds.restrict(chosen), chosen)
        x, pred = rounds.solve_restricted(restriction, x, rounds.gaps[-1], cert.primal)
    return rounds.result(x)


__all__ = [
    "Restrict",
    "Restriction",
    "check_restriction",
    "embed",
    "restrict_groups",
    "solve_working_set",
]
