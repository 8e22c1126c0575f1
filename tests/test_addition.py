"""The addition task: shapes, determinism, lengths and queries, every label recomputed by Python
integer addition from the tokens, and argument errors; a smoke run of
experiments.length_generalization."""

import json
from pathlib import Path

import numpy as np
import pytest

from convextx import tasks
from convextx.tasks.addition import sum_digits

SMALL = dict(N_train=200, N_test=120, D_min=1, D_train=3, D_test=6)


def _decode(row: np.ndarray, base: int) -> tuple[int, int, int, int]:
    """(a, b, D, q) of one token row, read back without the generator's arrays."""
    pad, marked = 2 * base**2, base**2
    q = next(k for k, t in enumerate(row) if marked <= t < pad or t == pad + 1)
    pairs = [int(t) % marked for t in row if t < pad]
    a = sum((t // base) * base**k for k, t in enumerate(pairs))
    b = sum((t % base) * base**k for k, t in enumerate(pairs))
    return a, b, len(pairs), q


@pytest.mark.parametrize("base", [2, 10, 16])
def test_labels_are_digits_of_python_integer_sums(base):
    task = tasks.load("addition", **SMALL, base=base, seed=1)
    for split in ("train", "test"):
        tokens, y = getattr(task, f"tokens_{split}"), getattr(task, f"y_{split}")
        lengths = task.metadata[f"lengths_{split}"]
        queries = task.metadata[f"queries_{split}"]
        for row, label, length, query in zip(tokens, y, lengths, queries, strict=True):
            a, b, D, q = _decode(row, base)
            assert (D, q) == (length, query)
            assert label == (a + b) // base**q % base
            assert np.all(row[D + 1 :] == task.metadata["pad_id"])  # pads after the sum's digits


def test_shapes_vocabulary_and_metadata():
    task = tasks.load("addition", **SMALL)
    L, V = SMALL["D_test"] + 1, 2 * 10**2 + 2
    assert task.name == "addition" and task.problem == "classification"
    assert (task.vocab_size, task.num_classes, task.n_tokens) == (V, 10, L)
    assert task.X_train.shape == (200, L, V + L) and task.X_test.shape == (120, L, V + L)
    assert task.tokens_train.shape == (200, L) and task.y_test.shape == (120,)
    assert task.metadata["config"] == {**SMALL, "base": 10, "seed": 0, "embedding": "onehot",
                                       "embedding_dim": None}  # fmt: skip
    assert (task.metadata["pad_id"], task.metadata["marked_pad_id"]) == (200, 201)
    for key in ("lengths_train", "queries_test"):
        with pytest.raises(ValueError):
            task.metadata[key][0] = 0  # read-only, like the task's arrays
    np.testing.assert_array_equal(task.X_train[..., :V].argmax(-1), task.tokens_train)


def test_lengths_split_train_short_test_long_and_queries_cover_the_sum():
    task = tasks.load("addition", **SMALL)
    for split, low, high in (("train", 1, 3), ("test", 4, 6)):
        lengths = task.metadata[f"lengths_{split}"]
        queries = task.metadata[f"queries_{split}"]
        assert lengths.min() == low and lengths.max() == high
        assert np.all((queries >= 0) & (queries <= lengths))
        assert np.any(queries == lengths) and np.any(queries < lengths)  # the carry out, too
        tokens = getattr(task, f"tokens_{split}")
        marked = (tokens >= 100) & (tokens != 200)
        np.testing.assert_array_equal(marked.sum(1), 1)  # exactly one marked position
        np.testing.assert_array_equal(marked.argmax(1), queries)


def test_every_test_token_id_is_a_train_token_id():
    """Train and test differ in how many positions hold digits, not in the ids they use."""
    task = tasks.load("addition", N_train=3000, N_test=200, D_train=2, D_test=5, base=4)
    assert set(np.unique(task.tokens_test)) <= set(np.unique(task.tokens_train))


def test_same_seed_same_task_other_seed_other_task():
    first, again = tasks.load("addition", **SMALL, seed=3), tasks.load("addition", **SMALL, seed=3)
    other = tasks.load("addition", **SMALL, seed=4)
    for name in ("X_train", "X_test", "y_train", "y_test", "tokens_train", "tokens_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.tokens_train, other.tokens_train)
    random = tasks.load("addition", **SMALL, seed=3, embedding="random", embedding_dim=5)
    assert random.dim == 5
    np.testing.assert_array_equal(random.tokens_train, first.tokens_train)


def test_sum_digits_is_schoolbook_addition():
    rng = np.random.default_rng(0)
    a, b = rng.integers(7, size=(50, 4)), rng.integers(7, size=(50, 4))
    digits = sum_digits(a, b, 7)
    weights = 7 ** np.arange(5)
    np.testing.assert_array_equal(digits @ weights, a @ weights[:4] + b @ weights[:4])
    assert digits.max() < 7 and set(np.unique(digits[:, -1])) <= {0, 1}


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        (dict(D_min=4, D_train=3), ValueError, "need D_min <= D_train < D_test"),
        (dict(D_train=6, D_test=6), ValueError, "need D_min <= D_train < D_test"),
        (dict(base=1), ValueError, r"base must be an integer in \[2, 64\]"),
        (dict(base=65), ValueError, r"base must be an integer in \[2, 64\]"),
        (dict(base=2.0), TypeError, "base must be an integer"),
        (dict(N_train=0), ValueError, "N_train must be an integer"),
        (dict(D_min=0), ValueError, "D_min must be an integer"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(embedding="learned"), ValueError, "embedding"),
        (dict(embedding_dim=4), ValueError, "embedding_dim applies to embedding='random'"),
    ],
)
def test_bad_arguments_raise(settings, error, match):
    with pytest.raises(error, match=match):
        tasks.load("addition", **{**SMALL, **settings})


def test_length_generalization_experiment_quick(tmp_path):
    """experiments.length_generalization end to end at its tiny size: every (task, model) unit,
    accuracies at every trained and longer length, per-length test accuracies that average back
    to the model's own test accuracy, and a resume that refits nothing."""
    from experiments import length_generalization as experiment

    path = tmp_path / "lg.json"
    results = experiment.main(["--quick", "--out", str(path), "--no-progress"])
    data = json.loads(path.read_text())
    assert Path(results["plot"]).exists() and data["skipped"] == {}
    expected = {(t, m) for t in experiment.TASKS for m in ("majority", "convex-fista",
                                                            "softmax-transformer")}  # fmt: skip
    assert {(r["task"], r["model"]) for r in data["records"]} == expected
    longest = {"parity": (3, 5), "addition": (2, 3)}  # (L_train, L_test) of the quick size
    for r in data["records"]:
        trained, top = longest[r["task"]]
        acc = {int(k): v for k, v in r["accuracy_by_length"].items()}
        assert sorted(acc) == list(range(1, top + 1)) and r["train_lengths"] == list(
            range(1, trained + 1)
        )
        assert all(0.0 <= v <= 1.0 for v in acc.values())
        if r["model"] != "majority":
            longer = [length for length in acc if length > trained]
            count = {int(k): v for k, v in r["count_by_length"].items()}
            mean = sum(acc[k] * count[k] for k in longer) / sum(count[k] for k in longer)
            assert mean == pytest.approx(r["test_accuracy"], abs=1e-12)
        assert "*" in data["summary"][r["task"]]["table"]
    again = experiment.main(["--quick", "--out", str(path), "--no-progress", "--resume"])
    assert [r["seconds"] for r in again["records"]] == [r["seconds"] for r in data["records"]]
