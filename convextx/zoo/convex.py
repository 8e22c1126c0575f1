"""Zoo entries "convex-fista", "convex-cvxpy", "convex-gated", "convex-linear": ``ConvexAttention``
on a task."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from convextx.estimator import ConvexAttention, default_tol
from convextx.tasks import Task
from convextx.zoo import base, certificates


def default_kind(task: Task) -> str:
    """The head-sum architecture for the task: per-token heads (P4) for sequence tasks, else
    vector outputs (P2)."""
    return "sequence" if task.problem == "sequence" else "vector"


class ConvexModel(base.Model):
    """The simplex-attention network fitted to a certified optimum (``convextx.ConvexAttention``).

    kind: "scalar" | "vector" | "gated" | "sequence" | "linear" (multi-head linear attention, a
    nuclear-norm program), or None (``default_kind`` of the task).  query: kind "linear" only,
    the query position (None: -1, the last token).
    beta: weight decay (> 0) on the sum-of-losses scale.  solver: "fista" | "cvxpy".
    tol: relative duality gap (None: ConvexAttention's default).  max_iter: FISTA iterations.
    gates: kind "gated" only (number of gates or ``Gates``).  reduce_support: recover the fewest
    heads (costs a reduction that can exceed the solve itself on 10^3 samples; off by default,
    so up to one head per group of the solution).  seed: gate sampling.

    curve: record the test metric (and ``record``'s entries: ``predict -> {name: value}``)
    along the solve, which then runs as warm-started solves of doubling iteration budgets
    (1, 2, 4, ... up to max_iter, until certified), each evaluated after it; off by default.

    ``budget_seconds`` binds the solve (its ``time_limit``: iterations stop at the end of the
    compiled chunk that passes it, status "time_limit"). The loss is cross-entropy for integer
    targets, squared otherwise. The history's time axis is the solve's measured timeline (the
    wall time at the end of each compiled chunk of iterations, compilation excluded and
    reported apart as ``details["setup_seconds"]``; with ``curve``, the summed seconds of the
    solves up to each evaluation). A certified FISTA solve goes into the zoo's certificate
    cache (``convextx.zoo.certificates``), where the simplex models of the task find it.
    """

    def __init__(
        self,
        *,
        name: str = "convex-fista",
        kind: str | None = None,
        beta: float = 1.0,
        solver: str = "fista",
        tol: float | None = None,
        max_iter: int = 10_000,
        gates: Any = None,
        query: int | None = None,
        reduce_support: bool = False,
        seed: int = 0,
        curve: bool = False,
        record: Callable[[Callable[[Any], np.ndarray]], dict[str, float]] | None = None,
    ) -> None:
        super().__init__(**base.hyperparameters(locals()))

    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        estimator = ConvexAttention(
            kind=self.kind or default_kind(task),
            beta=self.beta,
            loss=base.convex_loss(task),
            solver=self.solver,
            gates=self.gates,
            query=self.query,
            max_iter=self.max_iter,
            reduce_support=self.reduce_support and not self.curve,
            seed=self.seed,
            **({} if self.tol is None else {"tol": self.tol}),
            time_limit=budget_seconds,  # cvxpy runs to its own end
        )
        self.curve_ = None
        if not self.curve:
            self.estimator_ = estimator.fit(task.X_train, task.y_train)
            self.iterations_ = self.estimator_.n_iter_
            return
        self.estimator_ = estimator.set_params(warm_start=True)
        deadline = None if budget_seconds is None else time.perf_counter() + budget_seconds
        history: dict[str, list[float]] = {}
        total, seconds, chunk = 0, 0.0, 1
        while True:
            left = None if deadline is None else max(deadline - time.perf_counter(), 1e-6)
            last = total + chunk >= self.max_iter
            estimator.set_params(max_iter=self.max_iter - total if last else chunk, time_limit=left)
            with warnings.catch_warnings():  # a partial solve is the point here
                warnings.simplefilter("ignore", ConvergenceWarning)
                estimator.fit(task.X_train, task.y_train)
            result = estimator.solve_result_
            total, seconds = total + result.iterations, seconds + result.seconds
            entry = {"step": total, "time": seconds, "objective": result.objective}
            entry |= {"gap": result.gap, **self._evaluate(task)}
            for key, value in entry.items():
                history.setdefault(key, []).append(value)
            out_of_time = deadline is not None and time.perf_counter() > deadline
            if result.status == "optimal" or last or out_of_time:
                break
            chunk *= 2
        self.curve_, self.iterations_ = history, total
        if self.reduce_support:  # from the optimum found: the fewest heads
            estimator.set_params(reduce_support=True, time_limit=None, max_iter=self.max_iter)
            estimator.fit(task.X_train, task.y_train)

    def _evaluate(self, task: Task) -> dict[str, float]:
        entry = {"test_metric": self.score(task, "test")}
        if self.record is not None:
            entry |= {k: float(v) for k, v in self.record(self.predict).items()}
        return entry

    def _certify(self, task: Task) -> None:
        est = self.estimator_
        family = est.program_.family
        given = [getattr(est, option) for option in family.options]
        if self.solver != "fista" or not family.deterministic or any(v is not None for v in given):
            return  # the cache holds the default program of a family (no options, no draws)
        if (
            est.program_.outputs != task.output_dim
        ):  # classes inferred from y differ from the task's
            return
        tol = est.tol if est.tol is not None else default_tol(est.program_.problem.dtype)
        result = est.solve_result_
        certificate = certificates.Certificate(
            float(est.objective_), float(result.dual), float(est.gap_), est.status_, float(tol)
        )
        certificates.store(task, est.kind, est.loss_, self.beta, est.dtype, certificate)

    def decision_function(self, inputs: Any) -> np.ndarray:
        """Raw outputs for features X (N, n, d): predictions, or logits over the task's K
        classes (N, K) / (N, n, K), -inf for a class the train split lacks (the program,
        built on the labels it saw, has no output for it)."""
        out = np.asarray(self.estimator_.decision_function(inputs))
        classes = self.estimator_.classes_
        if classes is None or classes.size == self.num_classes_:
            return out
        logits = np.full((*out.shape[:-1], self.num_classes_), -np.inf, dtype=out.dtype)
        logits[..., classes] = out
        return logits

    def attention_maps(self) -> dict[str, np.ndarray]:
        """{"heads": (h, n) one-hot token weights per recovered head, or (h, n, n) for P4};
        kind "linear": {"query_key": (h, d, d) the heads' query-key matrices}."""
        name = self.estimator_.program_.family.attention_name
        return {name: np.asarray(self.estimator_.attention_)}

    def _summary(self) -> dict[str, Any]:
        est = self.estimator_
        result = est.solve_result_
        timeline = result.timeline
        return {
            "objective": est.objective_,
            "objective_terms": base.CONVEX_TERMS,
            "certified_optimum": est.objective_,
            "gap": est.gap_,
            "status": est.status_,
            "parameters": base.count_parameters(
                {k: v for k, v in est.heads_.items() if k != "query"}
            ),
            "history": self.curve_
            or {
                "step": timeline["iteration"],
                "time": timeline["seconds"],
                "objective": timeline["objective"],
            },
            "details": {
                "kind": est.kind,
                "beta": self.beta,
                "solver": result.method,
                "iterations": self.iterations_,
                "lower_bound": result.dual,
                "solve_seconds": result.seconds,
                "setup_seconds": result.setup_seconds,
                "heads": int(np.asarray(est.attention_).shape[0]),
                "active_tokens": [int(k) for k in est.active_tokens_],
            },
        }
