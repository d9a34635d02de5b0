"""Genotype drawings with matplotlib only (no graphviz): the kept cells, and the whole U-Net.

- `genotype_cells`: each kept skip cell as a small graph: nodes on a line at fixed positions,
  kept edges as arrows coloured by op and labelled with the op (short name) and its weight,
  and the SSB/CSB sinks with the weights of the nodes they keep.
- `genotype_network`: encoder levels on the left, decoder levels on the right, every kept
  encoder→decoder skip as a line coloured by its strongest op and annotated with its op mix.
Fixed positions keep two genotypes visually comparable side by side.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Optional

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from nas.plots.common import (cell_sort_key, check_format, new_figure, op_color, op_short, panel_axes, plots_dir,
                              require_file, save_figure, sort_ops)

_CELL_NAME = re.compile(r"^skip_(\d+)_(\d+)$")


# ----------------------------------------------------------------------------- reading
def load_genotype_dict(path: str | Path) -> dict[str, Any]:
    """The genotype as a plain dict in the file format of docs/internals.md, validated by
    `nas.genotype.load_genotype` (errors name the file, the cell and the field)."""
    from nas.genotype import load_genotype

    require_file(Path(path), "genotype file written by `nas discretize`")
    return load_genotype(path).to_dict()


def _edges(cell: dict[str, Any]) -> list[dict[str, Any]]:
    return list(cell.get("edges") or [])


def _block(cell: dict[str, Any], name: str) -> tuple[list[int], list[float]]:
    block = cell.get(name) or {}
    nodes = [int(n) for n in (block.get("nodes") or [])]
    weights = [float(w) for w in (block.get("weights") or [])]
    return nodes, weights + [math.nan] * (len(nodes) - len(weights))


def kept_cells(genotype: dict[str, Any]) -> list[str]:
    """Cells that still carry something: an edge or a node in SSB/CSB (an `absent` cell, written
    as a plain word instead of a mapping, carries nothing)."""
    cells = genotype.get("cells") or {}
    kept = [name for name, c in cells.items()
            if isinstance(c, dict) and (_edges(c) or _block(c, "ssb")[0] or _block(c, "csb")[0])]
    return sorted(kept, key=cell_sort_key)


def _node_count(genotype: dict[str, Any], cell: dict[str, Any]) -> int:
    used = [int(e["to"]) for e in _edges(cell)] + _block(cell, "ssb")[0] + _block(cell, "csb")[0]
    return max([int((genotype.get("backbone") or {}).get("nodes") or 0), *used, 1])


def op_mix(cell: dict[str, Any]) -> str:
    """`sep3×2 dil5 id`: the cell's ops with their counts, strongest first."""
    weight: dict[str, float] = defaultdict(float)
    count: Counter = Counter()
    for e in _edges(cell):
        weight[e["op"]] += float(e.get("weight") or 0.0)
        count[e["op"]] += 1
    ordered = sorted(count, key=lambda op: (-weight[op], -count[op], op))
    return " ".join(op_short(op) + (f"×{count[op]}" if count[op] > 1 else "") for op in ordered)


def _dominant_op(cell: dict[str, Any]) -> Optional[str]:
    weight: dict[str, float] = defaultdict(float)
    for e in _edges(cell):
        weight[e["op"]] += float(e.get("weight") or 0.0) or 1e-9
    return max(weight, key=weight.get) if weight else None


# ----------------------------------------------------------------------------- cell graphs
def _arc_label_point(p0: tuple[float, float], p1: tuple[float, float], rad: float) -> tuple[float, float]:
    """Midpoint of matplotlib's `arc3` curve (a quadratic Bézier; needs an equal-aspect axes)."""
    mx, my = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    return mx + 0.5 * rad * dy, my - 0.5 * rad * dx


def _draw_nodes(ax, pos: dict[int, tuple[float, float]], used: set[int]) -> dict[int, Circle]:
    circles = {}
    for i, (x, y) in pos.items():
        alive = i in used
        circles[i] = Circle((x, y), 0.32, facecolor="#dbe9f6" if alive else "white",
                            edgecolor="0.2" if alive else "0.75", linewidth=1.0, zorder=3)
        ax.add_patch(circles[i])
        ax.text(x, y, f"n{i}", ha="center", va="center", fontsize=7, zorder=4, color="black" if alive else "0.7")
    return circles


def _draw_edges(ax, cell: dict[str, Any], pos: dict[int, tuple[float, float]], circles: dict[int, Circle]) -> None:
    """Parallel edges (two ops on the same pair) fan out as arcs; long jumps arc above the line."""
    pairs: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in _edges(cell):
        pairs[(int(e["from"]), int(e["to"]))].append(e)
    for (src, dst), edges in pairs.items():
        if src not in pos or dst not in pos:
            continue
        base = 0.0 if dst - src == 1 else -0.35 - 0.05 * (dst - src)
        for k, e in enumerate(sorted(edges, key=lambda e: -float(e.get("weight") or 0))):
            rad = base + 0.28 * (k - (len(edges) - 1) / 2)
            color = op_color(e["op"])
            ax.add_patch(FancyArrowPatch(pos[src], pos[dst], connectionstyle=f"arc3,rad={rad}",
                                         patchA=circles[src], patchB=circles[dst], shrinkA=1, shrinkB=1,
                                         arrowstyle="-|>", mutation_scale=9, color=color, linewidth=1.3, zorder=2))
            lx, ly = _arc_label_point(pos[src], pos[dst], rad)
            weight = e.get("weight")
            text = op_short(e["op"]) + (f" {float(weight):.2f}" if weight is not None else "")
            ax.text(lx, ly, text, fontsize=6, ha="center", va="center", color=color, zorder=5,
                    bbox=dict(boxstyle="round,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8))


def _draw_blocks(ax, cell: dict[str, Any], sinks: dict[str, tuple[float, float]],
                 pos: dict[int, tuple[float, float]], circles: dict[int, Circle]) -> None:
    for block, (sx, sy) in sinks.items():
        nodes, weights = _block(cell, block)
        box = FancyBboxPatch((sx - 0.45, sy - 0.3), 0.9, 0.6, boxstyle="round,pad=0.05", zorder=3,
                             facecolor="#eeeeee" if nodes else "white", edgecolor="0.3" if nodes else "0.75")
        ax.add_patch(box)
        ax.text(sx, sy, block.upper(), ha="center", va="center", fontsize=7, weight="bold", zorder=4,
                color="black" if nodes else "0.7")
        for node, w in zip(nodes, weights):
            if node not in pos:
                continue
            ax.add_patch(FancyArrowPatch(pos[node], (sx, sy), patchA=circles[node], patchB=box, shrinkA=1,
                                         shrinkB=1, arrowstyle="-|>", mutation_scale=7, color="0.5",
                                         linewidth=0.8, linestyle="--", zorder=2))
            if not math.isnan(w):
                lx, ly = (pos[node][0] + sx) / 2, (pos[node][1] + sy) / 2
                ax.text(lx, ly, f"{w:.2f}", fontsize=5.5, color="0.35", ha="center", va="center", zorder=5,
                        bbox=dict(boxstyle="round,pad=0.05", facecolor="white", edgecolor="none", alpha=0.8))


def draw_cell(ax, name: str, cell: dict[str, Any], n_nodes: int) -> None:
    """Nodes n0..nN on a horizontal line at fixed positions; SSB above-right, CSB below-right.
    Nodes that no longer feed anything are drawn faint."""
    pos = {i: (float(i) * 1.6, 0.0) for i in range(n_nodes + 1)}
    sinks = {"ssb": (n_nodes * 1.6 + 1.8, 1.1), "csb": (n_nodes * 1.6 + 1.8, -1.1)}
    used = ({0} | {int(e["to"]) for e in _edges(cell)} | {int(e["from"]) for e in _edges(cell)}
            | set(_block(cell, "ssb")[0]) | set(_block(cell, "csb")[0]))
    circles = _draw_nodes(ax, pos, used)
    _draw_edges(ax, cell, pos, circles)
    _draw_blocks(ax, cell, sinks, pos, circles)
    ax.set_xlim(-0.7, n_nodes * 1.6 + 2.5)
    ax.set_ylim(-1.9, 1.9)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(name, fontsize=9)


def _op_legend(fig: Figure, ops: list[str]) -> None:
    handles = [Line2D([], [], color=op_color(op), linewidth=2, label=f"{op_short(op)} = {op}") for op in ops]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(5, len(handles)), fontsize=7)


def build_cells_figure(genotype: dict[str, Any], title: str) -> Figure:
    cells = kept_cells(genotype)
    names = cells or ["(no kept cell)"]
    max_nodes = max((_node_count(genotype, genotype["cells"][c]) for c in cells), default=3)
    cols = min(4, len(names))
    fig = new_figure(max(4.0, (max_nodes * 1.6 + 3.2) * 0.8 * cols), 2.6 * math.ceil(len(names) / 4) + 1.2)
    for ax, name in zip(panel_axes(fig, names, max_cols=4), names):
        if name in cells:
            cell = genotype["cells"][name]
            draw_cell(ax, name, cell, _node_count(genotype, cell))
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, "every cell was dropped", ha="center", va="center", transform=ax.transAxes)
    ops = sort_ops({e["op"] for c in cells for e in _edges(genotype["cells"][c])})
    _op_legend(fig, ops)
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- network view
def build_network_figure(genotype: dict[str, Any], title: str) -> Figure:
    """Encoder (left, level 1 on top) → bottleneck → decoder (right); kept skips as lines."""
    backbone = genotype.get("backbone") or {}
    widths = list(backbone.get("widths") or [])
    kept = set(kept_cells(genotype))
    cells = {name: c for name, c in (genotype.get("cells") or {}).items() if name in kept}
    levels = [(int(m.group(1)), int(m.group(2)), name) for name in cells if (m := _CELL_NAME.match(name))]
    depth = max([len(widths), *(max(e, d) + 1 for e, d, _ in levels), 2])
    fig = new_figure(10.0, 1.3 * depth + 1.6)
    (ax,) = panel_axes(fig, ["network"], max_cols=1)
    ex, dx = 0.0, 8.0

    def box(x: float, level: int, label: str) -> None:
        ax.add_patch(FancyBboxPatch((x - 0.7, -level - 0.28), 1.4, 0.56, boxstyle="round,pad=0.04",
                                    facecolor="#f2f2f2", edgecolor="0.3", zorder=3))
        ax.text(x, -level, label, ha="center", va="center", fontsize=8, zorder=4)

    def width(level: int) -> str:
        return f" ({widths[level - 1]})" if level - 1 < len(widths) else ""

    bottom = depth
    for lv in range(1, bottom):
        box(ex, lv, f"enc {lv}{width(lv)}")
        box(dx, lv, f"dec {lv}")
        if lv < bottom - 1:
            ax.annotate("", (ex, -lv - 1 + 0.3), (ex, -lv - 0.3), arrowprops=dict(arrowstyle="-|>", color="0.4"))
        src = (dx, -lv - 1 + 0.3) if lv < bottom - 1 else ((ex + dx) / 2 + 0.7, -bottom)
        ax.annotate("", (dx, -lv - 0.3), src, arrowprops=dict(arrowstyle="-|>", color="0.4"))
    box((ex + dx) / 2, bottom, f"bottleneck {bottom}{width(bottom)}")
    ax.annotate("", ((ex + dx) / 2 - 0.7, -bottom), (ex + 0.35, -bottom + 1 - 0.3),
                arrowprops=dict(arrowstyle="-|>", color="0.4"))
    for i, (enc, dec, name) in enumerate(sorted(levels)):
        op = _dominant_op(cells[name])
        color = op_color(op) if op else "0.5"
        p0, p1 = (ex + 0.7, -enc), (dx - 0.7, -dec)
        ax.plot([p0[0], p1[0]], [p0[1], p1[1]], color=color, linewidth=1.6, alpha=0.85, zorder=2)
        t = 0.3 + 0.4 * ((i * 0.618) % 1.0)  # spread labels along the lines so they overlap less
        ax.text(p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]), op_mix(cells[name]) or name,
                fontsize=6.5, ha="center", va="center", color=color, zorder=5,
                bbox=dict(boxstyle="round,pad=0.12", facecolor="white", edgecolor=color, alpha=0.9, linewidth=0.6))
    ax.set_xlim(-1.2, dx + 1.2)
    ax.set_ylim(-bottom - 0.8, -0.3)
    ax.axis("off")
    listed = genotype.get("cells") or {}
    absent = sorted((n for n, c in listed.items() if not isinstance(c, dict)), key=cell_sort_key)
    dropped = sorted(set(listed) - set(cells) - set(absent), key=cell_sort_key)
    subtitle = (f"{len(levels)} kept skip(s)" + (f"; dropped: {', '.join(dropped)}" if dropped else "")
                + (f"; absent: {', '.join(absent)}" if absent else ""))
    ax.set_title(subtitle, fontsize=8)
    _op_legend(fig, sort_ops({e["op"] for c in cells.values() for e in _edges(c)}))
    fig.suptitle(title)
    return fig


def plot_genotype(genotype_path: str | Path, out_dir: Optional[str | Path] = None, fmt: str = "png") -> list[Path]:
    """Write `genotype_cells.<fmt>` and `genotype_network.<fmt>`.

    `out_dir` defaults to a `plots/` folder next to the genotype file (the run folder's).
    """
    check_format(fmt)
    path = Path(genotype_path)
    genotype = load_genotype_dict(path)
    out = plots_dir(path.parent, out_dir)
    source = genotype.get("source") or {}
    what = f"{genotype.get('search_space', 'genotype')} ({path.name}" + \
           (f", policy {source['policy']} k={source.get('k')}" if source.get("policy") else "") + ")"
    return [save_figure(build_cells_figure(genotype, f"Kept cells: {what}"), out / f"genotype_cells.{fmt}"),
            save_figure(build_network_figure(genotype, f"Network: {what}"), out / f"genotype_network.{fmt}")]

