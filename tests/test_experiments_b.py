"""experiments.grokking and experiments.frozen_encoder end to end at tiny size, and their parts."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from baselines import transformer
from baselines.registry import get_ffn, get_mixer
from experiments import frozen_encoder, grokking

HISTORY_KEYS = ("step", "time", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _check_grokking(saved: dict, models: list[str]) -> None:
    cfg = saved["config"]
    assert [r["model"] for r in saved["runs"]] == models
    assert set(saved["summary"]) == set(models)
    assert cfg["learning_rate"] == 1e-3 and cfg["betas"] == [0.9, 0.98] and cfg["warmup"] == 10
    assert cfg["not_paper_hyperparameters"]
    for run in saved["runs"]:
        h = run["history"]
        assert set(HISTORY_KEYS) <= set(h)
        assert len({len(h[k]) for k in HISTORY_KEYS}) == 1
        assert h["step"][0] == 0 and h["step"][-1] == run["steps"] == cfg["steps"]
        assert np.all(np.diff(h["step"]) > 0)
        for split in ("train", "test"):
            acc = np.asarray(h[f"{split}_accuracy"])
            assert np.all((acc >= 0) & (acc <= 1))
            assert np.all(np.isfinite(h[f"{split}_loss"]))
            reached = run["steps_to_99"][split]
            hits = [s for s, a in zip(h["step"], acc, strict=True) if a >= grokking.THRESHOLD]
            assert reached == (hits[0] if hits else None)
        assert len(run["last_row_attention"]) == len(run["mixers"])
        for layer in run["last_row_attention"]:  # (H, L) rows of a causal stochastic mixer
            np.testing.assert_allclose(np.sum(layer, axis=1), 1.0, atol=1e-3)


def test_grokking_quick_end_to_end_and_resume(tmp_path):
    out = tmp_path / "grokking.json"
    argv = ["--quick", "--models", "1L-L1", "--out", str(out), "--no-progress"]
    grokking.main(argv)
    saved = json.loads(out.read_text())
    _check_grokking(saved, ["1L-L1"])
    assert out.with_suffix(".png").stat().st_size > 0
    assert saved["data"]["N_train"] + saved["data"]["N_test"] == 7 * 6  # a / b mod 7, b != 0
    again = grokking.main([*argv, "--resume"])  # finished runs are kept, not retrained
    assert again["runs"][0]["seconds"] == saved["runs"][0]["seconds"]


@pytest.mark.slow
def test_grokking_quick_every_model(tmp_path):
    out = tmp_path / "grokking.json"
    grokking.main(["--quick", "--out", str(out), "--no-progress"])
    _check_grokking(json.loads(out.read_text()), list(grokking.MODELS))


def test_full_flags_select_the_paper_scale_runs():
    grok = grokking.config_of(grokking.parse_args(["--full"]))
    assert (grok["p"], grok["steps"], grok["width"], grok["op"]) == (97, 100_000, 128, "div")
    assert len(grok["seeds"]) >= 3 and set(grok["models"]) == set(grokking.MODELS)
    frozen = frozen_encoder.config_of(frozen_encoder.parse_args(["--full"]))
    default = frozen_encoder.config_of(frozen_encoder.parse_args([]))
    assert frozen["width"] > default["width"] and frozen["depth"] > default["depth"]
    assert frozen["steps"] > default["steps"] and len(frozen["seeds"]) >= 3


def test_steps_to_threshold_is_the_first_logged_step():
    history = {"step": [0, 1, 3, 10], "acc": [0.1, 0.995, 0.5, 1.0]}
    assert grokking.steps_to(history, "acc") == (1, 0)
    assert grokking.steps_to({"step": [0, 5], "acc": [0.2, 0.98]}, "acc") == (None, None)


def test_last_layer_inputs_are_the_last_mixer_input():
    """Recompute the pre-norm stack by hand: the features X feed the last mixer, and the rest of
    the network on X gives the model's output."""
    cfg = transformer.TransformerConfig(width=8, depth=2, heads=2, max_len=5, input_dim=3)
    params = transformer.init(jax.random.key(0), cfg)
    x = jax.random.normal(jax.random.key(1), (4, 5, 3))
    lcfg, ln = cfg.layer_config, transformer.layer_norm
    mixer, ffn = get_mixer("softmax"), get_ffn("mlp")

    @jax.jit  # one compilation instead of one per eager op
    def by_hand(params, x):
        h = x @ params["embed"]["w"] + params["embed"]["b"] + params["positions"][:5]
        first, last = params["layers"]
        h = h + mixer.apply(first["mixer"], ln(h, first["norm1"]), lcfg)[0]
        h = h + ffn.apply(first["ffn"], ln(h, first["norm2"]), lcfg)[0]
        X = ln(h, last["norm1"])
        h = h + mixer.apply(last["mixer"], X, lcfg)[0]
        h = h + ffn.apply(last["ffn"], ln(h, last["norm2"]), lcfg)[0]
        out = ln(h, params["final_norm"]).mean(1) @ params["head"]["w"] + params["head"]["b"]
        return X, out, transformer.last_layer_inputs(params, x, cfg)

    X, out, features = by_hand(params, x)
    np.testing.assert_allclose(features, X, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, transformer.apply(params, x, cfg)[0], rtol=1e-10, atol=1e-12)


def _synthetic_features(seed: int = 0) -> frozen_encoder.Features:
    rng = np.random.default_rng(seed)
    N, n, d, c = 40, 4, 3, 3
    X = rng.normal(size=(2 * N, n, d))
    T = np.einsum("ikq,lkq->il", X, rng.normal(size=(c, n, d))) + 0.1 * rng.normal(size=(2 * N, c))
    y = T.argmax(1)
    return frozen_encoder.Features(X[:N], T[:N], y[:N], X[N:], T[N:], y[N:], {"source": "test"})


def _check_certified(result: dict) -> None:
    convex = next(r for r in result["runs"] if r["method"] == "convex")
    assert convex["certified"] and convex["relative_gap"] <= 1e-6
    objective = convex["objective"]
    tol = 1e-6 * abs(objective)
    assert abs(convex["recovered_objective"] - objective) <= tol
    assert convex["history"]["time"] == sorted(convex["history"]["time"])
    heads = [r for r in result["runs"] if r["method"] == "simplex_heads"]
    assert heads
    for run in heads:  # the same architecture and objective: never below the certified optimum
        assert objective <= run["objective"] + tol
        assert objective <= min(run["history"]["objective"]) + tol
        assert run["margin_above_bound"] >= -tol


def test_frozen_encoder_compare_certifies_against_adam():
    argv = ["--quick", "--methods", "convex", "simplex_heads", "--beta-ratio", "0.05"]
    cfg = frozen_encoder.config_of(frozen_encoder.parse_args([*argv, "--steps", "60"]))
    seen = []
    result = frozen_encoder.compare(
        _synthetic_features(), cfg, on_run=lambda r: seen.append(len(r))
    )
    assert seen == [1, 2]  # incremental output after every run
    assert 0 < result["beta"] < result["beta_max"]
    _check_certified(result)
    for run in result["runs"]:
        for key in ("train_mse", "test_mse", "train_accuracy", "test_accuracy"):
            assert np.isfinite(run["final"][key]) and np.isfinite(run["history"][key]).all()


@pytest.mark.slow
def test_frozen_encoder_quick_end_to_end(tmp_path):
    out = tmp_path / "frozen.json"
    frozen_encoder.main(["--quick", "--out", str(out), "--no-progress"])
    saved = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert [r["method"] for r in saved["runs"]] == list(frozen_encoder.METHODS)
    assert set(saved["summary"]) == set(frozen_encoder.METHODS)
    data = saved["data"]
    assert (data["n"], data["c"]) == (8, 10) and data["d"] == saved["config"]["width"]
    assert 0 <= saved["teacher"]["test_accuracy"] <= 1
    _check_certified(saved)
    for run in saved["runs"]:
        h = run["history"]
        assert len({len(h[k]) for k in ("time", "train_mse", "test_mse", "test_accuracy")}) == 1
    for method in ("simplex_layer", "softmax_layer"):
        maps = np.asarray(next(r for r in saved["runs"] if r["method"] == method)["maps"])
        np.testing.assert_allclose(maps.sum(1), 1.0, atol=1e-3)  # (H, n) mean attention rows
    assert jnp.asarray(saved["runs"][0]["token_usage"]).shape == (10, 8)
