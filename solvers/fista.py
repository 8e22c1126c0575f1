"""FISTA: accelerated proximal gradient with restart and a duality-gap stop.

Beck & Teboulle (2009), "A fast iterative shrinkage-thresholding algorithm", with the
gradient-based adaptive restart of O'Donoghue & Candes (2015), "Adaptive restart for
accelerated gradient schemes".

Per iteration the method needs one forward map ``A x`` and one adjoint ``A^T g``: the
prediction at the extrapolated point is carried along linearly (``A y = A x + m (A x - A x_prev)``),
and the dual point of the certificate is built from the gradient already computed at ``y``
(any scaled gradient is dual feasible, see ``certificate.py``). The best dual value seen is kept,
so the reported gap only tightens.

``FISTA.update`` is one iteration on an explicit ``FistaState`` (step it by hand), ``FISTA.run``
the jitted ``lax.while_loop`` to the end.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from solvers.certificate import dual_value, is_solved
from solvers.problem import Problem

Array = jax.Array

STEP_SIZES = ("power", "backtracking")
HISTORY_LENGTH = 4096
MAX_BACKTRACKS = 60
GOLDEN_RATIO_FRACTION = 0.6180339887498949


class FistaState(NamedTuple):
    """x, pred_x: iterate and A x.  y, pred_y: extrapolated point and A y.  t: momentum.
    lipschitz: current estimate of the gradient's Lipschitz constant (step = 1 / lipschitz).
    primal: objective at x;  dual: best dual value so far;  gap = primal - dual.
    history: (HISTORY_LENGTH, 3) rows (iteration, primal, gap) recorded every ``stride``
      iterations (every iteration when max_iter <= HISTORY_LENGTH); NaN rows are unused.
    """

    x: Array
    pred_x: Array
    y: Array
    pred_y: Array
    t: Array
    lipschitz: Array
    iteration: Array
    primal: Array
    dual: Array
    gap: Array
    history: Array
    backtracks: Array


def _record(history: Array, iteration: Array, primal: Array, gap: Array, stride: Array) -> Array:
    row = jnp.stack([iteration.astype(history.dtype), primal, gap])
    slot = jnp.where(iteration % stride == 0, iteration // stride - 1, HISTORY_LENGTH)
    return history.at[slot].set(row, mode="drop")  # out-of-range slot: not recorded


def _start_vector(shape: tuple[int, ...], dtype) -> Array:
    """A fixed unit vector with entries spread over [-1/2, 1/2) (the golden-ratio sequence),
    for the power method: deterministic and free to compile (a PRNG costs ~0.4 s of XLA
    compilation on a CPU). An unlucky start only underestimates, which backtracking corrects."""
    index = jnp.arange(math.prod(shape), dtype=dtype)
    v = jnp.mod(0.5 + index * GOLDEN_RATIO_FRACTION, 1.0) - 0.5
    return (v / jnp.linalg.norm(v)).reshape(shape)


def _vdot(a: Array, b: Array) -> Array:
    return jnp.vdot(a.ravel(), b.ravel())


@dataclasses.dataclass(frozen=True)
class FISTA:
    """Accelerated proximal gradient for ``Problem``; stops when the gap certifies ``tol``.

    tol: stop when gap <= tol * max(1, |primal|).   max_iter: iteration budget.
    step_size: "power" (power-iteration estimate of |A|^2 times the loss smoothness, guarded by
      backtracking) or "backtracking" (start from a cheap lower estimate and double on failure).
    restart: gradient-based adaptive restart of the momentum.
    power_iterations: iterations of the power method for the initial estimate.
    lipschitz_decay: each iteration first tries the previous Lipschitz estimate times this
      factor, so the step grows back where the local curvature is below the global bound
      (Scheinberg, Goldfarb & Bai 2014, "Fast first-order methods for composite convex
      optimization with backtracking"); 1.0 gives monotone backtracking.
    lipschitz: initial Lipschitz estimate (e.g. ``SolveResult.lipschitz`` of a related solve):
      skips the power method; backtracking corrects an underestimate. None: estimate it.
    """

    tol: float = 1e-8
    max_iter: int = 10_000
    step_size: str = "power"
    restart: bool = True
    power_iterations: int = 30
    lipschitz_decay: float = 0.9
    lipschitz: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.tol, float | int) and self.tol > 0):
            raise ValueError(f"tol must be a number > 0; got {self.tol!r}")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an int >= 1; got {self.max_iter!r}")
        if self.step_size not in STEP_SIZES:
            raise ValueError(f"step_size must be one of {STEP_SIZES}; got {self.step_size!r}")
        if not (isinstance(self.lipschitz_decay, float | int) and 0 < self.lipschitz_decay <= 1):
            raise ValueError(f"lipschitz_decay must be in (0, 1]; got {self.lipschitz_decay!r}")
        if self.lipschitz is not None and not (
            isinstance(self.lipschitz, float | int) and 0 < self.lipschitz < float("inf")
        ):
            raise ValueError(
                f"lipschitz must be None or a finite number > 0; got {self.lipschitz!r}"
            )

    def lipschitz_estimate(self, problem: Problem) -> Array:
        """Estimate of the Lipschitz constant of x -> A^T grad L(A x)."""
        v = _start_vector(problem.shape, problem.dtype)
        iterations = self.power_iterations if self.step_size == "power" else 1

        def power_step(_, v):
            w = problem.adjoint(problem.predict(v))
            return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(w.dtype).tiny)

        v = jax.lax.fori_loop(0, iterations, power_step, v)
        squared_norm = jnp.linalg.norm(problem.predict(v)) ** 2
        safety = 1.02 if self.step_size == "power" else 1.0
        lipschitz = safety * problem.loss.lipschitz() * squared_norm
        return jnp.maximum(lipschitz, jnp.finfo(problem.dtype).tiny)

    def init(self, problem: Problem, x0: Array, lipschitz: Array | None = None) -> FistaState:
        """The state at x0.  lipschitz: initial Lipschitz estimate (may be traced); None takes
        the ``lipschitz`` option, and when that is None too runs ``lipschitz_estimate`` (so the
        power method is compiled only into solvers that need it)."""
        if lipschitz is None:
            lipschitz = self.lipschitz
        if lipschitz is None:
            lipschitz = self.lipschitz_estimate(problem)
        lipschitz = jnp.asarray(lipschitz, problem.dtype)
        pred = problem.predict(x0)
        primal = problem.objective(x0)
        dtype = problem.dtype
        return FistaState(
            x=x0,
            pred_x=pred,
            y=x0,
            pred_y=pred,
            t=jnp.ones((), dtype),
            lipschitz=lipschitz,
            iteration=jnp.zeros((), jnp.int32),
            primal=primal,
            dual=jnp.array(-jnp.inf, dtype),
            gap=jnp.array(jnp.inf, dtype),
            history=jnp.full((HISTORY_LENGTH, 3), jnp.nan, dtype),
            backtracks=jnp.zeros((), jnp.int32),
        )

    def update(self, problem: Problem, state: FistaState, stride: Array = 1) -> FistaState:
        """One proximal-gradient step from the extrapolated point, then momentum or restart.

        stride: record (iteration, primal, gap) in the history every ``stride`` iterations.
        """
        loss, penalty = problem.loss, problem.penalty
        loss_grad = loss.grad(state.pred_y)
        grad = problem.adjoint(loss_grad)
        dual = jnp.maximum(state.dual, dual_value(problem, loss_grad, grad))
        f_y = loss.value(state.pred_y)
        slack = 16 * jnp.finfo(problem.dtype).eps * (1.0 + jnp.abs(f_y))

        def trial(carry):
            """Prox step with twice the previous estimate (the first try undoes the doubling)."""
            lipschitz = 2.0 * carry[0]
            x_new = penalty.prox(state.y - grad / lipschitz, 1.0 / lipschitz)
            pred_new = problem.predict(x_new)
            f_new = loss.value(pred_new)
            step = x_new - state.y
            bound = f_y + _vdot(grad, step) + 0.5 * lipschitz * _vdot(step, step)
            return lipschitz, x_new, pred_new, f_new, f_new <= bound + slack, carry[5] + 1

        # A do-while loop: the body is traced once, the first pass uses decay * state.lipschitz.
        first = (
            0.5 * self.lipschitz_decay * state.lipschitz,
            state.y,
            state.pred_y,
            f_y,
            jnp.bool_(False),
            jnp.int32(-1),
        )
        lipschitz, x_new, pred_new, f_new, _, count = jax.lax.while_loop(
            lambda c: jnp.logical_not(c[4]) & (c[5] < MAX_BACKTRACKS), trial, first
        )
        primal = f_new + penalty.value(x_new)

        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2))
        momentum = (state.t - 1.0) / t_next
        if self.restart:
            restart = _vdot(state.y - x_new, x_new - state.x) > 0
            momentum = jnp.where(restart, 0.0, momentum)
            t_next = jnp.where(restart, 1.0, t_next)

        gap = primal - dual
        return FistaState(
            x=x_new,
            pred_x=pred_new,
            y=x_new + momentum * (x_new - state.x),
            pred_y=pred_new + momentum * (pred_new - state.pred_x),
            t=t_next,
            lipschitz=lipschitz,
            iteration=state.iteration + 1,
            primal=primal,
            dual=dual,
            gap=gap,
            history=_record(state.history, state.iteration + 1, primal, gap, stride),
            backtracks=state.backtracks + count,
        )

    def should_continue(self, state: FistaState, tol: Array, max_iter: Array) -> Array:
        solved = is_solved(state.primal, state.gap, tol)
        return (state.iteration < max_iter) & ~solved & jnp.isfinite(state.primal)

    def run(self, problem: Problem, x0: Array) -> FistaState:
        """Iterate from ``x0`` until the gap certifies ``tol`` or ``max_iter`` is reached."""
        return _run(self, problem, jnp.asarray(x0, problem.dtype))


def _split(tree):
    """Split a pytree into its array leaves (traced) and a hashable rest (static)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = tuple(
        isinstance(leaf, jax.Array | jnp.ndarray) or hasattr(leaf, "__array__") for leaf in leaves
    )
    arrays = [leaf for leaf, a in zip(leaves, is_array, strict=True) if a]
    static = tuple(None if a else leaf for leaf, a in zip(leaves, is_array, strict=True))
    return arrays, (treedef, static, is_array)


def _merge(arrays, structure):
    treedef, static, is_array = structure
    it = iter(arrays)
    leaves = [next(it) if a else s for s, a in zip(static, is_array, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _run(solver: FISTA, problem: Problem, x0: Array) -> FistaState:
    arrays, structure = _split(problem)
    # tol, max_iter and the initial Lipschitz estimate are traced, so changing them does not
    # recompile; whether an estimate is given (None: power method) selects the compiled variant.
    static = dataclasses.replace(solver, tol=1.0, max_iter=1, lipschitz=None)
    lipschitz = None if solver.lipschitz is None else jnp.asarray(solver.lipschitz, problem.dtype)
    tol = jnp.asarray(solver.tol, problem.dtype)
    max_iter = jnp.asarray(solver.max_iter, jnp.int32)
    return _run_jit(static, structure, arrays, x0, tol, max_iter, lipschitz)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_jit(
    solver: FISTA,
    structure,
    arrays,
    x0: Array,
    tol: Array,
    max_iter: Array,
    lipschitz: Array | None,
) -> FistaState:
    problem = _merge(arrays, structure)
    stride = jnp.maximum(1, -(-max_iter // HISTORY_LENGTH))
    return jax.lax.while_loop(
        lambda state: solver.should_continue(state, tol, max_iter),
        lambda state: solver.update(problem, state, stride),
        solver.init(problem, x0, lipschitz),
    )
