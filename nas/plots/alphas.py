"""Architecture-weight plots from `alphas.csv`: how the search made up its mind, cell by cell.

Four kinds of figure:
- one per skip cell: a panel for SSB, CSB and every node group, each (input, op) weight over
  training (x = fractional epoch), colour = op (fixed across figures), line style = input,
  and the β-decay λ (from `metrics.csv`, when there) on a secondary axis;
- an overview heatmap of the final node weights (cells × ops);
- the parameter-free share per cell over time, the usual symptom of DARTS collapse;
- the search signal per epoch (from `metrics.csv`, see :mod:`nas.search_signal`): how far α
  moved, how far the nodes are from uniform, and how much of the genotype the initial α decide.

Everything is derived from the long-format CSV alone, so any number of cells, nodes or ops
(including user-registered ones) works, as does a run that is still writing the file.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nas.errors import UserError
from nas.plots.common import (PARAMETER_FREE_OPS, cell_sort_key, check_format, input_linestyle, new_figure,
                              node_index, op_color, panel_axes, plots_dir, read_csv_rows, save_figure, sort_ops,
                              to_float)

ALPHA_COLUMNS = ("epoch", "step", "cell", "group", "input", "op", "alpha", "weight")
BLOCK_GROUPS = ("ssb", "csb")
KINDS = ("weights", "raw")


@dataclass
class Series:
    """One (input, op) trajectory of a group."""

    x: list[float] = field(default_factory=list)
    alpha: list[float] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)

    def values(self, kind: str) -> list[float]:
        return self.weight if kind == "weights" else self.alpha


# cell -> group -> (input, op) -> Series
AlphaLog = dict[str, dict[str, dict[tuple[str, str], Series]]]


def _complete_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Drop the last logged step if a running search had written only part of it.

    Every logged step writes the same number of rows, so a last step with fewer rows than the
    others is a write in progress; keeping it would make sums over a node's inputs wrong.
    """
    per_step: dict[str, int] = defaultdict(int)
    for r in rows:
        per_step[r["step"]] += 1
    if len(per_step) < 2:
        return rows
    last = rows[-1]["step"]
    if per_step[last] >= max(per_step.values()):
        return rows
    return [r for r in rows if r["step"] != last]


def read_alphas(run_dir: Path) -> AlphaLog:
    """Parse `run_dir/alphas.csv` into per-cell, per-group trajectories."""
    path = Path(run_dir) / "alphas.csv"
    rows = read_csv_rows(path, "architecture weights written by `nas search`", ALPHA_COLUMNS)
    log: AlphaLog = defaultdict(lambda: defaultdict(dict))
    for r in _complete_rows(rows):
        key = (r["input"], r["op"])
        series = log[r["cell"]][r["group"]].get(key)
        if series is None:
            series = log[r["cell"]][r["group"]][key] = Series()
        series.x.append(to_float(r["epoch"]))
        series.alpha.append(to_float(r["alpha"]))
        series.weight.append(to_float(r["weight"]))
    if not log:
        raise UserError(f"{path}: no rows yet (the search logs α every log.alpha_every steps)")
    return {c: dict(g) for c, g in log.items()}


def alpha_panels(cell_rows: Iterable[Mapping[str, str]] | Iterable[str]) -> list[str]:
    """Panel names of one cell's figure: `ssb`, `csb` (when logged), then `node1`..`nodeN`.

    Accepts the cell's alphas.csv rows (dicts with a `group` key) or plain group names, so the
    layout can be checked without drawing anything.
    """
    groups = {r if isinstance(r, str) else r["group"] for r in cell_rows}
    blocks = [g for g in BLOCK_GROUPS if g in groups]
    nodes = sorted(groups - set(BLOCK_GROUPS), key=lambda g: (node_index(g), g))
    return blocks + nodes


def _selected_cells(log: AlphaLog, cells: Optional[Sequence[str]], run_dir: Path) -> list[str]:
    known = sorted(log, key=cell_sort_key)
    if not cells:
        return known
    unknown = [c for c in cells if c not in log]
    if unknown:
        raise UserError(f"{Path(run_dir) / 'alphas.csv'}: no cell {', '.join(unknown)} "
                        f"(cells: {', '.join(known)})")
    return list(dict.fromkeys(cells))


def read_lambda(run_dir: Path) -> dict[int, float]:
    """β-decay λ per epoch from metrics.csv; empty when the file or the column is not there."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    lam: dict[int, float] = {}
    for r in read_csv_rows(path, "training log"):
        value, epoch = to_float(r.get("beta_lambda")), to_float(r.get("epoch"))
        if not math.isnan(value) and not math.isnan(epoch):
            lam[int(epoch)] = value
    return lam


def _draw_lambda(ax, lam: dict[int, float]) -> None:
    """λ as a step function over [epoch-1, epoch] on a twin axis (it changes once per epoch)."""
    if not lam:
        return
    epochs = sorted(lam)
    edges = [e - 1 for e in epochs] + [epochs[-1]]
    values = [lam[e] for e in epochs] + [lam[epochs[-1]]]
    twin = ax.twinx()
    twin.step(edges, values, where="post", color="0.45", linewidth=1.0, alpha=0.6, linestyle=(0, (2, 2)))
    twin.set_ylabel("λ (β-decay)", color="0.45", fontsize=8)
    twin.tick_params(axis="y", labelcolor="0.45", labelsize=7)


def _legend_handles(ops: list[str], inputs: list[str]) -> list[Line2D]:
    handles = [Line2D([], [], color=op_color(op), linewidth=2, label=op) for op in ops]
    handles += [Line2D([], [], color="0.2", linestyle=input_linestyle(node_index(i)), label=f"from {i}")
                for i in inputs]
    return handles


def build_cell_figure(cell: str, groups: dict[str, dict[tuple[str, str], Series]], kind: str,
                      lam: dict[int, float]) -> Figure:
    """One skip cell: a panel per group (see `alpha_panels`), shared legend on the right."""
    names = alpha_panels(groups)
    fig = new_figure(4.2 * min(3, len(names)) + 2.2, 3.0 * math.ceil(len(names) / 3))
    ylabel = "weight (after softmax/sigmoid)" if kind == "weights" else "α (raw)"
    all_ops, all_inputs = set(), set()
    for ax, group in zip(panel_axes(fig, names, max_cols=3), names):
        block = group in BLOCK_GROUPS
        for (inp, op), s in sorted(groups[group].items(), key=lambda kv: (node_index(kv[0][0]), kv[0][1])):
            if block:  # SSB/CSB weigh nodes, not ops: colour by node instead
                color, style, label = f"C{node_index(inp) % 10}", "-", inp
            else:
                color, style, label = op_color(op), input_linestyle(node_index(inp)), None
                all_ops.add(op)
                all_inputs.add(inp)
            ax.plot(s.x, s.values(kind), color=color, linestyle=style, linewidth=1.2, label=label,
                    marker="o" if len(s.x) == 1 else None, markersize=3)
        title = {"ssb": "SSB (sum block)", "csb": "CSB (concat block)"}.get(group, group)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if block:
            ax.legend(fontsize=7, title="node", title_fontsize=7)
        _draw_lambda(ax, lam)
    fig.suptitle(f"{cell}: architecture {'weights' if kind == 'weights' else 'parameters (raw α)'}")
    if all_ops:
        inputs = sorted(all_inputs, key=node_index)
        fig.legend(handles=_legend_handles(sort_ops(all_ops), inputs), loc="outside right upper", fontsize=8)
    return fig


# ----------------------------------------------------------------------------- aggregates
def _node_groups(groups: dict[str, dict[tuple[str, str], Series]]) -> list[str]:
    return [g for g in alpha_panels(groups) if g not in BLOCK_GROUPS]


def op_share_over_time(groups: dict[str, dict[tuple[str, str], Series]]) -> tuple[list[float], dict[str, list[float]]]:
    """Per logged point: each op's weight summed over a node's inputs, averaged over nodes.

    Returns (x, {op: values}). Node-level softmax makes each node's weights sum to 1, so the ops'
    values at one x also sum to 1 and can be read as shares.
    """
    nodes = _node_groups(groups)
    if not nodes:
        return [], {}
    x = next(iter(groups[nodes[0]].values())).x
    n = min(len(s.x) for g in nodes for s in groups[g].values())
    shares: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
    for g in nodes:
        for (_, op), s in groups[g].items():
            values = shares[op]
            for i in range(n):
                values[i] += s.weight[i] / len(nodes)
    return x[:n], dict(shares)


def overview_matrices(log: AlphaLog, cells: list[str]) -> tuple[list[str], list[list[float]], list[list[float]]]:
    """(ops, final shares, % change vs uniform) with rows = cells, NaN where a cell lacks an op.

    Under uniform α every op's share of a cell is 1/n_ops (node-level softmax), so
    ``100 * (share * n_ops - 1)`` says how far the search has moved from where it started; it
    stays readable when the shares themselves all still round to 1/n_ops.
    """
    finals = {c: {op: v[-1] for op, v in op_share_over_time(log[c])[1].items() if v} for c in cells}
    ops = sort_ops({op for f in finals.values() for op in f})
    shares = [[finals[c].get(op, math.nan) for op in ops] for c in cells]
    change = [[100.0 * (v * len(finals[c]) - 1.0) for v in row] for c, row in zip(cells, shares)]
    return ops, shares, change


def _heatmap(fig: Figure, ax, matrix: list[list[float]], ops: list[str], cells: list[str], *, cmap: str,
             vmin: float, vmax: float, fmt: str, label: str) -> None:
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(cells)), cells, fontsize=8)
    if len(cells) * len(ops) <= 400:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    dark = image.cmap(image.norm(v))[:3]
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                            color="white" if sum(dark) < 1.2 else "black")
    fig.colorbar(image, ax=ax, label=label)


def build_overview_figure(log: AlphaLog, cells: list[str]) -> Figure:
    """Heatmaps of the final op shares (rows = cells, columns = ops) and of their change vs uniform α."""
    ops, shares, change = overview_matrices(log, cells)
    fig = new_figure(2 * (1.0 + 0.75 * max(len(ops), 1) + 1.5), 1.6 + 0.38 * len(cells))
    ax_share, ax_change = panel_axes(fig, ["final weight", "change vs uniform"], max_cols=2)
    ax_share.set_title("Final weight per op (summed over a node's inputs, mean over the cell's nodes)",
                       fontsize=9, wrap=True)
    ax_change.set_title("Change vs uniform α (%): where the search has moved", fontsize=9, wrap=True)
    if not ops:
        for ax in (ax_share, ax_change):
            ax.text(0.5, 0.5, "no node weights logged", ha="center", va="center", transform=ax.transAxes)
        return fig
    values = [v for row in shares for v in row if not math.isnan(v)]
    _heatmap(fig, ax_share, shares, ops, cells, cmap="viridis", vmin=0.0, vmax=max(values, default=1.0) or 1.0,
             fmt="{:.2f}", label="weight")
    spread = max((abs(v) for row in change for v in row if not math.isnan(v)), default=0.0) or 1.0
    _heatmap(fig, ax_change, change, ops, cells, cmap="RdBu_r", vmin=-spread, vmax=spread,
             fmt="{:+.2g}", label="% vs uniform")
    return fig


def build_parameter_free_figure(log: AlphaLog, cells: list[str]) -> Figure:
    """Per cell, stacked weight of zero/identity/pools over time: a rising stack = collapse."""
    fig = new_figure(3.2 * min(4, len(cells)) + 2.0, 2.4 * math.ceil(len(cells) / 4) + 0.6)
    for ax, cell in zip(panel_axes(fig, cells, max_cols=4), cells):
        x, shares = op_share_over_time(log[cell])
        ops = [op for op in PARAMETER_FREE_OPS if op in shares]
        if x and ops:
            ax.stackplot(x, [shares[op] for op in ops], colors=[op_color(op) for op in ops], alpha=0.85)
            # the share if α were uniform: above it the cell is drifting towards parameter-free ops
            ax.axhline(len(ops) / len(shares), color="0.3", linestyle=":", linewidth=1.0)
        else:
            ax.text(0.5, 0.5, "no node weights", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(cell, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=op_color(op), linewidth=6, label=op) for op in PARAMETER_FREE_OPS]
    handles.append(Line2D([], [], color="0.3", linestyle=":", label="uniform α"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle("Parameter-free share per cell (weight on zero/identity/pools, mean over nodes) vs epoch")
    return fig


SIGNAL_PANELS = (
    ("alpha_move_ratio", "α moved / initial spread", "log"),
    ("top_gain", "strongest pair over equal share (median node)", "linear"),
    ("init_agreement", "kept pairs the initial α would keep", "linear"),
)


def read_signal(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Per signal column, (epoch, value) of the epoch rows of metrics.csv; empty for runs
    written before the signal was logged."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    out: dict[str, list[tuple[float, float]]] = {}
    for r in read_csv_rows(path, "training log"):
        if r.get("phase") != "train":
            continue
        for key, _, _ in SIGNAL_PANELS:
            value = to_float(r.get(key))
            if not math.isnan(value):
                out.setdefault(key, []).append((to_float(r["epoch"]), value))
    return out


def build_signal_figure(signal: dict[str, list[tuple[float, float]]], lam: dict[int, float]) -> Figure:
    """Three panels over epochs: α movement, distance from uniform, agreement with the initial α."""
    from nas.search_signal import INIT_DECIDED, WEAK_MOVE

    fig = new_figure(11.0, 3.2)
    axes = panel_axes(fig, [title for _, title, _ in SIGNAL_PANELS], max_cols=3)
    for ax, (key, title, scale) in zip(axes, SIGNAL_PANELS):
        points = signal.get(key, [])
        if points:
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", color="C0")
            if scale == "log" and all(v > 0 for _, v in points):
                ax.set_yscale("log")
        if key == "top_gain":
            ax.axhline(WEAK_MOVE, color="0.4", linestyle=":", linewidth=1.0, label=f"{WEAK_MOVE:.0%}: weak")
            ax.yaxis.set_major_formatter(lambda v, _: f"{v:.1%}")
            _draw_lambda(ax, lam)
        if key == "init_agreement":
            ax.axhline(INIT_DECIDED, color="C3", linestyle=":", linewidth=1.0,
                       label="above: decided by the initialisation")
            ax.set_ylim(0, 1.02)
        if key == "alpha_move_ratio":
            ax.axhline(1.0, color="0.4", linestyle=":", linewidth=1.0, label="as far as the initial spread")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Search signal per epoch (nas.search_signal): did the search move α, and decide the genotype?")
    return fig


def plot_alphas(run_dir: str | Path, cells: Optional[Sequence[str]] = None, kind: str = "weights",
                fmt: str = "png", out_dir: Optional[str | Path] = None) -> list[Path]:
    """Write the per-cell figures, the overview heatmap, the parameter-free share figure and,
    for runs that logged it, the search-signal figure.

    `kind="raw"` plots raw α in the per-cell figures; the overview and the parameter-free share
    always use weights (sums of raw α are meaningless). `cells` restricts every figure to those
    cells. Returns the written files.
    """
    if kind not in KINDS:
        raise UserError(f"plot alphas: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    check_format(fmt)
    run_dir = Path(run_dir)
    log = read_alphas(run_dir)
    selected = _selected_cells(log, cells, run_dir)
    lam = read_lambda(run_dir)
    out = plots_dir(run_dir, out_dir)
    prefix = "alphas" if kind == "weights" else "alphas_raw"
    written = [save_figure(build_cell_figure(c, log[c], kind, lam), out / f"{prefix}_{c}.{fmt}") for c in selected]
    written.append(save_figure(build_overview_figure(log, selected), out / f"alphas_overview.{fmt}"))
    written.append(save_figure(build_parameter_free_figure(log, selected), out / f"alphas_parameter_free.{fmt}"))
    signal = read_signal(run_dir)
    if signal:
        written.append(save_figure(build_signal_figure(signal, lam), out / f"alphas_signal.{fmt}"))
    return written
