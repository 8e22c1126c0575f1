"""Compiling functions of a ``Problem`` whose map may be any Python callable.

``jax.jit`` traces pytree leaves as arrays, but a problem's ``predict`` may be a plain closure
(``solvers.Problem(predict=lambda z: ..., ...)``), which is not an array. ``split`` separates a
pytree into its array leaves (traced) and a hashable rest (static: callables, Python scalars,
the tree structure), and ``problem_jit`` compiles a function of a problem that way: one
compilation per distinct static part, data passed as arguments.

``collection_paused`` holds off Python's cyclic garbage collector while a solve traces and
compiles: tracing allocates enough to trigger a full collection, which scans every object of
the process (JAX's own are about 1e5) and took 85-90 ms of a 0.4 s cold solve on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp


def split(tree: Any) -> tuple[list, tuple]:
    """(array leaves, hashable structure) of a pytree; ``merge`` inverts it."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = tuple(
        isinstance(leaf, jax.Array | jnp.ndarray) or hasattr(leaf, "__array__") for leaf in leaves
    )
    arrays = [leaf for leaf, a in zip(leaves, is_array, strict=True) if a]
    static = tuple(None if a else leaf for leaf, a in zip(leaves, is_array, strict=True))
    return arrays, (treedef, static, is_array)


def merge(arrays: list, structure: tuple) -> Any:
    """The pytree of ``split``'s (arrays, structure)."""
    treedef, static, is_array = structure
    it = iter(arrays)
    leaves = [next(it) if a else s for s, a in zip(static, is_array, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (module docstring); the collector's state
    is restored on exit, so nested blocks and callers that disabled it themselves are left as
    they were. Collection resumes at its next threshold: a process that ends first never pays
    it, a long session pays it once, later. Reference counting frees memory as always."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def problem_jit(fn: Callable) -> Callable:
    """``fn(problem, *arrays)`` compiled with the problem's non-array leaves static."""

    @functools.partial(jax.jit, static_argnums=0)
    def compiled(structure: tuple, arrays: list, *args: Any) -> Any:
        return fn(merge(arrays, structure), *args)

    @functools.wraps(fn)
    def wrapper(problem: Any, *args: Any) -> Any:
        arrays, structure = split(problem)
        return compiled(structure, arrays, *args)

    wrapper.compiled = compiled  # its cache, for tests that count compilations
    return wrapper
