"""Kind "linear": multi-head linear attention (no softmax) read at one query position.

Nonconvex network (``baselines.linear_attention``), X_i (n, d) with rows x_j = X_i[j], the
query row x_q = X_i[q] (option ``query``, an int index into the n positions, default -1, the
last token), h heads of a merged query-key matrix A_h (d, d) and a value-output map V_h (d, c):

    f(X_i) = (1/n) sum_h sum_j (x_q^T A_h x_j) V_h^T x_j                   in R^c,
    objective  sum_i w_i L(f(X_i), y_i) + beta/2 sum_h (|A_h|_F^2 + |V_h|_F^2).

**Convex program.** With S_i = X_i^T X_i / n (d, d),

    f(X_i)[k] = sum_{a,b,e} x_q[a] S_i[b, e] M[(a, b), (e, k)],   M = sum_h vec(A_h) vec(V_h)^T,

so f is linear in the matrix M (d^2, d c) (rows (a, b), columns (e, k)), i.e.
``f(X_i)[k] = <phi_i, M[:, (., k)]>`` with the features ``phi_i = x_q (x) S_i`` (d, d, d).
The least weight decay over factorizations of M into any number h >= rank(M) of heads is
``beta |M|_*`` (the nuclear norm: ``|M|_* = min sum_h |a_h| |v_h| <= min 1/2 sum_h (|a_h|^2 +
|v_h|^2)`` over M = sum_h a_h v_h^T, with equality at the SVD), so training is equivalent to

    min_M  sum_i w_i L(<phi(X_i), M>, y_i) + beta |M|_*        (``solvers.NuclearNorm``).

**Recovery.** An SVD M = sum_k s_k u_k v_k^T gives the heads A_k = sqrt(s_k) reshape(u_k,
(d, d)), V_k = sqrt(s_k) reshape(v_k, (d, c)): their weight decay is beta sum_k s_k =
beta |M|_* and they compute the same f, so rank(M) heads reach the convex objective exactly.
Singular values are kept up to the rank the certificate allows (``safe_rank``): at every
optimum M*, ``sigma_k(-A^T u*) = beta`` on its singular directions, and the certificate's
dual point u is within ``r = sqrt(2 L_s gap)`` of u*, so by Weyl's inequality
``rank(M*) <= #{k : sigma_k(-A^T u) + |A|_2 r >= beta}``. Recovery drops the singular values
beyond that rank when they are solver noise (all below ``SAFE_DROP_RTOL`` times the largest,
e.g. an interior-point solution), and numerically zero ones (below ``SV_RTOL`` times the
largest) always, so the heads reach the solution's objective up to rounding.

**Reduction.** The features only span part of the space: every phi_i lies in
``span(x_q) (x) span(x) (x) span(x)``, with orthonormal bases Qq (d, r_q) of the training query
rows and Qs (d, r_s) of all training tokens (numerical rank, ``basis``; the identity when the
data have full rank d). Projecting M onto ``(Qq (x) Qs) Z (Qs (x) I_c)^T`` keeps every
prediction and does not raise |M|_*, so the program is solved, exactly, in Z (r_q r_s, r_s c)
with ``|Z|_* = |M|_*``: the same program for the features x_q' = Qq^T x_q and
S' = Qs^T S Qs. The solution (``coef_``) is Z; ``full_matrix`` maps it to M, and recovery to
heads A = Qq A' Qs^T, V = Qs V' of the original d. One-hot token data are far from full rank
(associative recall with 8 pairs and context "pairs": d = 66, r_q = 15, r_s = 45, so Z is
(675, 360) instead of (4356, 528)).

**Map.** The map and its adjoint never form phi: ``prepare`` computes S_i and x_q once (two
einsums), and ``predict`` contracts S with Z (one (N, r_s^2) x (r_s^2, r_q c) matmul) and then
with x_q. Its cost per call is N r_s^2 r_q c. The cvxpy route gets the dense matrix of phi in
closed form (N c, r_q r_s^2 c) and models |Z|_* as a semidefinite program with a PSD block of
side r_q r_s + r_s c; it refuses d (r_q, r_s) with a side over ``MAX_SDP_SIDE`` (as well as
matrices over ``solvers.materialize.MAX_ENTRIES``).

**Token weights.** Linear attention has no input-independent token mixing: ``attention``
returns the query-key matrices A (h, d, d) (a sample's token weights are
``baselines.linear_attention.attention_scores``), and ``token_norms`` the l2 norm, over the
training samples and outputs, of each position's contribution ``(1/n) x_q^T A x_j V^T x_j``
(0: the position never contributes on the training data). The query position is one of them.

``certified_excess`` scores any heads network on a program: its objective minus a valid dual
bound of the convex program (so >= its true excess over the optimum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

import solvers
from baselines import linear_attention as twin
from convextx.families.base import Family
from solvers import checks
from solvers.materialize import MAX_ENTRIES

if TYPE_CHECKING:
    from convextx.programs import ConvexProgram

Array = jax.Array
MAX_SDP_SIDE = 300  # cvxpy: the PSD block of |Z|_* has side r_q r_s + r_s c (<= d^2 + d c)
SV_RTOL = 1e-9  # singular values below this fraction of the largest are numerically zero
SAFE_DROP_RTOL = 1e-6  # beyond the safe rank, drop singular values up to this fraction
TOKEN_CHUNK = 256  # samples per chunk of ``token_norms``


class LinearData(NamedTuple):
    """X (N, n, d); the reduced query rows xq = X[:, query] Qq (N, r_q) and S = Qs^T X^T X Qs
    / n (N, r_s, r_s); the query index; the bases Qq (d, r_q) and Qs (d, r_s)."""

    X: Array
    xq: Array
    S: Array
    query: int
    Qq: np.ndarray
    Qs: np.ndarray


def resolve_query(query: Any, n: int) -> int:
    """``query`` (None: -1) as an int index into n positions; TypeError if not an int,
    ValueError (naming ``query``) if out of range."""
    query = twin.DEFAULT_QUERY if query is None else query
    return checks.integer("query", query, -n, n - 1)


def basis(rows: np.ndarray) -> np.ndarray:
    """(d, r) orthonormal basis of the span of ``rows`` (m, d) at numpy's numerical rank
    (singular values above max(m, d) eps times the largest); the identity at full rank."""
    rows = np.asarray(rows, dtype=np.float64)
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    d = rows.shape[1]
    rank = int(np.sum(s > max(rows.shape) * np.finfo(np.float64).eps * s[0])) if s[0] > 0 else 0
    if rank == d:
        return np.eye(d)
    return vt[: max(rank, 1)].T


def bases(X: np.ndarray, query: int) -> tuple[np.ndarray, np.ndarray]:
    """(Qq (d, r_q), Qs (d, r_s)): ``basis`` of the query rows X[:, query] and of all the tokens
    of X (N, n, d), the reduced coordinates of the program's variable Z (r_q r_s, r_s c)."""
    N, n, d = X.shape
    return basis(X[:, query]), basis(X.reshape(N * n, d))


def linear_data(X: Array, query: int, Qq: np.ndarray, Qs: np.ndarray) -> LinearData:
    n = X.shape[1]
    Y = X @ jnp.asarray(Qs, X.dtype)  # (N, n, r_s)
    xq = X[:, query] @ jnp.asarray(Qq, X.dtype)
    return LinearData(X, xq, jnp.einsum("ijb,ije->ibe", Y, Y) / n, query, Qq, Qs)


def predict_linear(xq: Array, S: Array, Z: Array) -> Array:
    """(N, r_q), (N, r_s, r_s), (r_q r_s, r_s c) -> (N, c):
    sum_{a,b,e} xq[a] S[b, e] Z[(a, b), (e, k)]."""
    N, rq = xq.shape
    rs = S.shape[1]
    c = Z.shape[1] // rs
    by_be = Z.reshape(rq, rs, rs, c).transpose(1, 2, 0, 3).reshape(rs * rs, rq * c)
    scores = (S.reshape(N, rs * rs) @ by_be).reshape(N, rq, c)
    return jnp.einsum("ia,iak->ik", xq, scores)


def full_matrix(program: ConvexProgram, x: Any) -> np.ndarray:
    """M (d^2, d c) of a solution Z (r_q r_s, r_s c): ``(Qq (x) Qs) Z (Qs (x) I)^T``."""
    Qq, Qs = program.data.Qq, program.data.Qs
    (d, rq), rs = Qq.shape, Qs.shape[1]
    Z = np.asarray(x, dtype=np.float64).reshape(rq, rs, rs, -1)
    M = np.einsum("aA,bB,eE,ABEk->abek", Qq, Qs, Qs, Z, optimize=True)
    return M.reshape(d * d, -1)


def reduced_matrix(program: ConvexProgram, M: Any) -> np.ndarray:
    """Z (r_q r_s, r_s c) of a matrix M (d^2, d c): ``(Qq (x) Qs)^T M (Qs (x) I)`` (the same
    predictions on the training data, and |Z|_* <= |M|_*)."""
    Qq, Qs = program.data.Qq, program.data.Qs
    (d, rq), rs = Qq.shape, Qs.shape[1]
    M = np.asarray(M, dtype=np.float64).reshape(d, d, d, -1)
    Z = np.einsum("aA,bB,eE,abek->ABEk", Qq, Qs, Qs, M, optimize=True)
    return Z.reshape(rq * rs, -1)


class Excess(NamedTuple):
    """objective: the heads' objective; dual: a lower bound on the convex optimum;
    excess = objective - dual (>= objective - optimum); convex: the program's objective at
    the heads' M, reduced (<= objective)."""

    objective: float
    dual: float
    excess: float
    convex: float


class Linear(Family):
    name = "linear"
    program = "P5"
    options = {"query": None}
    attention_name = "query_key"  # attention: the (h, d, d) query-key matrices
    description = "multi-head linear attention read at one query token (nuclear norm)"

    # ------------------------------------------------------------------ data

    def prepare(self, X, X_host, options, seed) -> LinearData:
        query = resolve_query(options["query"], X_host.shape[1])
        Qq, Qs = bases(X_host, query)
        return linear_data(X, query, Qq, Qs)

    def data_for(self, program: ConvexProgram, X: Array) -> LinearData:
        return linear_data(X, program.data.query, program.data.Qq, program.data.Qs)

    # --------------------------------------------------------------- program

    def shape(self, data: LinearData, outputs: int) -> tuple[int, ...]:
        rq, rs = data.Qq.shape[1], data.Qs.shape[1]
        return (rq * rs, rs * outputs)

    def raw_predict(self, data: LinearData) -> Partial:
        return Partial(predict_linear, data.xq, data.S)

    def penalty(self, beta: float) -> solvers.NuclearNorm:
        return solvers.NuclearNorm(beta)

    def dense_matrix(self, program: ConvexProgram) -> np.ndarray:
        """Rows (i, k), columns (a, b, e, k'): xq_i[a] S_i[b, e] where k = k' (closed form,
        in the reduced coordinates of the variable)."""
        d, c = program.d, program.outputs
        xq = np.asarray(program.data.xq, dtype=float)
        S = np.asarray(program.data.S, dtype=float)
        (N, rq), rs = xq.shape, S.shape[1]
        side = rq * rs + rs * c
        entries = N * c * rq * rs * rs * c
        if side > MAX_SDP_SIDE or entries > MAX_ENTRIES:
            raise ValueError(
                f"kind 'linear' with d={d} (c={c}, reduced ranks r_q={rq}, r_s={rs}) is too large "
                f"for the cvxpy route: the nuclear norm is an SDP with a PSD block of side "
                f"r_q r_s + r_s c = {side} (limit {MAX_SDP_SIDE}) and the matrix has {entries} "
                f"entries (limit {MAX_ENTRIES}); use method='fista' or a smaller d"
            )
        phi = np.einsum("ia,ibe->iabe", xq, S).reshape(N, -1)
        matrix = np.zeros((N, c, phi.shape[1], c))
        for k in range(c):
            matrix[:, k, :, k] = phi
        return matrix.reshape(N * c, -1)

    # -------------------------------------------------------------- recovery

    def safe_rank(self, program: ConvexProgram, x: np.ndarray) -> int:
        """An upper bound on the rank of every optimum from the certificate at x (module
        docstring), with |A|_2 bounded by |A|_F = sqrt(sum_i |x_q,i|^2 |S_i|_F^2)."""
        with jax.enable_x64(True):
            problem = program.problem.astype(jnp.float64)
            M = jnp.asarray(x, jnp.float64)
            cert = solvers.duality_gap(problem, M)
            grad = problem.loss.grad(problem.predict(M))
            G = np.asarray(problem.adjoint(grad), dtype=float)
            beta = float(problem.penalty.beta)
            sigma = np.linalg.svd(G, compute_uv=False)
            theta = min(1.0, beta / max(float(sigma[0]), np.finfo(float).tiny))
            xq = np.asarray(program.data.xq, dtype=float)
            S = np.asarray(program.data.S, dtype=float)
            norm = math.sqrt(float(np.sum((xq**2).sum(1) * (S**2).sum((1, 2)))))
            gap = max(float(cert.gap), 0.0)
            radius = math.sqrt(2.0 * float(problem.loss.lipschitz()) * gap)
        return int(np.sum(theta * sigma + norm * radius >= beta))

    def _factors(self, program: ConvexProgram, x: np.ndarray):
        """(U, s, Wt) of the singular triples recovery keeps (module docstring)."""
        U, s, Wt = np.linalg.svd(np.asarray(x, dtype=np.float64), full_matrices=False)
        if s.size == 0 or s[0] <= 0:
            return U[:, :0], s[:0], Wt[:0]
        keep = int(np.sum(s > SV_RTOL * s[0]))
        safe = self.safe_rank(program, x)
        if safe < keep and s[safe] <= SAFE_DROP_RTOL * s[0]:
            keep = safe  # only solver noise beyond the rank of every optimum: drop it
        return U[:, :keep], s[:keep], Wt[:keep]

    def needed_heads(self, program: ConvexProgram, x: np.ndarray) -> int:
        """The rank of x that recovery keeps."""
        return int(self._factors(program, x)[1].size)

    def recover(self, program: ConvexProgram, x: np.ndarray, heads: int) -> dict[str, np.ndarray]:
        d, c = program.d, program.outputs
        Qq, Qs = program.data.Qq, program.data.Qs
        rq, rs = Qq.shape[1], Qs.shape[1]
        U, s, Wt = self._factors(program, x)
        m = s.size
        root = np.sqrt(s)
        A = np.zeros((heads, d, d))
        V = np.zeros((heads, d, c))
        A[:m] = Qq @ (U * root).T.reshape(m, rq, rs) @ Qs.T
        V[:m] = Qs @ (Wt * root[:, None]).reshape(m, rs, c)
        return {"A": A, "V": V, "query": np.asarray(program.data.query)}

    def token_norms(self, program: ConvexProgram, x: np.ndarray) -> np.ndarray:
        """(n,) l2 norm over training samples and outputs of each position's contribution
        ``(1/n) sum_{a,b,e} x_q[a] x_j[b] x_j[e] M[(a,b),(e,k)]`` (module docstring)."""
        Qs = program.data.Qs
        X = np.asarray(program.X, dtype=float) @ Qs  # reduced tokens (N, n, r_s)
        N, n, rs = X.shape
        xq = np.asarray(program.data.xq, dtype=float)
        rq = xq.shape[1]
        Z = np.asarray(x, dtype=float)
        c = Z.shape[1] // rs
        by_a = Z.reshape(rq, rs * rs * c)  # rows a, columns (b, e, k)
        squares = np.zeros(n)
        for start in range(0, N, TOKEN_CHUNK):
            rows = slice(start, start + TOKEN_CHUNK)
            Q = (xq[rows] @ by_a).reshape(-1, rs, rs * c)  # (B, b, (e, k))
            T = np.matmul(X[rows], Q).reshape(-1, n, rs, c)  # (B, j, e, k)
            contribution = np.einsum("bjek,bje->bjk", T, X[rows]) / n
            squares += (contribution**2).sum(axis=(0, 2))
        return np.sqrt(squares)

    def attention(self, heads: Mapping[str, Any]) -> np.ndarray:
        """The query-key matrices A (h, d, d) (no input-independent token weights)."""
        return np.asarray(heads["A"])

    # -------------------------------------------------------- nonconvex twin

    def twin_forward(self, heads: Mapping[str, Any], X: Array) -> Array:
        return twin.forward(heads, X)

    def twin_penalty(self, heads: Mapping[str, Any], beta: float) -> Array:
        return twin.penalty({k: jnp.asarray(heads[k]) for k in ("A", "V")}, beta)

    def twin_heads(self, program: ConvexProgram) -> int:
        """Enough heads for any solution: its largest possible rank, min(r_q r_s, r_s c)."""
        return min(program.shape)


def certified_excess(program: ConvexProgram, heads: Mapping[str, Any], dual: float = -np.inf):
    """The heads' objective on the program's data, minus a valid lower bound on the convex
    optimum: the best of the duality-gap certificate's dual value at the heads' matrix
    M = sum_h vec(A_h) vec(V_h)^T (in the program's reduced coordinates: ``reduced_matrix``,
    same predictions, no larger nuclear norm; ``solvers.certify``) and ``dual`` (e.g. a solve's
    ``SolveResult.dual``). The result's ``excess`` is >= objective - optimum >= 0, and 0 (up to
    rounding) for heads recovered from a certified optimum. Returns ``Excess``."""
    if program.kind != "linear":
        raise ValueError(f"certified_excess needs a program of kind 'linear'; got {program.kind!r}")
    query = twin.heads_query(heads)
    if query % program.n != program.data.query % program.n:
        raise ValueError(
            f"the heads read query {query} but the program reads query {program.data.query}"
        )
    M = twin.to_matrix(heads)
    d, c = program.d, program.outputs
    if M.shape != (d * d, d * c):
        raise ValueError(
            f"the heads' matrix has shape {M.shape}; the program's M is {(d * d, d * c)}"
        )
    Z = reduced_matrix(program, M)
    with jax.enable_x64(True):
        problem = program.problem.astype(jnp.float64)
        X = jnp.asarray(program.X, jnp.float64)
        weights = {k: jnp.asarray(heads[k], jnp.float64) for k in ("A", "V")}
        raw = twin.forward(weights, X, program.data.query)
        pred = program.family.shaped(raw, program.scalar_output, program.loss)
        objective = float(problem.loss.value(pred) + twin.penalty(weights, float(program.beta)))
        cert = solvers.certify(problem, Z, dual=float(dual))
    return Excess(objective, cert.dual, objective - cert.dual, cert.primal)
