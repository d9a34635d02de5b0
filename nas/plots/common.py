"""Shared plumbing for every plot: tolerant CSV reading, op colours, figure saving.

Plots read only run-folder files, and a run may still be writing them (a search appends to
`alphas.csv` while we read it) or may have been copied half-way. So the readers here skip a
truncated last line instead of failing, and a file that is missing altogether is a `UserError`
that names it.

Figures are built with `matplotlib.figure.Figure` directly (never pyplot): no global figure
registry to leak, no GUI backend, safe to call from a training process at the end of a run.
"""

from __future__ import annotations

import io
import math
import zlib
from colorsys import hsv_to_rgb
from pathlib import Path
from typing import Iterable, Optional

from matplotlib.figure import Figure

from nas.errors import UserError
from nas.runs import atomic_write_bytes
from nas.textfiles import read_csv

FORMATS = ("png", "svg", "pdf")

# The ten candidate operations of the search space, in the order the docs list them. Each gets a
# fixed colour so that "green = sep_conv_3x3" holds in every figure of every run.
KNOWN_OPS = ("zero", "identity", "max_pool_3x3", "avg_pool_3x3", "dil_conv_3x3", "dil_conv_5x5",
             "sep_conv_3x3", "sep_conv_5x5", "spatial_sep_conv_5x5", "spatial_sep_conv_7x7")
PARAMETER_FREE_OPS = ("zero", "identity", "max_pool_3x3", "avg_pool_3x3")
_OP_COLORS = {
    "zero": "#9e9e9e", "identity": "#000000", "max_pool_3x3": "#8c564b", "avg_pool_3x3": "#e377c2",
    "dil_conv_3x3": "#1f77b4", "dil_conv_5x5": "#17becf", "sep_conv_3x3": "#2ca02c",
    "sep_conv_5x5": "#bcbd22", "spatial_sep_conv_5x5": "#d62728", "spatial_sep_conv_7x7": "#ff7f0e",
}
_OP_SHORT = {
    "zero": "0", "identity": "id", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3",
    "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5", "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5",
    "spatial_sep_conv_5x5": "ssep5", "spatial_sep_conv_7x7": "ssep7",
}
_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)), (0, (3, 1, 3, 3))]


def op_color(op: str) -> str:
    """Fixed colour of an op; unknown (user-registered) ops get a colour derived from a CRC of the
    name, so it is the same in every process and every figure (Python's `hash` is salted)."""
    if op in _OP_COLORS:
        return _OP_COLORS[op]
    hue = (zlib.crc32(op.encode("utf-8")) % 360) / 360.0
    r, g, b = hsv_to_rgb(hue, 0.65, 0.80)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def op_short(op: str) -> str:
    """Short op name for cramped labels (network view); unknown ops keep their name."""
    return _OP_SHORT.get(op, op)


def sort_ops(ops: Iterable[str]) -> list[str]:
    """Known ops in their canonical order, then unknown ones alphabetically (stable legends)."""
    ops = set(ops)
    return [o for o in KNOWN_OPS if o in ops] + sorted(ops - set(KNOWN_OPS))


def input_linestyle(index: int):
    """Line style of the i-th input of a node (n0 solid, n1 dashed, ...)."""
    return _LINESTYLES[index % len(_LINESTYLES)]


def node_index(name: str) -> int:
    """`n3` / `node3` / `3` -> 3 (sorts inputs and node groups numerically, not as strings)."""
    digits = "".join(ch for ch in str(name) if ch.isdigit())
    return int(digits) if digits else 0


def cell_sort_key(cell: str) -> tuple:
    """`skip_2_10` after `skip_2_9`: numeric parts compare as numbers."""
    parts = cell.replace("-", "_").split("_")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


# ----------------------------------------------------------------------------- reading
def require_file(path: Path, what: str) -> Path:
    """The path if it is a file, else a one-line UserError naming it and what it should hold."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a file ({what})")
    if not path.is_file():
        raise UserError(f"{path}: not found ({what})")
    return path


def read_csv_rows(path: Path, what: str, required: Iterable[str] = ()) -> list[dict[str, str]]:
    """All complete rows of a CSV as dicts of strings.

    A row with the wrong number of fields (the line a running process is half-way through
    appending) is skipped. Missing `required` columns are a UserError naming the file.
    """
    require_file(path, what)
    header, rows = read_csv(path, what)
    missing = [c for c in required if c not in header]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows


def to_float(text: Optional[str]) -> float:
    """CSV cell -> float; empty or malformed -> NaN (N/A cells are empty by contract)."""
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


# ----------------------------------------------------------------------------- figures
def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for n panels, at most max_cols wide."""
    cols = max(1, min(max_cols, n))
    return max(1, math.ceil(n / cols)), cols


def panel_axes(fig: Figure, names: list[str], max_cols: int, **subplot_kw) -> list:
    """One axes per name in a grid; each axes is labelled `panel:<name>` so tests (and anyone
    inspecting a figure) can count panels without counting twin axes or colourbars."""
    rows, cols = grid_shape(len(names), max_cols)
    axes = []
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1, **subplot_kw)
        ax.set_label(f"panel:{name}")
        axes.append(ax)
    return axes


def panels_of(fig: Figure) -> list[str]:
    """Names of the panels created by `panel_axes`, in order."""
    return [ax.get_label()[len("panel:"):] for ax in fig.axes if ax.get_label().startswith("panel:")]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"plot format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Render to memory, then one atomic write: a reader never sees half an image."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip("."), dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def plots_dir(run_dir: str | Path, out_dir: Optional[str | Path]) -> Path:
    """Where a plot of `run_dir` goes: `out_dir` if given (None or "" = not given), else `run_dir/plots/`."""
    return Path(out_dir) if out_dir else Path(run_dir) / "plots"
