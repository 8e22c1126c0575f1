"""Tasks by name: ``load(name, **cfg)`` and ``names()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from convextx.tasks.addition import addition
from convextx.tasks.base import Task
from convextx.tasks.digits import digits
from convextx.tasks.keel import keel
from convextx.tasks.modular import modular
from convextx.tasks.probes import associative_recall, delayed_copy, needle, parity
from convextx.tasks.student_teacher import student_teacher

_TASKS: dict[str, Callable[..., Task]] = {
    "addition": addition,
    "associative_recall": associative_recall,
    "delayed_copy": delayed_copy,
    "digits": digits,
    "keel": keel,
    "modular": modular,
    "needle": needle,
    "parity": parity,
    "student_teacher": student_teacher,
}


def names() -> list[str]:
    """The names ``load`` accepts, sorted."""
    return sorted(_TASKS)


def load(name: str, **cfg: Any) -> Task:
    """The task ``name`` built with settings ``cfg`` (the generator's keyword arguments).

    Unknown ``name``: ValueError listing the valid names. Unknown settings: TypeError naming
    them and listing the valid ones.
    """
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {names()}")
    generator = _TASKS[name]
    valid = list(inspect.signature(generator).parameters)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise TypeError(f"unknown settings {unknown} for task {name!r}; valid settings: {valid}")
    return generator(**cfg)
