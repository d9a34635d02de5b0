"""`nas compare`: one table (and charts) from the `summary.json` of finished runs.

Runs are grouped by model label, so several seeds of one model become one row with mean ± std
(sample standard deviation, n-1). The best value of each column is marked: highest for quality
metrics, lowest for cost (parameters, MACs, training time, latency). Best is decided on the
values as displayed, so two rows that print the same number are both marked.

Only run-folder files are read, so a report can be rebuilt anywhere from copied run folders.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from nas.errors import UserError
from nas.runs import atomic_write_text


# ----------------------------------------------------------------------------- runs
@dataclass
class RunResult:
    """What `compare` needs from one run folder's summary.json."""

    run_dir: Path
    label: str
    params: Optional[float]
    macs: Optional[float]
    test: dict[str, float]
    train_time_s: Optional[float]
    latency_ms_batch1: Optional[float]
    seed: Optional[int]
    data: dict[str, Any] = field(default_factory=dict)


def model_label(summary: dict[str, Any]) -> str:
    """Model name for baselines; for a searched net the genotype file's stem, or its folder's name
    when the file is just `genotype.yaml` (as `nas discretize` writes it into the run folder)."""
    genotype = summary.get("genotype")
    if genotype:
        path = Path(str(genotype))
        if path.stem != "genotype" or not path.parent.name:
            return path.stem
        return path.parent.name
    return str(summary.get("model") or "unknown")


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_result(run_dir: str | Path, label: Optional[str] = None) -> RunResult:
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run_dir} a finished run folder (nas retrain / nas evaluate)?")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not valid JSON") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object")
    if summary.get("kind") == "search":
        raise UserError(f"{path}: this is a search run (no test metrics); compare retrained runs "
                        f"(nas discretize, then nas retrain --genotype)")
    test = summary.get("test") or {}
    return RunResult(
        run_dir=run_dir, label=label or model_label(summary),
        params=_number(summary.get("params")), macs=_number(summary.get("macs")),
        test={k: float(v) for k, v in test.items() if _number(v) is not None},
        train_time_s=_number(summary.get("train_time_s")),
        latency_ms_batch1=_number(summary.get("latency_ms_batch1")),
        seed=summary.get("seed"), data=(summary.get("data") if isinstance(summary.get("data"), dict) else {"source": summary.get("data")}),
    )


def collect_runs(run_dirs: Sequence[str | Path], labels: Optional[Sequence[Optional[str]]] = None) -> list[RunResult]:
    """Read every run's summary.json; `labels` (one per run, None = derived) override the grouping
    label, which the suite uses to name rows after its entries."""
    if not run_dirs:
        raise UserError("compare: no run folders given")
    labels = list(labels) if labels is not None else [None] * len(run_dirs)
    if len(labels) != len(run_dirs):
        raise ValueError("collect_runs: one label per run folder expected")
    return [read_result(d, label) for d, label in zip(run_dirs, labels)]


# ----------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool
    decimals: int
    scale: float = 1.0

    def value(self, r: RunResult) -> Optional[float]:
        if self.key in METRICS:
            return r.test.get(self.key)
        return getattr(r, self.key)

    def display(self, value: float) -> float:
        return round(value / self.scale, self.decimals)

    def text(self, value: Optional[float]) -> str:
        return "–" if value is None else f"{value / self.scale:.{self.decimals}f}"

    @property
    def title(self) -> str:
        return f"{self.header} {'↑' if self.higher_is_better else '↓'}"


METRICS = ("dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity")
COLUMNS: tuple[Column, ...] = (
    Column("dice", "Dice", True, 4),
    Column("jaccard", "Jaccard", True, 4),
    Column("jaccard_t", "Jaccard (t=0.65)", True, 4),
    Column("accuracy", "Accuracy", True, 4),
    Column("sensitivity", "Sensitivity", True, 4),
    Column("specificity", "Specificity", True, 4),
    Column("params", "Params (M)", False, 3, 1e6),
    Column("macs", "MACs (G)", False, 3, 1e9),
    Column("train_time_s", "Train time (s)", False, 1),
    Column("latency_ms_batch1", "Latency bs1 (ms)", False, 2),
)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: Optional[float]  # None with fewer than two values


@dataclass
class TableRow:
    label: str
    runs: list[RunResult]
    stats: dict[str, Optional[Stat]]

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]


@dataclass
class CompareTable:
    columns: tuple[Column, ...]
    rows: list[TableRow]
    best: dict[str, set[str]]  # column key -> labels of the best row(s)

    def cell(self, row: TableRow, column: Column) -> str:
        """`0.8123 ± 0.0050` (several runs), `0.8123` (one run) or `–` (not reported)."""
        stat = row.stats[column.key]
        if stat is None:
            return "–"
        text = column.text(stat.mean)
        return text if stat.std is None else f"{text} ± {column.text(stat.std)}"

    def is_best(self, row: TableRow, column: Column) -> bool:
        return row.label in self.best.get(column.key, set())


def _stat(values: list[float]) -> Optional[Stat]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else None
    return Stat(mean=statistics.fmean(values), std=std)


def compare_table(results: Sequence[RunResult], columns: tuple[Column, ...] = COLUMNS) -> CompareTable:
    """Group runs by label (in order of first appearance) and mark the best row per column."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.label, []).append(r)
    rows = [TableRow(label, runs, {c.key: _stat([c.value(r) for r in runs]) for c in columns})
            for label, runs in groups.items()]
    best: dict[str, set[str]] = {}
    for c in columns:
        shown = {row.label: c.display(row.stats[c.key].mean) for row in rows if row.stats[c.key] is not None}
        if shown:
            target = (max if c.higher_is_better else min)(shown.values())
            best[c.key] = {label for label, v in shown.items() if v == target}
    return CompareTable(columns=columns, rows=rows, best=best)


# ----------------------------------------------------------------------------- renderers
def _runs_text(row: TableRow) -> str:
    seeds = [str(s) for s in row.seeds if s is not None]
    return f"{len(row.runs)}" + (f" (seeds {', '.join(seeds)})" if seeds else "")


def table_markdown(table: CompareTable) -> str:
    header = ["Model", "Runs", *(c.title for c in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = [row.label, _runs_text(row)]
        for c in table.columns:
            text = table.cell(row, c)
            cells.append(f"**{text}**" if table.is_best(row, c) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(table: CompareTable) -> str:
    """Same numbers, unscaled units (params, MACs as counts), mean and std as separate columns."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model", "runs", "seeds", *(f"{c.key}_{s}" for c in table.columns for s in ("mean", "std"))])
    for row in table.rows:
        values: list[Any] = []
        for c in table.columns:
            stat = row.stats[c.key]
            values += ["", ""] if stat is None else [repr(stat.mean), "" if stat.std is None else repr(stat.std)]
        writer.writerow([row.label, len(row.runs), " ".join(str(s) for s in row.seeds if s is not None), *values])
    return buf.getvalue()


def data_differences(results: Sequence[RunResult]) -> list[str]:
    """`image_size: 64, 128` for every data setting that is not the same in all runs."""
    keys = sorted({k for r in results for k in r.data})
    diffs = []
    for k in keys:
        seen = []
        for r in results:
            v = json.dumps(r.data.get(k), sort_keys=True)
            if v not in seen:
                seen.append(v)
        if len(seen) > 1:
            diffs.append(f"{k}: {', '.join(seen)}")
    return diffs


def write_report(results: Sequence[RunResult], out_path_md: str | Path, title: str = "Model comparison") -> list[Path]:
    """Write `<name>.md` (table first, then charts), `<name>.csv` and the charts next to it.

    Every file is written atomically. Returns the written paths, Markdown first.
    """
    from nas.plots.compare import bar_chart, scatter_chart

    md_path = Path(out_path_md)
    if md_path.suffix != ".md":
        md_path = md_path.with_suffix(".md")
    table = compare_table(results)
    charts = [scatter_chart(table, md_path.with_name(f"{md_path.stem}_quality_vs_params.png")),
              bar_chart(table, md_path.with_name(f"{md_path.stem}_metrics.png"))]
    csv_path = atomic_write_text(md_path.with_suffix(".csv"), table_csv(table))
    parts = [f"# {title}\n\n", table_markdown(table),
             "\nMean ± sample std over runs of the same model (different seeds); **bold** = best "
             "(↑ higher is better, ↓ lower is better). Test-set metrics are per-image means "
             "(ISIC challenge definitions).\n"]
    diffs = data_differences(results)
    if diffs:
        parts.append("\n**Warning: the runs did not use the same data settings**, so the rows are not "
                     "directly comparable: " + "; ".join(diffs) + ".\n")
    parts.append("\n## Charts\n")
    parts += [f"\n![{p.stem}]({p.name})\n" for p in charts]
    parts.append("\n## Runs\n\n| Model | Seed | Run folder |\n|---|---|---|\n")
    parts += [f"| {r.label} | {r.seed if r.seed is not None else '–'} | `{r.run_dir}` |\n" for r in results]
    md = atomic_write_text(md_path, "".join(parts))
    return [md, csv_path, *charts]
