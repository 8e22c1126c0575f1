"""Tests of convextx.tasks: shapes, determinism, splits, every label recomputed independently."""

import itertools

import numpy as np
import pytest
from sklearn.datasets import load_digits

from convextx import tasks
from convextx.tasks import Task

# Small settings per task, so the whole file runs in seconds.
SMALL = {
    "addition": dict(N_train=60, N_test=40, D_min=1, D_train=3, D_test=6),
    "associative_recall": dict(N_train=60, N_test=40, num_pairs=3, num_keys=5, num_values=4),
    "delayed_copy": dict(N_train=60, N_test=40, length=12, delay=3, num_symbols=4),
    "digits": dict(layout="patches", positions=True),
    "keel": dict(dataset="iris"),
    "modular": dict(p=7, op="div", train_fraction=0.4),
    "needle": dict(N_train=60, N_test=40, length=12, num_symbols=4),
    "parity": dict(N_train=60, N_test=40, L_min=2, L_train=5, L_test=9),
    "student_teacher": dict(N_train=30, N_test=20, n=5, d=3, c=3, heads=2),
}


def _arrays(task: Task) -> list[np.ndarray]:
    arrays = [task.X_train, task.X_test, task.y_train, task.y_test]
    if task.tokens_train is not None:
        arrays += [task.tokens_train, task.tokens_test]
    return arrays


def test_names_cover_the_registry():
    assert tasks.names() == sorted(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_dtypes_and_label_ranges(name):
    task = tasks.load(name, **SMALL[name])
    assert task.name == name
    for split, N in (("train", task.n_train), ("test", task.n_test)):
        X, y = getattr(task, f"X_{split}"), getattr(task, f"y_{split}")
        assert X.dtype == np.float64
        assert X.shape == (N, task.n_tokens, task.dim)
        assert np.all(np.isfinite(X))
        assert y.shape[0] == N
        tokens = getattr(task, f"tokens_{split}")
        if tokens is not None:
            assert np.issubdtype(tokens.dtype, np.integer)
            assert tokens.shape == (N, task.n_tokens)
            assert tokens.min() >= 0 and tokens.max() < task.vocab_size
        if task.problem == "regression":
            assert y.dtype == np.float64 and y.ndim in (1, 2)
        else:
            assert np.issubdtype(y.dtype, np.integer)
            assert y.min() >= 0 and y.max() < task.num_classes
            assert y.shape == ((N,) if task.problem == "classification" else (N, task.n_tokens))
    assert isinstance(task.metadata["embedding"], str)
    assert task.metadata["config"]["seed"] == 0
    with pytest.raises(ValueError):
        task.X_train[0, 0, 0] = 1.0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_arrays_other_seed_other_arrays(name):
    first = tasks.load(name, **SMALL[name], seed=3)
    again = tasks.load(name, **SMALL[name], seed=3)
    other = tasks.load(name, **SMALL[name], seed=4)
    for a, b in zip(_arrays(first), _arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        a.shape != b.shape or not np.array_equal(a, b)
        for a, b in zip(_arrays(first), _arrays(other), strict=True)
    )


@pytest.mark.parametrize("name", ["associative_recall", "delayed_copy", "modular", "parity"])
def test_onehot_embedding_is_tokens_then_positions(name):
    task = tasks.load(name, **SMALL[name])
    V, n = task.vocab_size, task.n_tokens
    assert task.dim == V + n
    for X, tokens in ((task.X_train, task.tokens_train), (task.X_test, task.tokens_test)):
        np.testing.assert_array_equal(X[..., :V].argmax(-1), tokens)
        np.testing.assert_array_equal(
            X[..., V:].argmax(-1), np.broadcast_to(np.arange(n), tokens.shape)
        )
        np.testing.assert_array_equal(X.sum(-1), 2.0)


@pytest.mark.parametrize("name", ["needle", "parity"])
def test_random_embedding_keeps_tokens_and_is_a_fixed_table(name):
    onehot = tasks.load(name, **SMALL[name])
    task = tasks.load(name, **SMALL[name], embedding="random", embedding_dim=6)
    assert task.dim == 6
    np.testing.assert_array_equal(task.tokens_train, onehot.tokens_train)
    X = np.concatenate([task.X_train, task.X_test])
    tokens = np.concatenate([task.tokens_train, task.tokens_test])
    for k in range(task.n_tokens):
        for v in np.unique(tokens[:, k]):
            rows = X[tokens[:, k] == v, k]
            np.testing.assert_array_equal(rows, np.broadcast_to(rows[0], rows.shape))
    assert len(np.unique(X[:, 0].round(12), axis=0)) == len(np.unique(tokens[:, 0]))


@pytest.mark.parametrize("op", ["add", "div"])
def test_modular_enumerates_disjoint_pairs_with_correct_labels(op):
    p = 11
    task = tasks.load("modular", p=p, op=op, train_fraction=0.3, seed=1)
    ids = task.metadata["token_ids"]
    pairs = []
    for tokens, y in ((task.tokens_train, task.y_train), (task.tokens_test, task.y_test)):
        np.testing.assert_array_equal(tokens[:, 0], ids["eos"])
        np.testing.assert_array_equal(tokens[:, 2], ids["op"])
        np.testing.assert_array_equal(tokens[:, 4], ids["="])
        a, b = tokens[:, 1], tokens[:, 3]
        if op == "div":
            assert np.all(b != 0)
            np.testing.assert_array_equal((y * b) % p, a)
        else:
            np.testing.assert_array_equal((a + b) % p, y)
        pairs.append({(int(u), int(v)) for u, v in zip(a, b, strict=True)})
    train, test = pairs
    assert len(train) == task.n_train and len(test) == task.n_test
    assert not train & test
    expected = {(a, b) for a, b in itertools.product(range(p), repeat=2) if op == "add" or b}
    assert train | test == expected
    assert task.n_train == round(0.3 * len(expected))


def test_parity_labels_lengths_and_mask():
    cfg = SMALL["parity"]
    task = tasks.load("parity", **cfg)
    pad = task.metadata["pad_id"]
    for split in ("train", "test"):
        tokens, y = getattr(task, f"tokens_{split}"), getattr(task, f"y_{split}")
        mask = task.metadata[f"mask_{split}"]
        np.testing.assert_array_equal(mask, tokens != pad)
        lengths = mask.sum(axis=1)
        for row, length, label in zip(tokens, lengths, y, strict=True):
            assert set(row[:length]) <= {0, 1} and np.all(row[length:] == pad)
            assert label == sum(int(t) for t in row[:length]) % 2
        low, high = (
            (cfg["L_min"], cfg["L_train"])
            if split == "train"
            else (
                cfg["L_train"] + 1,
                cfg["L_test"],
            )
        )
        assert lengths.min() == low and lengths.max() == high
    assert task.n_tokens == cfg["L_test"]


def test_delayed_copy_targets():
    cfg = SMALL["delayed_copy"]
    task = tasks.load("delayed_copy", **cfg)
    blank = task.metadata["blank_id"]
    for tokens, y in ((task.tokens_train, task.y_train), (task.tokens_test, task.y_test)):
        for i, t in itertools.product(range(len(tokens)), range(cfg["length"])):
            expected = tokens[i, t - cfg["delay"]] if t >= cfg["delay"] else blank
            assert y[i, t] == expected


def test_associative_recall_answers():
    cfg = SMALL["associative_recall"]
    task = tasks.load("associative_recall", **cfg)
    offset = task.metadata["value_offset"]
    for tokens, y in ((task.tokens_train, task.y_train), (task.tokens_test, task.y_test)):
        for row, label in zip(tokens, y, strict=True):
            keys, values, query = list(row[0:-1:2]), row[1:-1:2], row[-1]
            assert len(set(keys)) == cfg["num_pairs"] and max(keys) < cfg["num_keys"]
            assert label == values[keys.index(query)] - offset


def test_needle_answers():
    task = tasks.load("needle", **SMALL["needle"])
    marker = task.metadata["marker_id"]
    for tokens, y in ((task.tokens_train, task.y_train), (task.tokens_test, task.y_test)):
        for row, label in zip(tokens, y, strict=True):
            (where,) = np.flatnonzero(row == marker)
            assert label == row[where + 1]


@pytest.mark.parametrize(
    ("problem", "c"), [("regression", 1), ("regression", 3), ("classification", 4)]
)
def test_convex_teacher_is_a_loop_over_one_hot_heads(problem, c):
    n, d, heads = 6, 4, 3
    task = tasks.load(
        "student_teacher",
        N_train=25,
        N_test=15,
        n=n,
        d=d,
        c=c,
        heads=heads,
        problem=problem,
        seed=2,
    )
    teacher = task.metadata["teacher"]
    tokens, w2, a = teacher["tokens"], teacher["w2"], teacher["a"]
    assert len(set(tokens.tolist())) == heads
    for X, y in ((task.X_train, task.y_train), (task.X_test, task.y_test)):
        outputs = np.zeros((len(X), c))
        for j in range(heads):
            w1 = np.eye(n)[tokens[j]]
            for i in range(len(X)):
                outputs[i] += (w1 @ X[i] @ w2[j]) * a[j]
        if problem == "classification":
            np.testing.assert_array_equal(y, outputs.argmax(axis=1))
        else:
            np.testing.assert_allclose(y, outputs[:, 0] if c == 1 else outputs, rtol=1e-12)
        # The teacher reads its tokens only: the convex variable Z gives the same outputs.
        np.testing.assert_allclose(np.einsum("nkd,ckd->nc", X, teacher["Z"]), outputs, rtol=1e-12)
    active = np.flatnonzero(np.abs(teacher["Z"]).sum(axis=(0, 2)))
    np.testing.assert_array_equal(active, np.sort(tokens))


def test_softmax_teacher_matches_explicit_attention():
    task = tasks.load(
        "student_teacher", N_train=6, N_test=4, n=5, d=3, c=2, heads=2, teacher="softmax"
    )
    t = task.metadata["teacher"]
    for X, y in ((task.X_train, task.y_train), (task.X_test, task.y_test)):
        for i in range(len(X)):
            out = np.zeros(2)
            for j in range(2):
                scores = X[i] @ t["Q"][j] @ (X[i] @ t["K"][j]).T / np.sqrt(3)
                attention = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
                out += (attention @ X[i] @ t["V"][j]).mean(axis=0) @ t["W_O"][j]
            np.testing.assert_allclose(y[i], out, rtol=1e-10)


def test_student_teacher_noise_is_additive_gaussian():
    cfg = dict(N_train=2000, N_test=10, n=4, d=3, heads=2, seed=5)
    clean = tasks.load("student_teacher", **cfg)
    noisy = tasks.load("student_teacher", **cfg, noise=0.5)
    np.testing.assert_array_equal(noisy.X_train, clean.X_train)
    residual = noisy.y_train - clean.y_train
    assert abs(residual.std() - 0.5) < 0.05 and abs(residual.mean()) < 0.05


@pytest.mark.parametrize("layout", ["rows", "patches"])
@pytest.mark.parametrize("positions", [False, True])
def test_digits_layouts_reconstruct_the_images(layout, positions):
    task = tasks.load("digits", layout=layout, positions=positions, seed=1)
    data = load_digits()
    n, f = (8, 8) if layout == "rows" else (16, 4)
    assert (task.n_tokens, task.dim) == (n, f + n * positions)
    for split in ("train", "test"):
        X = getattr(task, f"X_{split}")
        index = task.metadata[f"index_{split}"]
        pixels = X[..., :f] * 16
        if layout == "rows":
            images = pixels
        else:  # token 4 i + j is patch (i, j), pixels row-major inside it
            images = np.zeros((len(X), 8, 8))
            for i, j, r, s in itertools.product(range(4), range(4), range(2), range(2)):
                images[:, 2 * i + r, 2 * j + s] = pixels[:, 4 * i + j, 2 * r + s]
        np.testing.assert_array_equal(images, data.images[index])
        np.testing.assert_array_equal(getattr(task, f"y_{split}"), data.target[index])
        if positions:
            np.testing.assert_array_equal(X[..., f:], np.broadcast_to(np.eye(n), (len(X), n, n)))
    assert np.all((task.X_train >= 0) & (task.X_train <= 1))


def test_digits_split_is_a_stratified_partition():
    task = tasks.load("digits", test_fraction=0.2, seed=7)
    train, test = task.metadata["index_train"], task.metadata["index_test"]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(1797))
    totals = np.bincount(load_digits().target)
    np.testing.assert_array_equal(np.bincount(task.y_test), np.round(0.2 * totals))


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown task 'mnist'.*digits.*modular"):
        tasks.load("mnist")


def test_unknown_settings_are_named():
    with pytest.raises(TypeError, match=r"\['bogus', 'prime'\].*'modular'"):
        tasks.load("modular", prime=7, bogus=1)


@pytest.mark.parametrize(
    ("name", "cfg", "argument"),
    [
        ("modular", dict(p=12, op="div"), "p must be prime"),
        ("modular", dict(op="mul"), "unknown op 'mul'; expected one of"),
        (
            "modular",
            dict(train_fraction=1.0),
            r"train_fraction must be a finite number in \(0, 1\)",
        ),
        ("modular", dict(p=7, train_fraction=0.001), "train_fraction"),
        ("modular", dict(seed=-1), r"seed must be an integer in \[0, 4294967295\]"),
        ("modular", dict(embedding="learned"), "unknown embedding 'learned'; expected one of"),
        ("modular", dict(embedding_dim=8), "embedding_dim applies to embedding='random'"),
        (
            "parity",
            dict(embedding="random", embedding_dim=0),
            r"embedding_dim must be an integer in \[1,",
        ),
        ("parity", dict(L_train=8, L_test=8), "L_train < L_test"),
        ("parity", dict(N_train=0), r"N_train must be an integer in \[1, inf\)"),
        ("delayed_copy", dict(length=5, delay=5), "delay must be < length"),
        ("associative_recall", dict(num_pairs=6, num_keys=5), "num_pairs must be <= num_keys"),
        ("needle", dict(length=1), r"length must be an integer in \[2, inf\)"),
        ("student_teacher", dict(n=3, heads=4), "heads must be <= n"),
        (
            "student_teacher",
            dict(problem="classification", c=1),
            r"c must be an integer in \[2, inf\)",
        ),
        ("student_teacher", dict(teacher="mlp"), "unknown teacher 'mlp'; expected one of"),
        ("student_teacher", dict(noise=-0.1), "noise must be a finite number >= 0"),
        ("digits", dict(layout="columns"), "unknown layout 'columns'; expected one of"),
    ],
)
def test_bad_settings_name_the_argument(name, cfg, argument):
    with pytest.raises(ValueError, match=argument):
        tasks.load(name, **cfg)


@pytest.mark.parametrize(
    ("name", "cfg", "argument"),
    [
        ("student_teacher", dict(d=2.5), "d must be an integer"),
        ("modular", dict(p=True), "p must be an integer"),
        ("modular", dict(seed=1.0), "seed must be an integer"),
        ("modular", dict(train_fraction="half"), "train_fraction must be a real number"),
        ("student_teacher", dict(noise=True), "noise must be a real number"),
        ("digits", dict(positions=1), "positions must be True or False"),
    ],
)
def test_settings_of_the_wrong_kind_are_type_errors(name, cfg, argument):
    with pytest.raises(TypeError, match=argument):
        tasks.load(name, **cfg)


def test_numpy_scalar_settings_are_accepted():
    task = tasks.load("modular", p=np.int64(7), train_fraction=np.float32(0.5), seed=np.int32(1))
    config = task.metadata["config"]
    assert type(config["p"]) is int and type(config["train_fraction"]) is float
    assert task.n_train + task.n_test == 7 * 6  # (a, b) pairs with b != 0 for op="div"


def _task(**changes) -> Task:
    fields = dict(
        name="toy",
        problem="classification",
        X_train=np.zeros((4, 2, 3)),
        X_test=np.zeros((2, 2, 3)),
        y_train=np.array([0, 1, 2, 0]),
        y_test=np.array([1, 2]),
        num_classes=3,
        metadata={"embedding": "zeros"},
    )
    return Task(**{**fields, **changes})


def test_task_properties():
    task = _task()
    assert (task.n_train, task.n_test, task.n_tokens, task.dim, task.output_dim) == (4, 2, 2, 3, 3)
    assert (
        _task(
            problem="regression", y_train=np.ones((4, 5)), y_test=np.ones((2, 5)), num_classes=None
        ).output_dim
        == 5
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(problem="ranking"), "problem must be one of"),
        (dict(X_train=np.zeros((4, 6))), r"X_train must be a float array \(N, n, d\)"),
        (dict(X_test=np.zeros((2, 2, 4))), "share"),
        (dict(X_train=np.full((4, 2, 3), np.nan)), "NaN"),
        (dict(y_train=np.array([0, 1, 3, 0])), r"y_train labels must lie in \[0, num_classes=3\)"),
        (dict(y_train=np.array([0, 1, 2])), "y_train has shape"),
        (dict(y_test=np.array([0.0, 1.0])), "integer"),
        (dict(num_classes=None), "num_classes"),
        (dict(metadata={}), "embedding"),
        (dict(tokens_train=np.zeros((4, 2), int)), "given together"),
        (
            dict(
                tokens_train=np.zeros((4, 3), int), tokens_test=np.zeros((2, 2), int), vocab_size=2
            ),
            r"tokens_train must be an int array of shape \(4, 2\)",
        ),
        (
            dict(tokens_train=np.full((4, 2), 2), tokens_test=np.zeros((2, 2), int), vocab_size=2),
            r"tokens_train must lie in \[0, vocab_size=2\)",
        ),
        (
            dict(problem="sequence", y_train=np.zeros((4, 3), int), y_test=np.zeros((2, 3), int)),
            "one target per token",
        ),
        (dict(problem="regression", num_classes=None), "float targets"),
    ],
)
def test_task_rejects_inconsistent_fields(changes, message):
    with pytest.raises(ValueError, match=message):
        _task(**changes)


@pytest.mark.parametrize("name", ["associative_recall", "needle"])
def test_pairs_context_appends_the_previous_token(name):
    """context='pairs': a fixed first layer, concat(e(t_k), e(t_(k-1))), zeros at k = 0."""
    plain = tasks.load(name, **SMALL[name])
    assert tasks.load(name, **SMALL[name], context="none").X_train.tobytes() == (
        plain.X_train.tobytes()
    )
    paired = tasks.load(name, **SMALL[name], context="pairs")
    assert paired.metadata["config"]["context"] == "pairs"
    assert "pairs" in paired.metadata["embedding"]
    for split in ("train", "test"):
        X, P = getattr(plain, f"X_{split}"), getattr(paired, f"X_{split}")
        d = X.shape[2]
        assert P.shape == (*X.shape[:2], 2 * d)
        np.testing.assert_array_equal(P[:, :, :d], X)
        np.testing.assert_array_equal(P[:, 1:, d:], X[:, :-1])
        assert np.all(P[:, 0, d:] == 0)
        np.testing.assert_array_equal(getattr(paired, f"y_{split}"), getattr(plain, f"y_{split}"))
        np.testing.assert_array_equal(
            getattr(paired, f"tokens_{split}"), getattr(plain, f"tokens_{split}")
        )


@pytest.mark.parametrize("name", ["associative_recall", "needle"])
@pytest.mark.parametrize("bad", ["triples", None, 1])
def test_context_is_validated(name, bad):
    with pytest.raises(ValueError, match="context"):
        tasks.load(name, **SMALL[name], context=bad)


def test_from_arrays_encodes_labels_and_validates_like_every_task():
    rng = np.random.default_rng(0)
    X, Xt = rng.standard_normal((20, 3, 2)), rng.standard_normal((6, 3, 2))
    task = tasks.from_arrays(X, np.array(["b", "a"] * 10), Xt, np.array(["c", "a"] * 3))
    assert task.problem == "classification" and task.num_classes == 3
    assert task.metadata["classes"] == ["a", "b", "c"]
    np.testing.assert_array_equal(task.y_train[:2], [1, 0])
    np.testing.assert_array_equal(task.y_test[:2], [2, 0])
    regression = tasks.from_arrays(X, rng.standard_normal((20, 2)), Xt, rng.standard_normal((6, 2)))
    assert regression.problem == "regression" and regression.num_classes is None
    with pytest.raises(ValueError, match="X_test must have"):
        tasks.from_arrays(X, np.zeros(20), rng.standard_normal((6, 2, 2)), np.zeros(6))
    with pytest.raises(ValueError, match="X"):
        tasks.from_arrays(X[:, 0], np.zeros(20), Xt, np.zeros(6))
    with pytest.raises(ValueError, match="problem"):
        tasks.from_arrays(X, np.zeros(20), Xt, np.zeros(6), problem="ranking")
