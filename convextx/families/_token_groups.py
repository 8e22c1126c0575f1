"""What P1-P3 share: a group lasso over token positions, with one-hot-attention recovery.

The variable of P1 (scalar), P2 (vector) and P3 (gated) has the layout (P gates, c outputs,
n tokens, d features), with P = 1 and c = 1 squeezed away where the family has no such axis:
P1 (n, d), P2 (c, n, d), P3 (P, c, n, d). Every row z_{j,l,k} (length d) is one group of
``GroupL2(beta, axis=-1)``, and the prediction of sample i on output l is

    sum_j D_ij <X_i, Z_{j,l}>          (D = 1 without gates),

so all of their parts (dense matrix, restriction, operator-norm bounds, recovery) are written
once here in terms of the gate weights D (N, P); each family supplies its data and heads.

Recovery (the paper's Prop. 1 with its index corrected): each nonzero group z_{j,l,k} becomes
one head with w1 = e_k (attention on token k), w2 = z / sqrt|z|, a = sqrt|z| e_l (behind gate
j). Its weight decay beta/2 (|w2|^2 + |a|_1^2) = beta |z| equals the group's penalty, so the
recovered network reaches the convex objective.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import solvers
from baselines import heads as heads_module
from convextx.families.base import Family, padded
from solvers.working_set import Restriction

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram

Array = jax.Array


def layout(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(P, c, n, d) of a P1 (n, d), P2 (c, n, d) or P3 (P, c, n, d) variable."""
    return (1,) * (4 - len(shape)) + tuple(shape)  # type: ignore[return-value]


class TokenGroupFamily(Family):
    """Base of the group-lasso families P1-P3 (module docstring)."""

    twin_kind: str  # the ``baselines.heads`` kind of the twin network
    working_sets = True

    # ------------------------------------------------------ what each family supplies

    @abc.abstractmethod
    def host_gates(self, program: ConvexProgram) -> np.ndarray | None:
        """The gate weights D (N, P) of the training data as a host array, None without gates."""

    @abc.abstractmethod
    def sliced(
        self, program: ConvexProgram, X: np.ndarray, D: np.ndarray | None, gates: np.ndarray
    ) -> Partial:
        """The raw map of the program restricted to the tokens of X (N, n', d) and the gates
        ``gates`` (P3; D the full gate weights)."""

    @abc.abstractmethod
    def assemble(
        self, program: ConvexProgram, heads: dict[str, np.ndarray], gate: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The twin's heads from the common ones (w1 (h, n), w2 (h, d), a (h, c)); ``gate``:
        the gate index of each nonzero head."""

    # -------------------------------------------------------------------- program

    def penalty(self, beta: float) -> solvers.GroupL2:
        return solvers.GroupL2(beta, axis=-1)

    def dense_matrix(self, program: ConvexProgram) -> np.ndarray:
        """Rows (i, l), columns (j, l', k, q): D_ij X_i[k, q] where l = l' (closed form)."""
        P, c, n, d = layout(program.shape)
        X = np.asarray(program.X, dtype=float)
        N = X.shape[0]
        flat = X.reshape(N, -1)
        D = self.host_gates(program)
        blocks = flat[:, None, :] if D is None else D[:, :, None] * flat[:, None, :]
        matrix = np.zeros((N, c, P, c, n * d))
        for l in range(c):
            matrix[:, l, :, l, :] = blocks
        return matrix.reshape(N * c, -1)

    # ---------------------------------------------------------------- working sets

    def restriction(self, program: ConvexProgram):
        """``groups -> Restriction``: keeps every group of the tokens (and gates) that the
        requested groups touch, slicing host copies of the data (no compiled gather per
        working-set size), padded to powers of two (few shapes, few compilations)."""
        X = np.asarray(program.X)
        D = self.host_gates(program)
        shape, problem = program.shape, program.problem
        P, c, n, _ = layout(shape)
        flat = np.arange(problem.size).reshape((P, c, n, -1))
        penalty = solvers.GroupL2(problem.penalty.beta, axis=-1)

        def restrict(groups: np.ndarray) -> Restriction:
            gate, _, token = np.unravel_index(np.asarray(groups, dtype=int), (P, c, n))
            tokens = padded(np.unique(token), n)
            kept = padded(np.unique(gate), P) if D is not None else np.arange(1)
            raw = self.sliced(program, X[:, tokens], D, kept)
            index = flat[kept][:, :, tokens]
            index = index.reshape(index.shape[4 - len(shape) :])  # the family's own axes
            predict = self.output_map(raw, program.scalar_output, program.loss)
            sub = solvers.Problem(
                predict, index.shape, problem.loss, penalty, dtype=problem.dtype,
                check_linear=False,
            )  # fmt: skip
            return Restriction(sub, index)

        return restrict

    def operator_norm_bounds(self, program: ConvexProgram) -> np.ndarray:
        """(G,) Frobenius norms of each group's block of columns, upper bounds on ``|A_g|_2``,
        in the order of the penalty's groups: group (j, l, k) has the columns D_ij X[i, k, :]."""
        X = np.asarray(program.X, dtype=float)
        token_squares = (X**2).sum(axis=2)  # (N, n)
        D = self.host_gates(program)
        per_gate = token_squares.sum(axis=0)[None] if D is None else D.T @ token_squares
        P, c, n, _ = layout(program.shape)
        squares = np.broadcast_to(per_gate[:, None, :], (P, c, n))
        return np.sqrt(squares).ravel()

    # -------------------------------------------------------------------- recovery

    def recover(self, program: ConvexProgram, x: np.ndarray, heads: int) -> dict[str, np.ndarray]:
        _, c, n, d = layout(program.shape)
        groups = x.reshape(-1, d)  # rows in order (gate, output, token)
        index = np.flatnonzero(np.linalg.norm(groups, axis=1) > 0)
        gate, rest = np.divmod(index, c * n)
        output, token = np.divmod(rest, n)
        values = groups[index]
        root = np.sqrt(np.linalg.norm(values, axis=1))
        m = index.size
        w1 = np.zeros((heads, n))
        w1[np.arange(heads), 0] = 1.0  # padding heads: any simplex point, zero weights
        w1[:m] = 0.0
        w1[np.arange(m), token] = 1.0
        w2 = np.zeros((heads, d))
        w2[:m] = values / root[:, None]
        a = np.zeros((heads, c))
        a[np.arange(m), output] = root
        return self.assemble(program, {"w1": w1, "w2": w2, "a": a}, gate)

    def token_norms(self, program: ConvexProgram, x: np.ndarray) -> np.ndarray:
        n = program.n
        return np.sqrt((np.asarray(x) ** 2).sum(axis=-1)).reshape(-1, n).sum(axis=0)

    def attention(self, heads: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(heads["w1"])

    # -------------------------------------------------------------- nonconvex twin

    def twin_gates(self, program: ConvexProgram) -> dict[str, np.ndarray] | None:
        """The fixed gates of the twin's heads (``baselines.heads``), None without gates."""
        return None

    def twin_outputs(self, program: ConvexProgram) -> int | None:
        """``c`` of the twin's ``baselines.heads.init_params`` (None: one scalar output)."""
        return program.outputs

    def twin_forward(self, heads: Mapping[str, Any], X: Array) -> Array:
        out = heads_module.forward(self.twin_kind, {k: jnp.asarray(v) for k, v in heads.items()}, X)
        return out.reshape(out.shape[0], -1)

    def twin_penalty(self, heads: Mapping[str, Any], beta: float) -> Array:
        weights = {k: jnp.asarray(v) for k, v in heads.items()}
        return heads_module.penalty(self.twin_kind, weights, beta)


class UngatedFamily(TokenGroupFamily):
    """P1 and P2: no gates, the map is ``token_map(X, Z)`` of the data alone."""

    @staticmethod
    @abc.abstractmethod
    def token_map(X: Array, Z: Array) -> Array:
        """(N, n, d), variable -> (N, c) raw predictions."""

    def raw_predict(self, data: Any) -> Partial:
        return Partial(self.token_map, data.X)

    def host_gates(self, program: ConvexProgram) -> None:
        return None

    def sliced(self, program, X, D, gates) -> Partial:
        return Partial(self.token_map, jnp.asarray(X, program.problem.dtype))
