"""Chart of the ranking section: stand-alone Dice against log10(parameters).

Searched genotypes, random genotypes and hand-designed baselines are marked differently, with the
least-squares line over the random genotypes, so the reader sees whether a searched genotype is
above the size trend of chance or only larger (Yang et al., ICLR 2020).
"""

from __future__ import annotations

import math
from pathlib import Path

from nas.plots.common import new_figure, save_figure
from nas.ranking import Ranking
from nas.stats import size_trend

MARKERS = {"searched": ("*", "C3", 140), "random": ("o", "C0", 36), "baseline": ("s", "C7", 44)}


def size_chart(ranking: Ranking, path: Path) -> Path:
    """Mean stand-alone Dice (over seeds) vs log10(params) per genotype; random trend line."""
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    points = {kind: ([], [], []) for kind in MARKERS}
    for g in ranking.genotypes:
        if g.params and g.params > 0:
            xs, ys, labels = points[g.kind]
            xs.append(math.log10(g.params))
            ys.append(g.dice_mean)
            labels.append(g.label if g.kind == "searched" else "")
    for label, params, dice in ranking.baselines:
        if params > 0:
            xs, ys, labels = points["baseline"]
            xs.append(math.log10(params))
            ys.append(dice)
            labels.append(label)
    for kind, (xs, ys, labels) in points.items():
        if not xs:
            continue
        marker, color, size = MARKERS[kind]
        ax.scatter(xs, ys, marker=marker, color=color, s=size, label=kind, zorder=3)
        for x, y, text in zip(xs, ys, labels):
            if text:
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    rx, ry, _ = points["random"]
    trend = size_trend(rx, ry)
    if trend is not None:
        slope, intercept = trend
        lo, hi = min(rx), max(rx)
        ax.plot([lo, hi], [intercept + slope * lo, intercept + slope * hi], color="C0", lw=1, ls="--",
                label=f"random trend ({slope:+.3f} per decade)")
    if ax.has_data():
        ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel("log10(parameters)")
    ax.set_ylabel(f"stand-alone Dice ({ranking.dataset}, mean over seeds)")
    ax.grid(alpha=0.3)
    ax.set_title("Dice vs model size: searched above the random trend?", fontsize=10)
    return save_figure(fig, path)
