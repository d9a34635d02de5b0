"""What `nas compare` compares: run results per dataset, rows per model, the reference, paired statistics.

Only run-folder files are read (`summary.json`, `per_image.csv`, `genotype.yaml` and each
`evaluation-<name>/` folder), so a comparison can be rebuilt anywhere from copied run folders.
Rendering lives elsewhere: Markdown and CSV in :mod:`nas.report`, charts in :mod:`nas.plots.compare`.

Datasets: `test split` is what each run scored on its own test split at the end of training;
every `RUN/evaluation-<name>/` folder (written by `nas evaluate RUN --data DIR` or by a suite's
`evaluate_on:`) is dataset `<name>`. Each dataset gets its own table and statistics.

Rows: runs with the same label are one model (its seeds, and for random genotypes its samples).
A row is `baseline` (a hand-designed network), `searched` (a genotype) or `random` (a genotype
whose `source` says `random: true`; without a suite label such runs form one row `random`).
A run whose metrics on a dataset are missing or not finite (e.g. a zero-size test split) is
not counted there, and the comparison says so.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from nas.errors import UserError
from nas.outputs import TEST_SPLIT_DATA, same_data
from nas.stats import N_BOOT, PairedDiff, PairingError, paired_difference

TEST_SPLIT = TEST_SPLIT_DATA  # the dataset name of each run's own test split
EVAL_PREFIX = "evaluation-"
METRICS = ("dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity")
KINDS = ("baseline", "searched", "random")


# ----------------------------------------------------------------------------- run folders
@dataclass
class Scores:
    """One run's results on one dataset: mean metrics (summary.json) and the folder holding them."""

    dataset: str
    folder: Path  # holds summary.json and per_image.csv (the run folder or RUN/evaluation-<name>)
    test: dict[str, float]
    data: str = ""  # what was scored: a folder, or the test split
    images: Optional[int] = None

    @property
    def per_image_path(self) -> Path:
        return self.folder / "per_image.csv"

    @property
    def predictions(self) -> Optional[Path]:
        """`<folder>/predictions` when it holds the evaluator's `index.csv` (for the gallery)."""
        path = self.folder / "predictions"
        return path if (path / "index.csv").is_file() else None

    def problem(self) -> Optional[str]:
        """Why these scores cannot be counted, or None."""
        if not self.test:
            return "no test metrics (a zero-size test split?)"
        bad = [k for k in METRICS if k in self.test and not math.isfinite(self.test[k])]
        if bad:
            return f"test {bad[0]} is {self.test[bad[0]]}"
        if "dice" not in self.test:
            return "no test Dice"
        return None


@dataclass
class RunResult:
    """What `compare` needs from one run folder."""

    run_dir: Path
    label: str
    params: Optional[float]
    macs: Optional[float]
    train_time_s: Optional[float]
    latency_ms_batch1: Optional[float]
    seed: Optional[int]
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "baseline"
    sample: Optional[int] = None  # a random genotype's sampling seed
    scores: dict[str, Scores] = field(default_factory=dict)

    @property
    def test(self) -> dict[str, float]:
        """Mean metrics on the run's own test split (empty when it has none)."""
        s = self.scores.get(TEST_SPLIT)
        return s.test if s is not None else {}


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


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not valid JSON") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object")
    return summary


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
    test = summary.get("test") or {}
    return {k: float(v) for k, v in test.items() if _number(v) is not None} if isinstance(test, dict) else {}


def genotype_source(run_dir: Path, summary: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The `source:` of the genotype a run trained (its copy in the run folder, else the file named
    in summary.json), or None when there is no readable genotype."""
    candidates = [run_dir / "genotype.yaml"]
    if summary.get("genotype"):
        candidates.append(Path(str(summary["genotype"])))
    for path in candidates:
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError):
                return None
            src = data.get("source") if isinstance(data, dict) else None
            return src if isinstance(src, dict) else {}
    return None


def run_kind(run_dir: Path, summary: dict[str, Any]) -> tuple[str, Optional[int]]:
    """(`baseline` | `searched` | `random`, the random sample's seed)."""
    if not summary.get("genotype") and summary.get("model") != "genotype" and not (run_dir / "genotype.yaml").is_file():
        return "baseline", None
    source = genotype_source(run_dir, summary) or {}
    if source.get("random") is True:
        seed = source.get("seed")
        return "random", seed if isinstance(seed, int) else None
    return "searched", None


def _evaluation_scores(folder: Path, summary: dict[str, Any]) -> Scores:
    name = folder.name[len(EVAL_PREFIX):] if folder.name.startswith(EVAL_PREFIX) else folder.name
    return Scores(dataset=name, folder=folder, test=_metrics(summary), data=str(summary.get("data") or ""),
                  images=summary.get("images") if isinstance(summary.get("images"), int) else None)


def read_result(run_dir: str | Path, label: Optional[str] = None,
                datasets: Optional[Sequence[str]] = None) -> RunResult:
    """One run folder: its summary, its test-split scores and every `evaluation-<name>/` folder
    (only those named in `datasets`, when given)."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run_dir} a finished run folder (nas retrain / nas evaluate)?")
    summary = _read_summary(path)
    if summary.get("kind") == "search":
        raise UserError(f"{path}: this is a search run (no test metrics); compare retrained runs "
                        f"(nas discretize, then nas retrain --genotype)")
    scores: dict[str, Scores] = {}
    if summary.get("kind") == "evaluate":  # an evaluation folder given directly
        s = _evaluation_scores(run_dir, summary)
        scores[s.dataset] = s
        parent = run_dir.parent / "summary.json"
        run_summary = _read_summary(parent) if parent.is_file() else {}
        kind, sample = run_kind(run_dir.parent, run_summary) if run_summary else ("baseline", None)
        base = {**run_summary, "model": summary.get("model") or run_summary.get("model")}
    else:
        scores[TEST_SPLIT] = Scores(TEST_SPLIT, run_dir, _metrics(summary), data=TEST_SPLIT)
        for folder in sorted(run_dir.glob(f"{EVAL_PREFIX}*")):
            if (folder / "summary.json").is_file():
                evaluated = _read_summary(folder / "summary.json")
                if evaluated.get("data") == TEST_SPLIT:
                    continue  # `nas evaluate RUN` re-scored the run's own test split: already above
                s = _evaluation_scores(folder, evaluated)
                if datasets is None or s.dataset in datasets:
                    scores[s.dataset] = s
        kind, sample = run_kind(run_dir, summary)
        base = summary
    data = base.get("data")
    return RunResult(
        run_dir=run_dir, label=label or ("random" if kind == "random" else model_label(base)),
        params=_number(base.get("params")), macs=_number(base.get("macs")),
        train_time_s=_number(base.get("train_time_s")), latency_ms_batch1=_number(base.get("latency_ms_batch1")),
        seed=base.get("seed") if isinstance(base.get("seed"), int) else None,
        data=data if isinstance(data, dict) else {"source": data}, kind=kind, sample=sample, scores=scores)


def collect_runs(run_dirs: Sequence[str | Path], labels: Optional[Sequence[Optional[str]]] = None,
                 datasets: Optional[Sequence[str]] = None,
                 samples: Optional[Sequence[Optional[int]]] = None) -> list[RunResult]:
    """Read every run folder; `labels` (one per run, None = derived) override the grouping label,
    which the suite uses to name rows after its entries; `datasets` limits the evaluation folders
    read (None = all); `samples` (one per run, None = derived) says which genotype of a row a run
    trained, which the suite uses for an entry searched at several seeds (its genotypes are then
    resampled like a random entry's)."""
    if not run_dirs:
        raise UserError("compare: no run folders given")
    labels = list(labels) if labels is not None else [None] * len(run_dirs)
    samples = list(samples) if samples is not None else [None] * len(run_dirs)
    if len(labels) != len(run_dirs) or len(samples) != len(run_dirs):
        raise ValueError("collect_runs: one label and one sample per run folder expected")
    results = [read_result(d, label, datasets) for d, label in zip(run_dirs, labels)]
    for r, sample in zip(results, samples):
        if sample is not None:
            r.sample = sample
    given: dict[Path, Path] = {}
    for d, r in zip(run_dirs, results):  # a run counted twice would weigh twice (and look like two samples)
        key = (r.run_dir if TEST_SPLIT in r.scores else r.run_dir.parent).resolve()  # an evaluation: its run
        if key in given:
            raise UserError(f"compare: {d} and {given[key]} are the same run; give each run folder once "
                            f"(its evaluation-<name>/ folders are read with it)")
        given[key] = Path(d)
    return results


def dataset_names(results: Sequence[RunResult]) -> list[str]:
    """The test split first (when any run has one), then the other datasets in order of appearance."""
    names: list[str] = []
    for r in results:
        for name in r.scores:
            if name not in names:
                names.append(name)
    return sorted(names, key=lambda n: n != TEST_SPLIT)


# ----------------------------------------------------------------------------- per-image values
_PER_IMAGE_CACHE: dict[tuple[Path, float], dict[str, dict[str, float]]] = {}


def read_per_image(path: Path) -> dict[str, dict[str, float]]:
    """`per_image.csv` as {image id: {metric: value}}; a missing column or a non-number is an error
    that names the file (statistics on silently dropped rows would mislead)."""
    key = (path.resolve(), path.stat().st_mtime)
    if key in _PER_IMAGE_CACHE:
        return _PER_IMAGE_CACHE[key]
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("id", *METRICS) if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: column {missing[0]!r} missing (expected id, {', '.join(METRICS)})")
        out: dict[str, dict[str, float]] = {}
        for line, row in enumerate(reader, start=2):
            values = {}
            for m in METRICS:
                try:
                    values[m] = float(row[m])
                except (TypeError, ValueError):
                    raise UserError(f"{path}: line {line}: {m} is not a number: {row[m]!r}") from None
                if not math.isfinite(values[m]):
                    raise UserError(f"{path}: line {line}: {m} is {row[m]}")
            if row["id"] in out:
                raise UserError(f"{path}: line {line}: image {row['id']} listed twice")
            out[row["id"]] = values
    _PER_IMAGE_CACHE[key] = out
    return out


# ----------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool
    decimals: int
    scale: float = 1.0

    def value(self, r: RunResult, dataset: str = TEST_SPLIT) -> Optional[float]:
        if self.key in METRICS:
            s = r.scores.get(dataset)
            return s.test.get(self.key) if s is not None else None
        return getattr(r, self.key)

    def display(self, value: float) -> float:
        return round(value / self.scale, self.decimals)

    def text(self, value: Optional[float]) -> str:
        return "–" if value is None else f"{value / self.scale:.{self.decimals}f}"

    @property
    def title(self) -> str:
        return f"{self.header} {'↑' if self.higher_is_better else '↓'}"


METRIC_COLUMNS: tuple[Column, ...] = (
    Column("dice", "Dice", True, 4),
    Column("jaccard", "Jaccard", True, 4),
    Column("jaccard_t", "Jaccard (t=0.65)", True, 4),
    Column("accuracy", "Accuracy", True, 4),
    Column("sensitivity", "Sensitivity", True, 4),
    Column("specificity", "Specificity", True, 4),
)
COLUMNS: tuple[Column, ...] = METRIC_COLUMNS + (
    Column("params", "Params (M)", False, 3, 1e6),
    Column("macs", "MACs (G)", False, 3, 1e9),
    Column("train_time_s", "Train time (s)", False, 1),
    Column("latency_ms_batch1", "Latency bs1 (ms)", False, 2),
)
METRIC_HEADERS = {c.key: c.header for c in METRIC_COLUMNS}


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
        return sorted({r.seed for r in self.runs if r.seed is not None})

    @property
    def samples(self) -> list[Any]:
        return sorted({r.sample for r in self.runs if r.sample is not None})

    @property
    def kind(self) -> str:
        kinds = sorted({r.kind for r in self.runs}, key=KINDS.index)
        return "+".join(kinds)

    @property
    def several_genotypes(self) -> bool:
        """Random genotypes, or a searched entry with one genotype per search seed (its runs carry
        samples): the statistics resample the genotypes as well as images and seeds."""
        return self.kind == "random" or bool(self.samples)


@dataclass
class CompareTable:
    dataset: str
    columns: tuple[Column, ...]
    rows: list[TableRow]
    best: dict[str, set[str]]  # column key -> labels of the best row(s)
    excluded: list[tuple[RunResult, str]] = field(default_factory=list)  # (run, why it does not count)

    def cell(self, row: TableRow, column: Column) -> str:
        """`0.8123 ± 0.0050` (several runs), `0.8123` (one run) or `–` (not reported)."""
        stat = row.stats[column.key]
        if stat is None:
            return "–"
        text = column.text(stat.mean)
        return text if stat.std is None else f"{text} ± {column.text(stat.std)}"

    def is_best(self, row: TableRow, column: Column) -> bool:
        return row.label in self.best.get(column.key, set())

    def row(self, label: str) -> Optional[TableRow]:
        return next((r for r in self.rows if r.label == label), None)


def _stat(values: list[Optional[float]]) -> Optional[Stat]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Stat(mean=statistics.fmean(finite), std=std)


def compare_table(results: Sequence[RunResult], columns: Optional[tuple[Column, ...]] = None,
                  dataset: str = TEST_SPLIT) -> CompareTable:
    """Group the runs that count on `dataset` by label (in order of first appearance) and mark the
    best row per column. Runs without finite metrics there are listed in `excluded`, not counted.
    Columns default to metrics and costs for the test split, metrics only for other datasets."""
    if columns is None:
        columns = COLUMNS if dataset == TEST_SPLIT else METRIC_COLUMNS
    groups: dict[str, list[RunResult]] = {}
    excluded = []
    for r in results:
        s = r.scores.get(dataset)
        if s is None:
            if dataset == TEST_SPLIT:
                excluded.append((r, "no test metrics"))
            continue
        problem = s.problem()
        if problem:
            excluded.append((r, problem))
            continue
        groups.setdefault(r.label, []).append(r)
    rows = [TableRow(label, runs, {c.key: _stat([c.value(r, dataset) for r in runs]) for c in columns})
            for label, runs in groups.items()]
    best: dict[str, set[str]] = {}
    for c in columns:
        shown = {row.label: c.display(row.stats[c.key].mean) for row in rows if row.stats[c.key] is not None}
        if shown:
            target = (max if c.higher_is_better else min)(shown.values())
            best[c.key] = {label for label, v in shown.items() if v == target}
    return CompareTable(dataset=dataset, columns=columns, rows=rows, best=best, excluded=excluded)


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


# ----------------------------------------------------------------------------- reference
def choose_reference(table: CompareTable, requested: Optional[str] = None,
                     requested_by: str = "--reference") -> tuple[Optional[str], str]:
    """(reference label, why): the requested row, else the best `baseline` row by mean Dice,
    else (no baseline) the best row by mean Dice."""
    labels = [r.label for r in table.rows]
    if requested is not None:
        if requested not in labels:
            raise UserError(f"compare: {requested_by} {requested}: no such model on the {table.dataset} "
                            f"(models: {', '.join(labels) or 'none'})")
        return requested, f"set by {requested_by}"

    def dice(row: TableRow) -> float:
        stat = row.stats.get("dice")
        return stat.mean if stat is not None else -math.inf

    baselines = [r for r in table.rows if r.kind == "baseline"]
    if baselines:
        return max(baselines, key=dice).label, "the best hand-designed baseline by mean Dice"
    if table.rows:
        return max(table.rows, key=dice).label, "no hand-designed baseline here: the best model by mean Dice"
    return None, "no model to compare"


# ----------------------------------------------------------------------------- paired statistics
@dataclass
class Contrast:
    """`model` - `reference` on one dataset, one paired difference per metric."""

    model: str
    reference: str
    diffs: dict[str, PairedDiff]
    note: str = ""


@dataclass
class DatasetComparison:
    dataset: str
    table: CompareTable
    versus_reference: list[Contrast]
    searched_vs_random: list[Contrast]
    notes: list[str]


@dataclass
class Comparison:
    results: list[RunResult]
    reference: Optional[str]
    reference_reason: str
    datasets: list[DatasetComparison]


def _seed_layers(row: TableRow, dataset: str, metric: str) -> tuple[dict[Any, dict[str, Any]], bool]:
    """(seed -> image id -> value, shared). A row of random genotypes gives one value per sample
    (in sample order), so that the paired statistics resample the genotypes too; `shared` says
    that every seed holds the same samples (the same genotypes retrained at every seed), or that
    the row has one run per seed."""
    by_seed: dict[Any, list[tuple[Path, Optional[int], dict[str, dict[str, float]]]]] = {}
    for r in sorted(row.runs, key=lambda r: (r.sample is None, r.sample or 0)):
        path = r.scores[dataset].per_image_path
        by_seed.setdefault(r.seed, []).append((path, r.sample, read_per_image(path)))
    layers = {}
    for seed, runs in by_seed.items():
        first_path, _, first = runs[0]
        for path, _, values in runs[1:]:
            if set(values) != set(first):
                raise UserError(f"{path}: scored other images than {first_path} (same model {row.label}, seed "
                                f"{seed}); runs to be averaged need the same test images")
        if row.several_genotypes and len(runs) > 1:
            layers[seed] = {i: [v[i][metric] for _, _, v in runs] for i in first}
        else:  # one run, or repeated runs of one model and seed: their mean
            layers[seed] = {i: sum(v[i][metric] for _, _, v in runs) / len(runs) for i in first}
    samples = {tuple(sample for _, sample, _ in runs) for runs in by_seed.values()}
    one_run = not row.several_genotypes or all(len(runs) == 1 for runs in by_seed.values())  # nothing resampled
    shared = one_run or (len(samples) == 1 and None not in next(iter(samples)))
    return layers, shared


def _paired_seeds(model: TableRow, reference: TableRow, dataset: str) -> tuple[Optional[list[Any]], str]:
    """Which seeds to pair on. All of them (None) when both rows have the same seeds or when every
    seed of each row scored the same images; else only the seeds both rows have, noted."""
    ms, rs = {r.seed for r in model.runs}, {r.seed for r in reference.runs}
    if ms == rs:
        return None, ""
    ids = {frozenset(read_per_image(r.scores[dataset].per_image_path)) for r in [*model.runs, *reference.runs]}
    if len(ids) == 1:
        return None, ""
    shared = sorted(ms & rs, key=str)
    if not shared:
        return None, ""  # paired_difference names the problem
    return shared, (f"paired on the seeds both have ({', '.join(map(str, shared))}): the seeds' test "
                    f"splits differ, so per-image means over other seeds cannot be paired")


def contrast(model: TableRow, reference: TableRow, dataset: str, metrics: Sequence[str] = METRICS,
             n_boot: int = N_BOOT) -> Contrast:
    """Paired differences model - reference for every metric; refuses rows scored on other images."""
    seeds, note = _paired_seeds(model, reference, dataset)
    diffs = {}
    for metric in metrics:
        m, m_shared = _seed_layers(model, dataset, metric)
        r, r_shared = _seed_layers(reference, dataset, metric)
        if seeds is not None:
            m, r = {s: m[s] for s in seeds}, {s: r[s] for s in seeds}
        try:
            diffs[metric] = paired_difference(m, r, n_boot=n_boot, shared_samples=m_shared and r_shared)
        except PairingError as exc:
            raise UserError(f"{model.runs[0].scores[dataset].per_image_path}: cannot be paired with "
                            f"{reference.runs[0].scores[dataset].per_image_path} ({dataset}): {exc}; paired "
                            f"statistics need the same test images on both sides") from None
    return Contrast(model=model.label, reference=reference.label, diffs=diffs, note=note)


def _missing_per_image(row: TableRow, dataset: str) -> Optional[Path]:
    return next((r.scores[dataset].per_image_path for r in row.runs
                 if not r.scores[dataset].per_image_path.is_file()), None)


def _check_one_folder(table: CompareTable, dataset: str) -> None:
    """Every run's `dataset` must be the same data: an evaluation folder is named after the data
    folder, so two folders of one name elsewhere (…/a/test, …/b/test) would be paired as one."""
    first: Optional[Scores] = None
    for row in table.rows:
        for run in row.runs:
            s = run.scores[dataset]
            if first is None:
                first = s
            elif not same_data(first.data, s.data):
                raise UserError(f"compare: {s.folder} scored {s.data}, {first.folder} scored {first.data}, both "
                                f"named '{dataset}'; evaluate every run on the same folder, or one of them with "
                                f"`nas evaluate RUN --data DIR --out RUN/evaluation-<other name>`")


def compare_dataset(results: Sequence[RunResult], dataset: str, reference: Optional[str],
                    random_pairs: Optional[Sequence[tuple[str, str]]] = None, n_boot: int = N_BOOT) -> DatasetComparison:
    """The table of `dataset`, every row vs the reference, and searched vs random.

    `random_pairs` lists (searched, random) row labels; None pairs every `searched` row with every
    `random` row."""
    table = compare_table(results, dataset=dataset)
    _check_one_folder(table, dataset)
    notes = [f"not counted: {r.run_dir} ({why})" for r, why in table.excluded]
    ref_row = table.row(reference) if reference else None
    if reference and ref_row is None and table.rows:
        notes.append(f"no paired statistics: the reference {reference} was not scored here")
    usable = {}
    for row in table.rows:
        missing = _missing_per_image(row, dataset)
        if missing is None:
            usable[row.label] = row
        else:
            notes.append(f"no paired statistics for {row.label}: {missing} not found")
    versus = []
    if ref_row is not None and reference in usable:
        versus = [contrast(row, ref_row, dataset, n_boot=n_boot) for row in table.rows
                  if row.label != reference and row.label in usable]
    if random_pairs is None:
        random_pairs = [(s.label, r.label) for s in table.rows if s.kind == "searched"
                        for r in table.rows if r.kind == "random"]
    vs_random = [contrast(usable[s], usable[r], dataset, n_boot=n_boot) for s, r in random_pairs
                 if s in usable and r in usable]
    return DatasetComparison(dataset, table, versus, vs_random, notes)


def build_comparison(results: Sequence[RunResult], reference: Optional[str] = None,
                     random_pairs: Optional[Sequence[tuple[str, str]]] = None,
                     n_boot: int = N_BOOT, reference_by: str = "--reference") -> Comparison:
    """Every dataset's table and paired statistics. The reference is chosen once, on the test split
    (or the first dataset when no run has test-split metrics), and used for every dataset;
    `reference_by` says where a given `reference` came from (for the report and errors)."""
    names = dataset_names(results)
    counted = [n for n in names if compare_table(results, dataset=n).rows]
    if not counted:
        details = "; ".join(f"{r.run_dir}: {why}" for r, why in compare_table(results).excluded)
        raise UserError(f"compare: no run has test metrics to compare ({details})")
    ref, why = choose_reference(compare_table(results, dataset=counted[0]), reference, reference_by)
    return Comparison(results=list(results), reference=ref, reference_reason=why,
                      datasets=[compare_dataset(results, n, ref, random_pairs, n_boot) for n in counted])
