"""Compiling functions of a ``Problem`` whose map may be any Python callable.

``jax.jit`` traces pytree leaves as arrays, but a problem's ``predict`` may be a plain closure
(``solvers.Problem(predict=lambda z: ..., ...)``), which is not an array. ``split`` separates a
pytree into its array leaves (traced) and a hashable rest (static: callables, Python scalars,
the tree structure), and ``problem_jit`` compiles a function of a problem that way: one
compilation per distinct static part, data passed as arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
