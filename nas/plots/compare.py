"""Charts for `nas compare`: quality vs parameter count, per-metric bars with std error bars, and
per-image model vs reference scatter plots.

They take the already-grouped `CompareTable` / paired `Contrast`s so the charts and the tables
always show the same numbers. One colour per model, the same in every panel.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter

from nas.comparison import METRIC_HEADERS, METRICS, CompareTable, Contrast
from nas.plots.common import new_figure, panel_axes, save_figure
from nas.stats import format_p

SCATTER_METRICS = ("dice", "jaccard")
BAR_METRICS = METRICS


def _columns(table: CompareTable) -> dict:
    return {c.key: c for c in table.columns}


def scatter_chart(table: CompareTable, path: Path) -> Path:
    """Dice and Jaccard (mean, std error bars) vs parameters (M, log scale), points labelled."""
    cols = _columns(table)
    fig = new_figure(5.2 * len(SCATTER_METRICS), 4.2)
    for ax, key in zip(panel_axes(fig, list(SCATTER_METRICS), max_cols=len(SCATTER_METRICS)), SCATTER_METRICS):
        positive = True
        for i, row in enumerate(table.rows):
            params, metric = row.stats.get("params"), row.stats.get(key)
            if params is None or metric is None:
                continue
            x = params.mean / 1e6
            positive &= x > 0
            ax.errorbar(x, metric.mean, yerr=metric.std or 0.0, fmt="o", color=f"C{i % 10}", capsize=3)
            ax.annotate(row.label, (x, metric.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if positive and ax.has_data():
            ax.set_xscale("log")  # model sizes span orders of magnitude (0.1 M to 30 M)
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel(f"test {cols[key].header}")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(f"{cols[key].header} vs model size", fontsize=10)
    return save_figure(fig, path)


def bar_chart(table: CompareTable, path: Path) -> Path:
    """One panel per test metric, one bar per model with its std across seeds."""
    cols = _columns(table)
    labels = [row.label for row in table.rows]
    fig = new_figure(max(9.0, 1.1 * len(labels) * 3), 6.4)
    for ax, key in zip(panel_axes(fig, list(BAR_METRICS), max_cols=3), BAR_METRICS):
        means = [row.stats[key].mean if row.stats.get(key) else 0.0 for row in table.rows]
        stds = [(row.stats[key].std or 0.0) if row.stats.get(key) else 0.0 for row in table.rows]
        bars = ax.bar(range(len(labels)), means, yerr=stds, capsize=3,
                      color=[f"C{i % 10}" for i in range(len(labels))])
        # the axis starts at 0 (no truncated bars); the printed means show differences instead
        ax.bar_label(bars, labels=[f"{m:.3f}" if m else "" for m in means], fontsize=7, padding=2)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"test {cols[key].header}", fontsize=10)
        ax.set_ylim(0.0, 1.12)
        ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def per_image_chart(contrasts: list[Contrast], path: Path, metric: str = "dice", title: str = "") -> Path:
    """One panel per model: its per-image `metric` (y) against the reference's (x) on the same
    images (means over the paired seeds). Points above the diagonal are images the model does
    better; the panel title gives the paired statistics."""
    header = METRIC_HEADERS.get(metric, metric)
    names = [c.model for c in contrasts]
    cols = min(3, max(1, len(names)))
    fig = new_figure(3.6 * cols, 3.5 * ((len(names) + cols - 1) // cols) + 0.4)
    for i, (ax, c) in enumerate(zip(panel_axes(fig, names, max_cols=cols), contrasts)):
        d = c.diffs[metric]
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--")
        ax.scatter(d.reference_values, d.model_values, s=14, color=f"C{i % 10}", alpha=0.8, edgecolors="none")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{c.reference} {header}", fontsize=8)
        ax.set_ylabel(f"{c.model} {header}", fontsize=8)
        ax.set_title(f"{c.model}: Δ {d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]\n"
                     f"p {format_p(d.p)}, {d.n_images} images", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
