"""The Markdown table and the plot of a ``bench_peers`` result (its JSON, as written).

``markdown(data)``: one ``size_section`` per size (a row per (contestant, mode), the fastest
median time to each true relative suboptimality with the tol that reached it, the size's
verdicts), then the targets' verdicts over the sizes.
``plot(data, path)``: one panel per size, the seconds to the target accuracy (1e-6) of every
contestant, warm and cold, on a log axis. ``write(data, json_path)`` writes both beside the
JSON (``.md`` and ``.png``), atomically.

The same for a ``bench_keel`` result (the performance profile over the KEEL sets):
``profile_markdown`` (a row per problem, each solver's seconds to 1e-6; the shares solved
first, within 2x and 10x; the verdict of P3), ``plot_profile`` and ``write_profile``.

Either is rebuilt from a JSON already written::

    python -m experiments._peers_report experiments/results/bench_peers.json
    python -m experiments._peers_report experiments/results/bench_keel.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convextx import _store
from experiments import _common

TARGET = "1e-06"
PACKAGE_LINE = "convextx"  # bench_keel: this package's fastest method per problem
MODE_STYLE = {  # mode -> (label, hatch)
    "warm": ("warm", ""),
    "cold": ("cold", "//"),
    "cold_first": ("cold, first process", "//"),
    "cold_cached": ("cold, cached compile", ".."),
}


def _cell(entry: dict | None) -> str:
    """'0.0437 s (tol 1e-03)', or '-' when no run reached the accuracy."""
    return "-" if entry is None else f"{entry['median_s']:.3g} s (tol {entry['tol']:.0e})"


def _verdict(key: str, v: dict) -> str:
    if "ratio" in v:
        return f"- {key}: **{v['verdict']}**: peer {v['peer'][0]} / {v['package'][0]} = {v['ratio']:.2f}"
    if "limit_s" in v:
        return (
            f"- {key}: **{v['verdict']}**: cold {v['cold_s']:.3g} s against 1.3 x warm "
            f"{v['warm_s']:.3g} s + 0.3 s = {v['limit_s']:.3g} s"
        )
    return f"- {key}: {v['verdict']}"


def size_section(label: str, result: dict[str, Any]) -> str:
    """One size of the result as Markdown: its setting, the table of the fastest runs to each
    accuracy per (contestant, mode), and its verdicts (also what ``bench_peers`` prints)."""
    size, ref = result["size"], result["reference"]
    epsilons = list(next(iter(next(iter(result["best"].values())).values())))
    lines = [
        f"## {label}: N = {size['N']}, d = {size['d']}, P = {result['P']} "
        f"({result['variables']} variables)",
        "",
        f"F* = {ref['optimum']:.12g}, within {ref['optimum_bound']:.1e} of the optimum "
        f"(certified); best peer {ref['best_peer']} at {ref['best_peer_subopt']:.1e}.",
        "",
        "| contestant | mode | " + " | ".join(f"<= {e}" for e in epsilons) + " |",
        "|---|---|" + "---|" * len(epsilons),
    ]
    for name, modes in result["best"].items():
        for mode, cells in modes.items():
            row = " | ".join(_cell(cells[e]) for e in epsilons)
            lines.append(f"| {name} | {MODE_STYLE.get(mode, (mode,))[0]} | {row} |")
    lines += ["", *(_verdict(k, v) for k, v in result["verdicts"].items())]
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    """The result as Markdown (module docstring)."""
    machine = data["machine"]
    lines = [
        "# bench_peers: seconds to a true relative suboptimality",
        "",
        f"Gated-ReLU group lasso (n = 1 token), {data['config'].get('loss', 'squared')} loss, "
        f"beta = {data['config'].get('beta_ratio')} beta_max; medians of "
        f"{data['config'].get('repeats')} interleaved repeats; every output re-scored by this "
        f"package's certificate. Machine: {machine.get('cpu_count')} CPU cores, "
        f"{machine.get('device')}, jax {machine.get('jax')}, started {machine.get('started')}.",
    ]
    if data.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(data["skipped"].values())]
    for label, result in data["sizes"].items():
        lines += ["", size_section(label, result)]
    if data.get("targets"):
        lines += ["", "## Targets over the sizes run", ""]
        lines += [f"- {key}: **{verdict}**" for key, verdict in data["targets"].items()]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: str | Path) -> Path:
    """Seconds to 1e-6 per contestant and mode, one panel per size (module docstring)."""
    sizes = data["sizes"]
    fig, axes = _common.figure(1, max(1, len(sizes)), size=(4.6, 3.6))
    for ax, (label, result) in zip(axes[0], sizes.items(), strict=False):
        bars = [
            (f"{name} ({MODE_STYLE.get(mode, (mode,))[0]})", cells[TARGET]["median_s"], mode)
            for name, modes in result["best"].items()
            for mode, cells in modes.items()
            if cells.get(TARGET)
        ]
        for i, (_, seconds, mode) in enumerate(bars):
            hatch = MODE_STYLE.get(mode, (mode, ""))[1]
            color = "tab:blue" if mode == "warm" else "tab:orange"
            ax.barh(i, seconds, color=color, hatch=hatch, edgecolor="k", lw=0.4)
            ax.text(seconds, i, f" {seconds:.3g}", va="center", fontsize=6)
        ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("seconds to 1e-6 true relative suboptimality")
        ax.set_title(f"{label} variables (N={result['size']['N']}, P={result['P']})", fontsize=8)
        ax.grid(alpha=0.3, axis="x", which="both")
    return _common.save_plot(fig, path)


def _write_markdown(text: str, json_path: Path) -> Path:
    md = json_path.with_suffix(".md")
    with _store.atomic_path(md) as temporary:
        Path(temporary).write_text(text)
    return md


def write(data: dict[str, Any], json_path: str | Path) -> tuple[Path, Path]:
    """``markdown`` and ``plot`` beside ``json_path`` (.md, .png); returns their paths."""
    json_path = Path(json_path)
    md = _write_markdown(markdown(data), json_path)
    return md, plot(data, json_path.with_suffix(".png"))


# ------------------------------------------------------------------ bench_keel's profile


def profile_summary(data: dict[str, Any]) -> str:
    """The shares of the problems each solver solved first, within 2x and 10x of the fastest,
    and the verdict of P3 (Markdown; also what ``bench_keel`` prints)."""
    summary = data["summary"]
    columns = list(next(iter(summary["shares"].values()), {}))
    lines = [
        f"{summary['problems']} problems ({summary['unsolved']} solved by no one); share of the "
        "problems each solver reached 1e-6 true relative suboptimality on:",
        "",
        "| solver | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, shares in summary["shares"].items():
        lines.append(f"| {name} | " + " | ".join(f"{shares[c]:.2f}" for c in columns) + " |")
    p3 = summary["P3"]
    first = "-" if p3["share_first"] is None else f"{p3['share_first']:.2f}"
    lines += ["", f"- P3: **{p3['verdict']}**: first on {first} of the problems "
              f"(needed {p3['needed']:.2f})"]  # fmt: skip
    for label, part in summary.get("package_first_by_size", {}).items():
        lines.append(f"- {label}: first on {part['share_first']:.2f} of {part['problems']}")
    return "\n".join(lines)


def profile_markdown(data: dict[str, Any]) -> str:
    """A ``bench_keel`` result as Markdown (module docstring)."""
    config, records = data["config"], data["records"]
    names = config["contestants"]
    lines = [
        "# bench_keel: a performance profile over the KEEL/UCI sets",
        "",
        f"Gated-ReLU group lasso (n = 1 token), squared loss, one-vs-rest targets, "
        f"{config['gates']} random gates, beta = {config['beta_ratios']} x beta_max; seconds "
        f"of the solve call to a true relative suboptimality of 1e-6 (warm, medians of "
        f"{config['repeats']}), every output re-scored by this package's certificate.",
    ]
    if data.get("skipped"):
        lines += ["", "Not installed: " + ", ".join(data["skipped"])]
    lines += ["", profile_summary(data), "", "## Problems", ""]
    lines += ["| problem | N | variables | " + " | ".join(names) + " |"]
    lines += ["|---|---|---|" + "---|" * len(names)]
    for r in records:
        fastest = min((t for t in r["seconds"].values() if t is not None), default=None)
        cells = [
            "-" if r["seconds"].get(n) is None
            else f"**{r['seconds'][n]:.3g}**" if r["seconds"][n] == fastest
            else f"{r['seconds'][n]:.3g}"
            for n in names
        ]  # fmt: skip
        lines.append(f"| {r['label']} | {r['N']} | {r['variables']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_profile(data: dict[str, Any], path: str | Path) -> Path:
    """rho_s(tau) of every solver on a log tau axis."""
    summary = data["summary"]
    fig, axes = _common.figure(1, 1, size=(5.0, 3.6))
    ax = axes[0][0]
    for name, rho in summary["profile"].items():
        width = 2.2 if name == PACKAGE_LINE else 1.0
        ax.step(summary["taus"], rho, where="post", label=name, lw=width)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("tau: within tau x the fastest solver's time to 1e-6")
    ax.set_ylabel("share of problems")
    ax.set_title(f"KEEL/UCI, {summary['problems']} problems", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _common.save_plot(fig, path)


def write_profile(data: dict[str, Any], json_path: str | Path) -> Path:
    """``profile_markdown`` and ``plot_profile`` beside ``json_path``; returns the plot's path."""
    json_path = Path(json_path)
    _write_markdown(profile_markdown(data), json_path)
    return plot_profile(data, json_path.with_suffix(".png"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild a bench's Markdown and plot.")
    parser.add_argument("json", type=Path, help="a bench_peers or bench_keel JSON")
    args = parser.parse_args(argv)
    data = _common.read_json(args.json)
    if data is None:
        sys.exit(f"no such file: {args.json}")
    if "records" in data:  # bench_keel
        paths = (args.json.with_suffix(".md"), write_profile(data, args.json))
    else:
        paths = write(data, args.json)
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
