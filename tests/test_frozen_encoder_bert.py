"""experiments.frozen_encoder on a LOCAL BERT checkpoint: a tiny randomly initialized
``transformers`` BERT and its WordPiece vocabulary written to a temporary directory (nothing is
downloaded), read back through the script's ``--bert-dir`` path."""

import json

import numpy as np
import pytest

from experiments import frozen_encoder

pytestmark = pytest.mark.bert  # needs the bert extra: pip install -e '.[test,bert]'; pytest -m bert

WORDS = "the a cat dog sat ran on mat fast slow red blue big small".split()  # noqa: SIM905
HIDDEN, LAYERS, MAX_LENGTH, OUTPUTS = 16, 2, 10, 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(directory with a saved tiny BERT + tokenizer, texts file, the texts' labels)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("bert")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    model_dir = root / "tiny-bert"
    BertTokenizer(str(vocab)).save_pretrained(model_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(config).eval().save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=24)
    lines = [
        f"{label}\t" + " ".join(rng.choice(WORDS, size=rng.integers(2, 7))) for label in labels
    ]
    texts = root / "texts.tsv"
    texts.write_text("\n".join(lines) + "\n")
    return model_dir, texts, labels


def _reference_states(model_dir, texts) -> tuple[np.ndarray, np.ndarray]:
    """Straight from transformers: (hidden states entering the last layer, its [CLS] output)."""
    import torch
    from transformers import BertModel, BertTokenizer

    sentences = [line.split("\t", 1)[1] for line in texts.read_text().splitlines()]
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir).eval()
    batch = tokenizer(
        sentences, padding="max_length", max_length=MAX_LENGTH, truncation=True,
        return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    assert len(states) == LAYERS + 1  # embeddings, then one per layer
    return states[-2].double().numpy(), states[-1][:, 0].double().numpy()


def _sorted_rows(A: np.ndarray) -> np.ndarray:
    A = A.reshape(len(A), -1)
    return A[np.lexsort(A.T[::-1])]


def test_bert_features_are_the_last_layer_inputs_and_a_linear_teacher(checkpoint):
    model_dir, texts, labels = checkpoint
    F = frozen_encoder.bert_features(model_dir, texts, OUTPUTS, max_length=MAX_LENGTH)
    X_ref, cls_ref = _reference_states(model_dir, texts)
    X = np.concatenate([F.X_train, F.X_test])
    assert X.shape == (24, MAX_LENGTH, HIDDEN) and len(F.X_train) == 18
    np.testing.assert_allclose(_sorted_rows(X), _sorted_rows(X_ref), rtol=1e-6, atol=1e-6)
    # Labels travel with their texts: each sample's label is the one of its matching text.
    y = np.concatenate([F.y_train, F.y_test])
    match = [int(np.argmin(np.abs(X_ref - x).sum(axis=(1, 2)))) for x in X]
    np.testing.assert_array_equal(y, labels[match])
    # T is the [CLS] output of the last layer under a fixed linear projection (zero residual).
    T = np.concatenate([F.T_train, F.T_test])
    assert T.shape == (24, OUTPUTS)
    W, *_ = np.linalg.lstsq(cls_ref[match], T, rcond=None)
    np.testing.assert_allclose(cls_ref[match] @ W, T, atol=1e-9 * np.abs(T).max())
    assert not np.allclose(T, 0)


def test_frozen_encoder_main_on_a_local_bert_checkpoint(checkpoint, tmp_path):
    model_dir, texts, _ = checkpoint
    out = tmp_path / "bert.json"
    argv = [
        "--quick", "--bert-dir", str(model_dir), "--bert-texts", str(texts),
        "--bert-outputs", str(OUTPUTS), "--bert-max-length", str(MAX_LENGTH),
        "--methods", "convex", "simplex_heads", "--steps", "40", "--beta-ratio", "0.05",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    frozen_encoder.main(argv)
    saved = json.loads(out.read_text())
    assert saved["config"]["data"] == f"bert:{model_dir}"
    assert saved["data"] == {"N_train": 18, "N_test": 6, "n": MAX_LENGTH, "d": HIDDEN, "c": OUTPUTS}
    assert "BERT" in saved["teacher"]["source"]
    convex = next(r for r in saved["runs"] if r["method"] == "convex")
    assert convex["certified"] and convex["relative_gap"] <= 1e-6
    tol = 1e-6 * abs(convex["objective"])
    assert abs(convex["recovered_objective"] - convex["objective"]) <= tol
    heads = next(r for r in saved["runs"] if r["method"] == "simplex_heads")
    assert convex["objective"] <= min(heads["history"]["objective"]) + tol
    for run in saved["runs"]:
        assert 0 <= run["final"]["test_accuracy"] <= 1
    assert out.with_suffix(".png").stat().st_size > 0
