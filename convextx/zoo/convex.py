"""Zoo entries "convex-fista", "convex-cvxpy", "convex-gated": ``ConvexAttention`` on a task."""

from __future__ import annotations

from typing import Any

import numpy as np

from convextx.estimator import ConvexAttention
from convextx.tasks import Task
from convextx.zoo import base


def default_kind(task: Task) -> str:
    """The head-sum architecture for the task: per-token heads (P4) for sequence tasks, else
    vector outputs (P2)."""
    return "sequence" if task.problem == "sequence" else "vector"


class ConvexModel(base.Model):
    """The simplex-attention network fitted to a certified optimum (``convextx.ConvexAttention``).

    kind: "scalar" | "vector" | "gated" | "sequence", or None (``default_kind`` of the task).
    beta: weight decay (> 0) on the sum-of-losses scale.  solver: "fista" | "cvxpy".
    tol: relative duality gap (None: ConvexAttention's default).  max_iter: FISTA iterations.
    gates: kind "gated" only (number of gates or ``Gates``).  reduce_support: recover the fewest
    heads (costs a reduction that can exceed the solve itself on 10^3 samples; off by default,
    so up to one head per group of the solution).  seed: gate sampling.

    ``budget_seconds`` binds the solve (its ``time_limit``: iterations stop at the end of the
    compiled chunk that passes it, status "time_limit"). The loss is cross-entropy for integer
    targets, squared otherwise. The history's time axis is the solve's measured timeline (the
    wall time at the end of each compiled chunk of iterations, compilation excluded and
    reported apart as ``details["setup_seconds"]``).
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
        reduce_support: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(**base.hyperparameters(locals()))

    def _fit(self, task: Task, budget_seconds: float | None) -> None:
        estimator = ConvexAttention(
            kind=self.kind or default_kind(task),
            beta=self.beta,
            loss=base.convex_loss(task),
            solver=self.solver,
            gates=self.gates,
            max_iter=self.max_iter,
            reduce_support=self.reduce_support,
            seed=self.seed,
            **({} if self.tol is None else {"tol": self.tol}),
            time_limit=budget_seconds,  # cvxpy runs to its own end
        )
        self.estimator_ = estimator.fit(task.X_train, task.y_train)

    def predict(self, inputs: Any) -> np.ndarray:
        """Labels or predictions for features X (N, n, d)."""
        return self.estimator_.predict(inputs)

    def attention_maps(self) -> dict[str, np.ndarray]:
        """{"heads": (h, n) one-hot token weights per recovered head, or (h, n, n) for P4}."""
        return {"heads": np.asarray(self.estimator_.attention_)}

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
            "parameters": base.count_parameters(est.heads_),
            "history": {"time": timeline["seconds"], "objective": timeline["objective"]},
            "details": {
                "kind": est.kind,
                "beta": self.beta,
                "solver": result.method,
                "iterations": est.n_iter_,
                "solve_seconds": result.seconds,
                "setup_seconds": result.setup_seconds,
                "heads": int(np.asarray(est.heads_["a"]).shape[0]),
                "active_tokens": [int(k) for k in est.active_tokens_],
            },
        }
