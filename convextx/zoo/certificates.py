"""Certificates shared by the zoo: one cache of certified optima, and the check against them.

The convex models and the simplex (Adam/SGD) models of one task solve the same convex program:
the convex fit to give the model, the simplex fit to report the certified optimum its training
is compared with. ``certify`` keeps every certificate in one module-level LRU cache (``MAXSIZE``
entries) keyed by (task fingerprint, family, loss, beta, dtype, tol), which ``ConvexModel`` also
fills after its solve, so a convex and a simplex fit on one task share one solve. Only certified
("optimal") solves are kept, and a lookup takes one certified to ``tol`` or tighter.
``cache_info()`` counts hits, misses and solves.

``check_certified`` is the check every experiment makes of a nonconvex run: none of its
objectives lies below the certified lower bound (beyond float rounding).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from convextx.tasks import Task

MAXSIZE = 64
CERT_RTOL = 1e-6  # slack below the certified lower bound allowed to float rounding


class Certificate(NamedTuple):
    """A solved program's certified optimum: objective (primal), lower_bound (dual), gap,
    status ("optimal" when the gap reached tol), tol (the relative gap asked for)."""

    objective: float
    lower_bound: float
    gap: float
    status: str
    tol: float


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    solves: int
    maxsize: int
    currsize: int


_CACHE: OrderedDict[tuple, Certificate] = OrderedDict()
_COUNTS = {"hits": 0, "misses": 0, "solves": 0}


def task_fingerprint(task: Task) -> str:
    """A hash of what the program of ``task`` is built from: its name, the train split's
    features and targets (dtype, shape, bytes) and num_classes."""
    digest = hashlib.sha256(f"{task.name}|{task.num_classes}".encode())
    for array in (task.X_train, task.y_train):
        array = np.ascontiguousarray(array)
        digest.update(f"|{array.dtype.str}{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _key(task: Task, family: str, loss: str, beta: float, dtype: str) -> tuple:
    return (task_fingerprint(task), family, loss, float(beta), np.dtype(dtype).name)


def lookup(
    task: Task, family: str, loss: str, beta: float, dtype: str, tol: float
) -> Certificate | None:
    """The cached certificate of the program certified to ``tol`` or tighter; None if none."""
    prefix = _key(task, family, loss, beta, dtype)
    for key in reversed(_CACHE):
        if key[:-1] == prefix and key[-1] <= tol:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    return None


def store(task: Task, family: str, loss: str, beta: float, dtype: str, cert: Certificate) -> None:
    """Remember ``cert`` for the program if it is certified (status "optimal"; the least
    recently used entry goes past MAXSIZE)."""
    if cert.status != "optimal":
        return
    key = (*_key(task, family, loss, beta, dtype), float(cert.tol))
    _CACHE[key] = cert
    _CACHE.move_to_end(key)
    while len(_CACHE) > MAXSIZE:
        _CACHE.popitem(last=False)


def certify(
    task: Task,
    family: str,
    beta: float,
    loss: str,
    tol: float | None = None,
    max_iter: int = 10_000,
) -> Certificate:
    """The certificate of the convex program of ``task``'s train split (``family`` kind, loss,
    beta), solved in float64 by FISTA to relative gap ``tol`` (None: the float64 default),
    from the cache when it holds one."""
    from convextx.estimator import default_tol, precision
    from convextx.programs import convex_program

    tol = default_tol("float64") if tol is None else float(tol)
    found = lookup(task, family, loss, beta, "float64", tol)
    if found is not None:
        _COUNTS["hits"] += 1
        return found
    _COUNTS["misses"] += 1
    with precision("float64"):
        program = convex_program(
            task.X_train, task.y_train, family, beta, loss,
            num_classes=task.num_classes, dtype="float64",
        )  # fmt: skip
        solved = program.solve(method="fista", tol=tol, max_iter=max_iter)
    _COUNTS["solves"] += 1
    cert = Certificate(
        float(solved.objective), float(solved.dual), float(solved.gap), solved.status, tol
    )
    store(task, family, loss, beta, "float64", cert)
    return cert


def cache_info() -> CacheInfo:
    """hits and misses of ``certify``'s lookups, solves it ran, maxsize and current size."""
    return CacheInfo(**_COUNTS, maxsize=MAXSIZE, currsize=len(_CACHE))


def cache_clear() -> None:
    """Empty the cache and zero its counts."""
    _CACHE.clear()
    _COUNTS.update(dict.fromkeys(_COUNTS, 0))


class CertificateError(AssertionError):
    """A nonconvex objective below the certified lower bound: a wrong certificate or scoring."""


def check_certified(
    objectives: Iterable[Any], lower_bound: float, rtol: float = CERT_RTOL, what: str = "run"
) -> float | None:
    """Margin of the lowest of ``objectives`` (a run's final objective and its curve) above the
    certified ``lower_bound``; None when one is not finite (a diverged run). CertificateError
    (an AssertionError) when it lies below the bound by more than rtol * max(1, |bound|)."""
    values = np.asarray([np.nan if v is None else v for v in objectives], dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    lowest = float(values.min())
    if lowest < lower_bound - rtol * max(1.0, abs(lower_bound)):
        raise CertificateError(
            f"{what}: nonconvex objective {lowest!r} is below the certified lower bound "
            f"{lower_bound!r}"
        )
    return lowest - float(lower_bound)
