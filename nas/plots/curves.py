"""Training curves from `metrics.csv`: losses, Dice, Jaccard, accuracy, learning rates and λ.

Works for search and retrain runs alike (the columns are the same; search adds `arch_loss`,
`arch_lr` and `beta_lambda`), and for a run that has logged only a few steps: per-step rows are
placed at fractional epochs, so something is drawn before the first epoch ends.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from nas.plots.common import check_format, new_figure, panel_axes, plots_dir, read_csv_rows, save_figure, to_float

METRIC_PANELS = ("dice", "jaccard", "accuracy")
PHASE_STYLE = {"train": dict(color="C0", marker="o"), "val": dict(color="C1", marker="s"),
               "test": dict(color="C3", marker="*", markersize=10, linestyle="none")}

SCHEDULE_LABELS = {"lr": "weights (lr)", "arch_lr": "α (arch_lr)", "beta_lambda": "λ"}

Points = tuple[list[float], list[float]]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    return read_csv_rows(Path(run_dir) / "metrics.csv", "training log written by `nas search`/`nas retrain`",
                         ("epoch", "step", "phase"))


def _has(rows: list[dict[str, str]], column: str) -> bool:
    return any(not math.isnan(to_float(r.get(column))) for r in rows)


def curve_panels(rows: list[dict[str, str]]) -> list[str]:
    """Panel names for these metrics rows: loss, dice, jaccard, accuracy, lr, and λ when logged."""
    return ["loss", *METRIC_PANELS, "lr"] + (["lambda"] if _has(rows, "beta_lambda") else [])


def step_positions(rows: list[dict[str, str]]) -> dict[int, float]:
    """Global step -> fractional epoch at which the step started (so a schedule drawn with
    `steps-post` changes exactly at the epoch boundary).

    An epoch's length is its number of step rows once it has finished (a `train` row exists);
    for the epoch in progress the previous epoch's length is the best guess.
    """
    by_epoch: dict[int, list[int]] = defaultdict(list)
    finished = {int(to_float(r["epoch"])) for r in rows if r["phase"] == "train"}
    for r in rows:
        if r["phase"] == "step" and not math.isnan(to_float(r["step"])):
            by_epoch[int(to_float(r["epoch"]))].append(int(to_float(r["step"])))
    positions: dict[int, float] = {}
    previous_len = 0
    for epoch in sorted(by_epoch):
        steps = sorted(by_epoch[epoch])
        length = len(steps) if epoch in finished else max(len(steps), previous_len)
        positions.update({s: epoch - 1 + i / length for i, s in enumerate(steps)})
        previous_len = len(steps) if epoch in finished else previous_len
    return positions


def series(rows: list[dict[str, str]], column: str, phase: str, positions: Optional[dict[int, float]] = None) -> Points:
    """(x, y) of `column` over the rows of `phase`; x = epoch, or fractional epoch for steps."""
    xs, ys = [], []
    for r in rows:
        if r["phase"] != phase:
            continue
        y = to_float(r.get(column))
        if math.isnan(y):
            continue
        x = positions.get(int(to_float(r["step"]))) if phase == "step" and positions else to_float(r["epoch"])
        if x is None or math.isnan(x):
            continue
        xs.append(x)
        ys.append(y)
    return xs, ys


def _per_step_or_epoch(rows: list[dict[str, str]], column: str, positions: dict[int, float]) -> Points:
    """Schedules (lr, λ) are logged on step rows and train rows; prefer the finer one."""
    pts = series(rows, column, "step", positions)
    return pts if pts[0] else series(rows, column, "train")


def _no_data(ax, text: str = "no finished epoch yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")


def _draw_loss(ax, rows, positions) -> None:
    drawn = False
    for column, color, label in (("loss", "0.6", "train (per step)"), ("arch_loss", "C2", "α objective (per step)")):
        xs, ys = series(rows, column, "step", positions)
        if xs:
            ax.plot(xs, ys, color=color, linewidth=0.7, alpha=0.7, label=label)
            drawn = True
    for phase in ("train", "val", "test"):
        xs, ys = series(rows, "loss", phase)
        if xs:
            ax.plot(xs, ys, label=phase, **PHASE_STYLE[phase])
            drawn = True
    if not drawn:
        _no_data(ax, "no loss logged yet")


def _draw_metric(ax, rows, metric: str) -> None:
    drawn = False
    for phase in ("train", "val", "test"):
        xs, ys = series(rows, metric, phase)
        if xs:
            ax.plot(xs, ys, label=phase, **PHASE_STYLE[phase])
            drawn = True
    if not drawn:
        _no_data(ax)


def _draw_schedule(ax, rows, positions, columns: tuple[str, ...], log_scale: bool) -> None:
    drawn = []
    for i, column in enumerate(columns):
        xs, ys = _per_step_or_epoch(rows, column, positions)
        if xs:
            ax.plot(xs, ys, color=f"C{4 + i}", label=SCHEDULE_LABELS.get(column, column), drawstyle="steps-post")
            drawn.extend(ys)
    if not drawn:
        _no_data(ax, "not logged")
    elif log_scale and min(drawn) > 0 and max(drawn) / min(drawn) > 10:
        ax.set_yscale("log")  # only when the values span orders of magnitude (lr vs arch_lr)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def build_curves_figure(rows: list[dict[str, str]], title: str) -> Figure:
    names = curve_panels(rows)
    positions = step_positions(rows)
    fig = new_figure(13.0, 3.0 * math.ceil(len(names) / 3))
    labels = {"loss": "loss", "dice": "Dice", "jaccard": "Jaccard", "accuracy": "accuracy",
              "lr": "learning rate", "lambda": "λ (β-decay)"}
    for ax, name in zip(panel_axes(fig, names, max_cols=3), names):
        if name == "loss":
            _draw_loss(ax, rows, positions)
        elif name == "lr":
            _draw_schedule(ax, rows, positions, ("lr", "arch_lr"), log_scale=True)
        elif name == "lambda":
            _draw_schedule(ax, rows, positions, ("beta_lambda",), log_scale=False)
        else:
            _draw_metric(ax, rows, name)
        ax.set_title(labels[name], fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def plot_curves(run_dir: str | Path, out_dir: Optional[str | Path] = None, fmt: str = "png") -> list[Path]:
    """Write `curves.<fmt>` for a run folder; returns the written file in a list."""
    check_format(fmt)
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    name = f"{run_dir.parent.name}/{run_dir.name}" if run_dir.parent.name else run_dir.name
    fig = build_curves_figure(rows, f"Training curves: {name}")
    return [save_figure(fig, plots_dir(run_dir, out_dir) / f"curves.{fmt}")]
