"""Leaderboards and plots of benchmark runs (rows as written by ``convextx.bench``).

A row is a ``Model.report()`` dict plus "task" and "seed" (and "error" for a failed run). A
metric or objective of None (a diverged run's non-finite value) shows as "-". Plots are written
atomically (a temporary file in the same folder, then renamed over the target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convextx import learning_curves, scaling
from convextx._store import atomic_path


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (None if there are none)."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _rank(rows: Sequence[dict]) -> float:
    """Sort key of a (task, model) group: best mean test metric first, groups without one last."""
    mean = _mean([r["test_metric"] for r in rows])
    return math.inf if mean is None else -mean


def groups(rows: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    """Successful rows grouped by (task, model), in first-seen order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if "error" not in row:
            out.setdefault((row["task"], row["model"]), []).append(row)
    return out


def _excess(row: dict) -> float | None:
    """objective - (certified optimum - gap), or None without a certificate."""
    parts = (row.get("objective"), row.get("certified_optimum"), row.get("gap"))
    return None if any(p is None for p in parts) else parts[0] - parts[1] + parts[2]


def _untrained(row: dict) -> bool:
    """Whether a trained model's run took no optimizer step (its budget ran out first)."""
    steps = row.get("history", {}).get("step")
    return steps is not None and (len(steps) == 0 or max(steps) == 0)


def leaderboard(rows: Sequence[dict]) -> str:
    """A Markdown table, one line per (task, model), means over seeds: test metric (+- std over
    seeds), train objective, certified optimum and gap (where the model has one), certified
    excess (the model's own objective minus the certified lower bound, optimum - gap: an upper
    bound on how far that model is from the optimum; for the convex solve, its gap), wall
    time; then the failed runs. Within a task, the best test metric first. A model whose runs
    took no optimizer step (a budget smaller than its compilation) is flagged "(0 steps)". The
    last column, test ECE, is the rows' "test_ece" (top-label expected calibration error of the
    test split; "-" for regression)."""
    lines = [
        "| task | model | seeds | test metric | train objective | certified optimum | gap "
        "| certified excess | wall time (s) | test ECE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    grouped = groups(rows)
    tasks = list(dict.fromkeys(task for task, _ in grouped))
    for task in tasks:
        entries = [(model, rs) for (t, model), rs in grouped.items() if t == task]
        entries.sort(key=lambda e: _rank(e[1]))
        for model, rs in entries:
            metric = [r["test_metric"] for r in rs if r["test_metric"] is not None]
            spread = f" +- {np.std(metric):.3f}" if len(metric) > 1 else ""
            flag = (
                f" (0 steps in {sum(map(_untrained, rs))} of {len(rs)})"
                if any(map(_untrained, rs))
                else ""
            )
            lines.append(
                f"| {task} | {model}{flag} | {len(rs)} | {rs[0]['metric']} {_fmt(_mean(metric), '.4f')}{spread} "
                f"| {_fmt(_mean([r['objective'] for r in rs]))} "
                f"| {_fmt(_mean([r['certified_optimum'] for r in rs]))} "
                f"| {_fmt(_mean([r['gap'] for r in rs]), '.2g')} "
                f"| {_fmt(_mean([_excess(r) for r in rs]), '.2g')} "
                f"| {_fmt(_mean([r['wall_seconds'] for r in rs]), '.3g')} "
                f"| {_fmt(_mean([r.get('test_ece') for r in rs]), '.4f')} |"
            )
    failed = [r for r in rows if "error" in r]
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['task']} / {r['model']} / seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def table(rows: Sequence[dict]) -> str:
    """A plain-text table, one line per run: model, train objective, certified optimum, gap,
    train and test metric, wall and CPU time of the fit."""
    header = (
        f"{'model':<22}{'train objective':>16}{'certified optimum':>19}{'gap':>10}"
        f"{'train':>8}{'test':>8}{'wall (s)':>10}{'cpu (s)':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['model']:<22}failed: {row['error']}")
            continue
        lines.append(
            f"{row['model']:<22}{_fmt(row['objective'], '.6g'):>16}"
            f"{_fmt(row['certified_optimum'], '.6g'):>19}{_fmt(row['gap'], '.2g'):>10}"
            f"{_fmt(row['train_metric'], '.4f'):>8}{_fmt(row['test_metric'], '.4f'):>8}"
            f"{row['wall_seconds']:>10.1f}{row['cpu_seconds']:>9.1f}"
        )
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=120)
    finally:
        plt.close(fig)
    return path


def _curve(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """(time, objective) of a run's history at measured times t > 0 (a log axis has no t = 0:
    such points are left out rather than moved); None objectives become nan (a gap)."""
    time = np.asarray(row["history"]["time"], float)
    objective = np.asarray(row["history"]["objective"], float)
    keep = time > 0
    return time[keep], objective[keep]


def _label(row: dict) -> str:
    """A legend entry: the model and its whole fit time (compilation included), which the
    curve's time axis (measured iterations only) leaves out."""
    return f"{row['model']} (fit {row['wall_seconds']:.2g} s with compile)"


def _major_labels_only(ax: Any) -> None:
    """No labels on a log axis's minor ticks (they overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_objective(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Train objective vs measured training time (compilation excluded; each legend entry gives
    the whole fit's time), one line per run, one panel per objective (what it sums: the convex
    program's models apart from the rest); each panel's certified optimum is a black dashed
    line of its own, in the legend; panels with an optimum zoom in on it. Writes a PNG."""
    plt = _pyplot()
    rows = [r for r in rows if "error" not in r and len(_curve(r)[0])]
    scales = list(dict.fromkeys(r["objective_terms"] for r in rows)) or [""]
    colors = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))}
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        panel = [r for r in rows if r["objective_terms"] == scale]
        labelled = set()
        for row in panel:
            time, objective = _curve(row)
            ax.plot(
                time,
                objective,
                color=colors[row["model"]],
                marker="." if len(time) < 3 else None,
                label=None if row["model"] in labelled else _label(row),
            )
            labelled.add(row["model"])
        optima = [r["certified_optimum"] for r in panel if r["certified_optimum"] is not None]
        if optima:
            ax.axhline(min(optima), color="black", ls="--", lw=1, label="certified optimum")
            finals = [r["objective"] for r in panel if r["objective"] is not None]
            ax.set_ylim(0.98 * min(*optima, *finals), 1.3 * max(*optima, *finals))
        ax.set_xscale("log")
        ax.set_yscale("log")
        _major_labels_only(ax)
        ax.set_xlabel("measured training time (s), compilation excluded")
        ax.set_ylabel("train objective")
        ax.set_title(scale, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_suboptimality(rows: Sequence[dict], path: str | Path, title: str = "") -> Path | None:
    """(F - F*) / |F*| against measured training time on log-log axes, for every run that
    shares a convex program's objective (a certified optimum), with F* the certified lower
    bound (optimum - gap), so every value is an upper bound on the run's relative
    suboptimality. None (and no file) when no run has a certificate."""
    rows = [r for r in rows if "error" not in r and r.get("certified_optimum") is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))}
    for row in rows:
        bound = row["certified_optimum"] - (row["gap"] or 0.0)
        time, objective = _curve(row)
        excess = (objective - bound) / abs(bound)
        keep = excess > 0
        ax.plot(time[keep], excess[keep], color=colors[row["model"]], label=_label(row))
    ax.set_xscale("log")
    ax.set_yscale("log")
    _major_labels_only(ax)
    ax.set_xlabel("measured training time (s), compilation excluded")
    ax.set_ylabel("(F - F*) / |F*|,  F* = certified lower bound")
    ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_metric(rows: Sequence[dict], path: str | Path) -> Path:
    """Seed-mean test metric per model, one panel per task: a dot with its std over seeds as
    an error bar and its value written beside it, on an axis zoomed to the values (so 0.01
    differences show). Writes a PNG at ``path``."""
    plt = _pyplot()
    grouped = groups(rows)
    tasks = list(dict.fromkeys(task for task, _ in grouped)) or [""]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        entries = [(model, rs) for (t, model), rs in grouped.items() if t == task]
        values = [
            [r["test_metric"] for r in rs if r["test_metric"] is not None] for _, rs in entries
        ]
        means = np.array([np.mean(v) if v else np.nan for v in values])
        spreads = np.array([np.std(v) if v else 0.0 for v in values])
        positions = np.arange(len(entries))
        for i, (mean, spread) in enumerate(zip(means, spreads, strict=True)):
            ax.errorbar(mean, i, xerr=spread, fmt="o", color=f"C{i % 10}", capsize=3)
            if np.isfinite(mean):
                ax.annotate(f"{mean:.4f}", (mean, i), xytext=(6, 6), textcoords="offset points")
        finite = means[np.isfinite(means)]
        if finite.size:
            low, high = np.min(finite - spreads[np.isfinite(means)]), np.max(finite)
            margin = max(0.15 * (high - low), 0.01)
            ax.set_xlim(low - margin, high + 3 * margin)
        ax.set_yticks(positions, [m for m, _ in entries])
        ax.set_ylim(-0.5, len(entries) - 0.5)
        ax.set_title(task)
        ax.set_xlabel(f"test {entries[0][1][0]['metric']}" if entries else "test metric")
    fig.tight_layout()
    return _save(fig, plt, path)


# ------------------------------------------------------------------ learning curves


def _mean_errors(curve: dict[str, Any]) -> dict[float, float]:
    """{size: mean error over the curve's points at that size} (seeds averaged)."""
    sizes, errors = np.asarray(curve["sizes"]), np.asarray(curve["errors"])
    return {float(x): float(errors[sizes == x].mean()) for x in np.unique(sizes)}


def _span(sizes: Sequence[float]) -> str:
    """'a' or 'a-b' for a sorted list of sizes."""
    low, high = f"{sizes[0]:g}", f"{sizes[-1]:g}"
    return low if low == high else f"{low}-{high}"


def _extrapolation_row(task: str, model: str, curve: dict[str, Any]) -> tuple[str, list[str]]:
    """A row of the extrapolation table for one curve, and a line per fit not made (why)."""
    names = learning_curves.ESTIMATORS
    if "error" in curve:
        row = f"| {task} | {model} | - | - |{' - |' * len(names)}"
        return row, [f"- {task} / {model}: {curve['error']}"]
    cells = [_fmt(curve[name].get("extrapolation_rms_log_error"), ".4f") for name in names]
    failures = [
        f"- {task} / {model} / {n}: {curve[n]['error']}" for n in names if "error" in curve[n]
    ]
    spans = f"{_span(curve['fit_sizes'])} | {_span(curve['held_out_sizes'])}"
    return f"| {task} | {model} | {spans} | {' | '.join(cells)} |", failures


def scaling_tables(curves: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Two Markdown tables of learning curves {task: {model: ``learning_curves.fit_curve``}}:
    the mean test error per training-set size N, and per estimator the RMS log error of its
    extrapolation at the held-out sizes; then why any fit was not made."""
    pairs = [(task, model, curve) for task, row in curves.items() for model, curve in row.items()]
    sizes = sorted({x for _, _, curve in pairs for x in curve["sizes"]})
    names = learning_curves.ESTIMATORS
    lines = [
        "Test error (1 - test metric) by training-set size N, mean over seeds:",
        "",
        f"| task | model | {' | '.join(f'N={x:g}' for x in sizes)} |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for task, model, curve in pairs:
        means = _mean_errors(curve)
        lines.append(
            f"| {task} | {model} | {' | '.join(_fmt(means.get(x), '.4f') for x in sizes)} |"
        )
    lines += [
        "",
        "Scaling-law extrapolation (arXiv 2209.06640): each law fitted on the smaller sizes; the "
        "RMS log error of its predicted test error at the held-out larger sizes:",
        "",
        f"| task | model | fitted on N | held out N | {' | '.join(names)} |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    failures = []
    for task, model, curve in pairs:
        line, failed = _extrapolation_row(task, model, curve)
        lines.append(line)
        failures += failed
    if failures:
        lines += ["", "Fits not made:", "", *failures]
    return "\n".join(lines) + "\n"


def plot_scaling(curves: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Test error vs training-set size (log-log), one panel per model of ``curves`` ({model:
    ``learning_curves.fit_curve``}): the measured points (fitted: filled, held out: open), every
    estimator's law fitted on the filled ones (its extrapolation error in the legend), and a
    dashed line at the largest fitted size. Writes a PNG at ``path``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for ax, (model, curve) in zip(axes[0], curves.items(), strict=True):
        held = set(curve.get("held_out_sizes", []))
        for x, e in zip(curve["sizes"], curve["errors"], strict=True):
            ax.plot(x, e, "o", color="k", mfc="none" if x in held else "k")
        if "fit_sizes" in curve:
            grid = np.geomspace(min(curve["sizes"]) / 1.5, max(curve["sizes"]) * 2, 200)
            for i, name in enumerate(learning_curves.ESTIMATORS):
                entry = curve[name]
                if "params" not in entry:
                    continue
                predicted = scaling.predict(name, entry["params"], grid, curve["e0"])
                label = f"{name} (extrap. {entry['extrapolation_rms_log_error']:.3f})"
                ax.plot(grid, predicted, color=f"C{i}", label=label)
            ax.axvline(max(curve["fit_sizes"]), color="gray", lw=0.5, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training samples N")
        ax.set_ylabel("test error")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, plt, path)
