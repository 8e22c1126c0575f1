"""Time per forward+backward of one GSS layer vs causal softmax attention as L grows.

GSS mixes tokens with an FFT convolution, O(L log L); attention forms (L, L) scores, O(L^2).
For each L both layers run the same job side by side (timings interleaved: GSS, softmax, GSS,
...), so their ratio is measured under the same machine load. A least-squares fit of
log(time) on log(L) over the lengths >= ``--fit-min-len`` gives each layer's empirical exponent.

    python -m experiments.bench_gss                         # CPU defaults, about 1-2 minutes
    python -m experiments.bench_gss --lengths 1024 4096 16384 65536 --width 128 --batch 8

Prints a table and writes JSON (``--out``, default experiments/results/bench_gss.json) after
every length; ``--resume`` keeps the rows of an earlier run with the same settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from baselines.registry import LayerConfig, get_mixer

DEFAULT_OUT = Path(__file__).parent / "results" / "bench_gss.json"
LAYERS = ("gss", "softmax")
DEFAULT_LENGTHS = [256, 512, 1024, 2048, 4096, 8192]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192]
    )
    parser.add_argument("--width", type=int, default=32, help="model width E")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=1, help="attention heads")
    parser.add_argument("--state-size", type=int, default=64, help="GSS state size N")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per layer and length")
    parser.add_argument("--fit-min-len", type=int, default=1024, help="shortest L in the fit")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true", help="reuse rows of a matching --out")
    args = parser.parse_args(argv)
    for name in ("width", "batch", "heads", "state_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.lengths) < 2:
        parser.error("--lengths must all be >= 2")
    if args.width % args.heads:
        parser.error(f"--heads {args.heads} must divide --width {args.width}")
    return args


def fwd_bwd(name: str, cfg: LayerConfig, x: jax.Array) -> Callable[[], jax.Array]:
    """A compiled, argument-free run of value and gradient (params and input) of sum(y^2)."""
    layer = get_mixer(name)
    params = jax.tree.map(lambda a: a.astype(x.dtype), layer.init(jax.random.key(0), cfg))

    def loss(params, x):
        return jnp.sum(layer.apply(params, x, cfg)[0] ** 2)

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    jax.block_until_ready(step(params, x))  # compile and warm up, untimed
    return lambda: jax.block_until_ready(step(params, x))


def time_side_by_side(runs: dict[str, Callable[[], jax.Array]], repeats: int) -> dict[str, float]:
    """Median seconds per run of each callable, the callables interleaved repeat by repeat."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            tic = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(t) for name, t in times.items()}


def loglog_slope(lengths: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(L); None with fewer than two points."""
    if len(lengths) < 2:
        return None
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def summarize(rows: list[dict], fit_min_len: int) -> dict:
    rows = sorted(rows, key=lambda r: r["L"])
    fit = [r for r in rows if r["L"] >= fit_min_len]
    slopes = {
        name: loglog_slope([r["L"] for r in fit], [r[f"{name}_s"] for r in fit]) for name in LAYERS
    }
    return {"rows": rows, "fit_lengths": [r["L"] for r in fit], "loglog_slope": slopes}


def measure(length: int, args: argparse.Namespace) -> dict:
    """One row: median seconds of GSS and causal softmax at this L, and their ratio."""
    cfg = LayerConfig(
        width=args.width,
        heads=args.heads,
        max_len=length,
        causal=True,
        options={"state_size": args.state_size},
    )
    x = jax.random.normal(jax.random.key(1), (args.batch, length, args.width), args.dtype)
    seconds = time_side_by_side({name: fwd_bwd(name, cfg, x) for name in LAYERS}, args.repeats)
    return {
        "L": length,
        **{f"{name}_s": seconds[name] for name in LAYERS},
        "softmax_over_gss": seconds["softmax"] / seconds["gss"],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    settings = {
        "width": args.width,
        "batch": args.batch,
        "heads": args.heads,
        "state_size": args.state_size,
        "repeats": args.repeats,
        "dtype": args.dtype,
        "device": str(jax.devices()[0]),
        "gss": "ssm_width E/4, gate_width 4E, init normal",
        "softmax": "causal",
    }
    rows: dict[int, dict] = {}
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous["settings"] == settings:
            rows = {r["L"]: r for r in previous["rows"] if r["L"] in args.lengths}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'L':>7} {'gss ms':>10} {'softmax ms':>11} {'softmax/gss':>12}")
    for length in sorted(set(args.lengths)):
        if length not in rows:
            rows[length] = measure(length, args)
            result = {"settings": settings, **summarize(list(rows.values()), args.fit_min_len)}
            args.out.write_text(json.dumps(result, indent=2) + "\n")  # a killed run can resume
        r = rows[length]
        gss_ms, softmax_ms = 1e3 * r["gss_s"], 1e3 * r["softmax_s"]
        print(f"{length:>7} {gss_ms:>10.2f} {softmax_ms:>11.2f} {r['softmax_over_gss']:>12.2f}")
    result = {"settings": settings, **summarize(list(rows.values()), args.fit_min_len)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    slopes, fit = result["loglog_slope"], result["fit_lengths"]
    if len(fit) >= 2:
        fitted = ", ".join(f"{name} {slopes[name]:.2f}" for name in LAYERS)
        print(f"log-log slope of time vs L over L in {fit}: {fitted}")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
