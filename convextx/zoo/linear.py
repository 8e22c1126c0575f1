"""Zoo entry "linear-adam": the multi-head linear-attention network trained by gradient.

The heads network of ``baselines.linear_attention`` (no softmax, read at one query token) with its
exact weight decay ``beta/2 sum_h (|A_h|_F^2 + |V_h|_F^2)``, trained by a
``baselines.train.Trainer`` on the loss and beta of the convex family "linear"
(``convextx.families.linear``, a nuclear-norm program). After training (untimed), the heads are
scored on that program by ``families.linear.certified_excess``: their objective minus a valid
lower bound on the convex optimum, the best of the dual bound of a certified solve of the same
(task, "linear", loss, beta) from the zoo's certificate cache (``convextx.zoo.certificates``,
filled by "convex-linear") and the duality-gap certificate at the heads' own matrix M.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from baselines import linear_attention as twin
from baselines.optim import make_optimizer
from baselines.train import Trainer
from convextx.estimator import default_tol, precision
from convextx.families import linear as linear_family
from convextx.objectives import nonconvex_objective
from convextx.tasks import Task
from convextx.zoo import base, certificates

CERTIFY = ("cache", "solve", "heads")
DEFAULT_LEARNING_RATES = {"adam": 1e-2, "adamw": 1e-2}


@functools.cache
def _forward(query: int) -> Callable[[Any, Any], Any]:
    """Jitted raw outputs (N, c) of trainable params (one compilation per query and shape)."""
    return jax.jit(lambda params, X: twin.forward(params, X, query))


def default_heads(X: np.ndarray, query: int, c: int) -> int:
    """Enough heads for any solution of the convex program: its largest possible rank
    min(r_q r_s, r_s c) (``Linear.twin_heads``), from the ranks of the query rows and tokens."""
    Qq, Qs = linear_family.bases(X, query)
    rq, rs = Qq.shape[1], Qs.shape[1]
    return max(1, min(rq * rs, rs * c))


def cache_family(query: int, n: int) -> str | None:
    """The certificate cache's family name of the program reading ``query``: "linear" for the
    default (last) query, the one ``convex_program`` builds; None (not cached) otherwise."""
    return "linear" if query % n == twin.DEFAULT_QUERY % n else None


class LinearAttentionModel(base.Model):
    """Linear-attention heads trained by ``optimizer`` on the convex "linear" program's objective.

    beta: weight decay (> 0), as in the convex program.  heads: h (None: ``default_heads``).
    query: the query position (None: -1, the last token).  optimizer: a ``baselines.optim``
    optimizer.  learning_rate: None picks 1e-2 for Adam and 1 / N otherwise.  steps,
    batch_size (None: full batch), init_scale (std of the entries times sqrt(d)), log_every.
    seed: initialization and minibatch order.  restarts: keep the lowest final objective of
    seeds seed, ..., seed + restarts - 1.  record: ``predict -> {name: value}`` at every logged
    step.  progress: show the progress bar.

    certify: where the lower bound of the report comes from. "cache" (default): the certified
    solve of the same task, loss and beta in the zoo's certificate cache when there is one
    (e.g. from "convex-linear"), else the certificate at the heads' own M only (no solve);
    "solve": as "cache", but solve the program by FISTA (``certificates.certify``, float64, to
    ``tol``, ``max_iter``) on a miss; "heads": the certificate at the heads' own M only.

    Report: certified_optimum, gap and status are those of the certified solve when one is used
    (as for "simplex-adam"); from the heads' own certificate, certified_optimum is the convex
    objective at the heads' M (an upper bound on the optimum, <= the heads' objective), gap
    that minus the dual bound, and status "optimal" when the gap is within ``tol`` (relative)
    or "bound" otherwise. details["certified_excess"] = objective - lower_bound, which is
    >= objective - optimum >= 0 (details["certificate"]: "cache" | "solve" | "heads").
    """

    def __init__(
        self,
        *,
        name: str = "linear-adam",
        beta: float = 1.0,
        heads: int | None = None,
        query: int | None = None,
        optimizer: str = "adam",
        learning_rate: float | None = None,
        steps: int = 1000,
        batch_size: int | None = None,
        init_scale: float = 1.0,
        log_every: int | str = 50,
        certify: str = "cache",
        tol: float | None = None,
        max_iter: int = 10_000,
        seed: int = 0,
        restarts: int = 1,
        record: Callable[[Callable[[Any], np.ndarray]], dict[str, float]] | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(**base.hyperparameters(locals()))

    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        if self.certify not in CERTIFY:
            raise ValueError(f"certify must be one of {CERTIFY}; got {self.certify!r}")
        N, n, d = task.X_train.shape
        c = task.output_dim
        query = self.query_ = linear_family.resolve_query(self.query, n)
        h = self.heads_count_ = (
            default_heads(np.asarray(task.X_train), query, c) if self.heads is None else self.heads
        )
        params = twin.init_params(base.init_key(self.seed), h, d, c, self.init_scale)
        rate = self.learning_rate or DEFAULT_LEARNING_RATES.get(self.optimizer, 1.0 / N)
        trainer = Trainer(
            twin.objective(
                base.per_sample_loss(task), query=query, accuracy=base.integer_targets(task)
            ),
            make_optimizer(self.optimizer, rate),
            penalty=twin.WeightDecay(self.beta),
            batch_size=self.batch_size,
        )
        result = self._train(trainer, params, task, _forward(query), budget_seconds)
        self.heads_ = {k: np.asarray(v) for k, v in twin.to_heads(result.params, query).items()}
        with precision("float64"):  # scored like the certificate, not in training precision
            self.objective_ = nonconvex_objective(
                self._heads64(), task.X_train, task.y_train, self.beta, "linear",
                base.convex_loss(task), task.num_classes,
            )  # fmt: skip

    def _heads64(self) -> dict[str, np.ndarray]:
        return {
            "A": self.heads_["A"].astype(np.float64),
            "V": self.heads_["V"].astype(np.float64),
            "query": self.heads_["query"],
        }

    def _certify(self, task: Task) -> None:
        from convextx.programs import convex_program

        loss = base.convex_loss(task)
        tol = default_tol("float64") if self.tol is None else float(self.tol)
        family = cache_family(self.query_, task.n_tokens)
        solved, source = None, "heads"
        if family is not None and self.certify == "cache":
            solved = certificates.lookup(task, family, loss, self.beta, "float64", tol)
            source = "cache" if solved is not None else "heads"
        elif family is not None and self.certify == "solve":
            hits = certificates.cache_info().hits
            solved = certificates.certify(task, family, self.beta, loss, tol, self.max_iter)
            source = "cache" if certificates.cache_info().hits > hits else "solve"
        if self.diverged_at_ is not None:
            self.excess_ = None
            self.certificate_ = solved
            self.source_ = source
            return
        with precision("float64"):
            program = convex_program(
                task.X_train, task.y_train, "linear", self.beta, loss,
                num_classes=task.num_classes, dtype="float64", query=self.query_,
            )  # fmt: skip
            dual = -np.inf if solved is None else solved.lower_bound
            self.excess_ = linear_family.certified_excess(program, self._heads64(), dual=dual)
        if solved is None:  # the heads' own certificate: [dual, convex objective at M]
            gap = self.excess_.convex - self.excess_.dual
            status = "optimal" if gap <= tol * max(1.0, abs(self.excess_.convex)) else "bound"
            solved = certificates.Certificate(
                self.excess_.convex, self.excess_.dual, gap, status, tol
            )
        self.certificate_, self.source_ = solved, source

    def decision_function(self, inputs: Any) -> np.ndarray:
        """The heads' raw outputs (N, c) (logits or predictions) for features X (N, n, d)."""
        return np.asarray(twin.forward(self.heads_, jnp.asarray(inputs)))

    def attention_maps(self) -> dict[str, np.ndarray]:
        """{"query_key": (h, d, d) the heads' query-key matrices} (linear attention has no
        input-independent token weights: ``baselines.linear_attention.attention_scores``)."""
        return {"query_key": np.asarray(self.heads_["A"])}

    def _summary(self) -> dict[str, Any]:
        cert, excess = self.certificate_, self.excess_
        lower = None if cert is None else cert.lower_bound
        if excess is not None:
            lower = excess.dual  # the best of the cached bound and the heads' own
        return {
            "objective": self.objective_,
            "objective_terms": base.CONVEX_TERMS,
            "certified_optimum": None if cert is None else cert.objective,
            "gap": None if cert is None else cert.gap,
            "status": None if cert is None else cert.status,
            "parameters": base.count_parameters(self.result_.params),
            "history": base.train_history(self.result_.history),
            "details": {
                "kind": "linear",
                "beta": self.beta,
                "heads": self.heads_count_,
                "query": self.query_,
                "optimizer": self.optimizer,
                "steps": self.result_.steps,
                "stopped_by_budget": self.result_.stopped_early,
                "train_seconds": self.result_.seconds,
                "certificate": self.source_,
                "lower_bound": lower,
                "certified_excess": None if excess is None else excess.excess,
                "convex_objective_at_heads": None if excess is None else excess.convex,
                "excess_over_optimum": None if cert is None else self.objective_ - cert.objective,
            },
        }
