"""The program-family protocol: everything convextx knows about one convex program family.

A family is one object in one module (``convextx/families/<name>.py``), registered by name in
``convextx.families``. It owns, for its model class:

- **data**: ``prepare(X, options)`` builds the device-resident bundle the linear map reads
  (the inputs, and e.g. the gate patterns of P3, computed once), ``data_for`` the bundle of new
  inputs with the same fixed parts;
- **targets**: the losses it accepts (``losses``), ``encode`` (y -> the loss's targets, the
  number of outputs c and whether predictions are squeezed to one output), ``default_loss``;
- **the program**: ``shape`` of the variable, the linear map (``predict``), the ``penalty``,
  and its ``dense_matrix`` in closed form for the cvxpy route;
- **working sets** (group penalties only): the data ``restriction`` and ``operator_norm_bounds``;
- **recovery**: ``recover`` (solution -> network heads reaching the same objective),
  ``token_norms`` and ``attention`` (the heads' token weights);
- **its nonconvex twin**: the ``baselines`` network of the same architecture
  (``twin_forward``, ``twin_penalty``, ``twin_heads``), scored on the same objective by
  ``nonconvex_objective``.

Nothing outside the families switches on a family's name: the estimator, the working sets,
recovery, the zoo and the benchmarks ask the family object.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import jax
import numpy as np
from jax.tree_util import Partial

import solvers
from solvers import checks

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram

Array = jax.Array
LOSSES = ("squared", "logistic", "cross_entropy")
CLASSIFICATION_LOSSES = ("logistic", "cross_entropy")


class Targets(NamedTuple):
    """What a family makes of y.

    values: the loss's targets (floats, +-1 labels, or integer class indices).
    outputs: c, the number of output columns of the convex model.
    scalar_output: predictions are squeezed to one output ((N,), or (N, n) per token).
    weights: per-row loss weights (one per loss row: per sample, or per token when the loss
      flattens tokens) or None.
    """

    values: np.ndarray
    outputs: int
    scalar_output: bool
    weights: np.ndarray | None


class Data(NamedTuple):
    """The bundle of most families: the inputs X (N, n, d) in the solve's dtype."""

    X: Array


def _first_output(predict: Partial, x: Array) -> Array:
    return predict(x)[..., 0]


def _flatten_rows(predict: Partial, x: Array) -> Array:
    out = predict(x)
    return out.reshape(-1, out.shape[-1])


def num_classes(y: np.ndarray, given: int | None) -> int:
    """The number of classes of integer labels y (given, or max label + 1, at least 2)."""
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"cross-entropy labels y must be integers; got dtype {y.dtype}")
    top = int(y.max()) + 1
    if given is None:
        return max(top, 2)
    given = checks.integer("num_classes", given, 2)
    if top > given:
        raise ValueError(f"label {top - 1} is out of range for num_classes={given}")
    return given


def check_rows(X_shape: tuple[int, ...], y: np.ndarray) -> None:
    if y.ndim == 0 or y.shape[0] != X_shape[0]:
        raise ValueError(f"y must have one entry per sample ({X_shape[0]}); got shape {y.shape}")


class Family(abc.ABC):
    """One convex program family (module docstring). Subclasses set the class attributes and
    implement the abstract methods; instances are stateless."""

    #: registry name, e.g. "vector"; program: the paper's label, e.g. "P2"
    name: ClassVar[str]
    program: ClassVar[str]
    #: the losses this family's programs accept
    losses: ClassVar[tuple[str, ...]] = LOSSES
    #: options of ``prepare`` (e.g. gates) with their defaults; None means "not given"
    options: ClassVar[Mapping[str, Any]] = {}
    #: the model class in one line (docs, errors)
    description: ClassVar[str]
    #: whether the penalty has groups, so ``restriction`` enables working sets
    working_sets: ClassVar[bool] = False
    #: whether the program is a function of (data, targets, beta, loss) alone: False when
    #: ``prepare`` draws something at random (gates), so that caches keyed without the seed
    #: must skip it
    deterministic: ClassVar[bool] = True
    #: the name of ``attention``'s map in reports
    attention_name: ClassVar[str] = "heads"

    # ------------------------------------------------------------------ targets

    def default_loss(self, y: np.ndarray) -> str:
        """The loss for y when none is given: cross-entropy for labels, squared for floats."""
        return "squared" if np.issubdtype(y.dtype, np.floating) else "cross_entropy"

    def check_loss(self, loss: str) -> str:
        checks.choice("loss", loss, LOSSES)
        if loss not in self.losses:
            raise ValueError(
                f"loss {loss!r} is not available for kind {self.name!r}; "
                f"expected one of {self.losses}"
            )
        return loss

    def encode(
        self,
        y: np.ndarray,
        loss: str,
        X_shape: tuple[int, ...],
        num_classes_: int | None = None,
        weights: np.ndarray | None = None,
    ) -> Targets:
        """Per-sample targets: (N,) or (N, c) floats for "squared", (N,) +-1 for "logistic"
        (one output), (N,) integer labels for "cross_entropy"."""
        check_rows(X_shape, y)
        if loss == "cross_entropy":
            return Targets(y, num_classes(y, num_classes_), False, weights)
        if y.ndim == 1:
            return Targets(y, 1, True, weights)
        if loss == "logistic" or y.ndim != 2:
            raise ValueError(
                f"y must be (N,) for kind {self.name!r} with loss {loss!r}; got {y.shape}"
            )
        return Targets(y, y.shape[1], False, weights)

    # --------------------------------------------------------------------- data

    def prepare(self, X: Array, X_host: np.ndarray, options: Mapping[str, Any], seed: int) -> Any:
        """The data bundle of training inputs X (N, n, d) (device, solve dtype; ``X_host`` the
        same as a host array). ``options``: this family's ``options``, resolved; ``seed``: for
        anything the family draws at random (e.g. gates)."""
        return Data(X)

    def data_for(self, program: ConvexProgram, X: Array) -> Any:
        """The data bundle of new inputs X (N', n, d) for a fitted program."""
        return Data(X)

    # ------------------------------------------------------------------ program

    @abc.abstractmethod
    def shape(self, data: Any, outputs: int) -> tuple[int, ...]:
        """Shape of the convex variable."""

    @abc.abstractmethod
    def raw_predict(self, data: Any) -> Partial:
        """The linear map x -> raw predictions ((N, c), or (N, n, c) per token) as a Partial
        over the data (so the data are arguments of the compiled solver)."""

    def predict(self, data: Any, scalar_output: bool, loss: str) -> Partial:
        """The program's map: raw predictions shaped as the loss reads them."""
        return self.output_map(self.raw_predict(data), scalar_output, loss)

    def output_map(self, raw: Partial, scalar_output: bool, loss: str) -> Partial:
        """``raw`` shaped as the loss reads it: one output squeezed, or per-token rows."""
        if scalar_output:
            return Partial(_first_output, raw)
        if self.flattens_rows(loss):
            return Partial(_flatten_rows, raw)
        return raw

    def flattens_rows(self, loss: str) -> bool:
        """Whether the loss reads per-token predictions as rows (sequence cross-entropy)."""
        return False

    @abc.abstractmethod
    def penalty(self, beta: float) -> solvers.Penalty:
        """beta times the family's gauge."""

    def dense_matrix(self, program: ConvexProgram) -> np.ndarray:
        """(m, p) matrix of the map for the cvxpy route (default: materialized column by
        column; families override it with their closed form)."""
        return solvers.materialize(program.problem)

    # ------------------------------------------------------------- working sets

    def restriction(self, program: ConvexProgram) -> Any:
        """``groups -> solvers.working_set.Restriction`` slicing the data, or None (no groups)."""
        return None

    def operator_norm_bounds(self, program: ConvexProgram) -> np.ndarray | None:
        """(G,) upper bounds on each group's operator norm, or None."""
        return None

    # ----------------------------------------------------------------- recovery

    @abc.abstractmethod
    def recover(self, program: ConvexProgram, x: np.ndarray, heads: int) -> dict[str, np.ndarray]:
        """``heads`` nonconvex heads (twin format) reaching the objective of x (>= the
        solution's nonzero groups; extra heads are zero)."""

    @abc.abstractmethod
    def token_norms(self, program: ConvexProgram, x: np.ndarray) -> np.ndarray:
        """(n,) total weight each token position carries in x (0 = inactive token)."""

    @abc.abstractmethod
    def attention(self, heads: Mapping[str, Any]) -> np.ndarray:
        """The heads' token-mixing weights, e.g. (h, n) or (h, n, n)."""

    def needed_heads(self, program: ConvexProgram, x: np.ndarray) -> int:
        """The heads exact recovery needs: the nonzero groups of x."""
        return int(np.count_nonzero(np.asarray(program.problem.penalty.group_norms(x))))

    # ------------------------------------------------------------ nonconvex twin

    @abc.abstractmethod
    def twin_forward(self, heads: Mapping[str, Any], X: Array) -> Array:
        """The twin network's raw outputs on X, shaped like ``raw_predict``'s."""

    @abc.abstractmethod
    def twin_penalty(self, heads: Mapping[str, Any], beta: float) -> Array:
        """The twin's weight decay (the convex penalty's nonconvex form)."""

    def twin_heads(self, program: ConvexProgram) -> int:
        """Enough twin heads to represent every optimum of the program unreduced: one per group
        of its variable."""
        return int(np.prod(program.shape[:-1]))

    def shaped(self, raw: Array, scalar_output: bool, loss: str) -> Array:
        """Raw outputs shaped as the loss reads them (as ``output_map`` shapes the convex map)."""
        if scalar_output:
            return raw[..., 0]
        return raw.reshape(-1, raw.shape[-1]) if self.flattens_rows(loss) else raw


def padded(chosen: np.ndarray, total: int) -> np.ndarray:
    """``chosen`` (sorted, distinct) plus the lowest unused indices up to the next power of
    two (capped at ``total``): few distinct sizes, so a restricted solver compiles rarely."""
    size = min(total, 1 << max(0, math.ceil(math.log2(max(chosen.size, 1)))))
    if chosen.size >= size:
        return chosen
    unused = np.setdiff1d(np.arange(total), chosen)[: size - chosen.size]
    return np.sort(np.concatenate([chosen, unused]))
