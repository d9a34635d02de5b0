"""The comparison report: Markdown (renders on GitHub), CSV and PNG charts from a `Comparison`.

One section per dataset (the runs' own test split, then every external dataset): the table of
mean ± sample std over seeds with the best value of each column in bold, the paired
differences of every model against the reference (and searched vs random) in numbers and in
words, a per-image scatter against the reference, and a gallery of each model's best and worst
cases where predictions were saved. What the statistics mean is written at the end of the report.

Best is decided on the values as displayed, so two rows that print the same number are both
marked. Only run-folder files are read (see :mod:`nas.comparison`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any, Optional

from nas.comparison import (COLUMNS, METRIC_HEADERS, TEST_SPLIT, CompareTable, Comparison, Contrast,
                            DatasetComparison, TableRow, data_differences)
from nas.errors import UserError
from nas.ranking import PROXY_NAMES, Ranking, build_ranking, ranking_csv, ranking_stats_csv
from nas.runs import atomic_write_text
from nas.stats import ALPHA, EXACT_MAX_N, LEVEL, N_BOOT, format_p

GALLERY_CASES = 2  # best and worst images per model in the gallery

HOW_TO_READ = f"""\
## How to read the statistics

- **Δ** is the mean paired difference *model − reference* of a metric: per image, then the mean
  over images, then the mean over seeds. Both sides must have scored the same images; runs
  evaluated on different test sets are refused.
- **Pairing.** When the model and the reference were trained with the same seeds, seed *s* of
  the model is paired with seed *s* of the reference (same split, same images). Otherwise each
  side is first averaged per image over its seeds (this needs every seed to have scored the same
  images, as on an external dataset or an official split; if not, only the seeds both sides have
  are paired, and the report says so). A random-genotype row stands for "a random genotype of
  this space": Δ and p use the mean over its samples, and the CI also resamples the samples.
- **95 % CI**: percentile bootstrap, {N_BOOT:,} replicates, fixed generator seed (the same
  numbers on every rebuild). Each replicate draws the seeds with replacement and the images with
  replacement: one image draw shared by all seeds when every seed scored the same images
  (*crossed*), one draw per seed when each seed has its own test split (*nested*), images only
  with one seed. Against a random-genotype row, each replicate also draws its genotypes with
  replacement (one draw for all seeds when the same genotypes were retrained at every seed, as
  in a suite; one per seed otherwise), shown as "× N genotypes". The interval therefore carries
  test-set, seed-to-seed and genotype-to-genotype variation: a searched genotype must beat random
  genotypes of the space, not only the few that were drawn.
- **p**: two-sided Wilcoxon signed-rank test on one difference per image (its mean over the
  paired seeds); zero differences dropped, tied |differences| get mid-ranks; exact sign-flip
  distribution up to {EXACT_MAX_N} non-zero differences, normal approximation with tie and
  continuity correction above. It treats the images as the unit, conditional on the trained
  models.
- **Within noise**: the CI contains 0 or p ≥ {ALPHA}. Otherwise the model is *better* (Δ > 0;
  every metric here is higher-is-better) or *worse* than the reference. No correction for
  multiple comparisons: with six metrics and several models, a few p < {ALPHA} are expected by
  chance; read Dice first and look for agreement across metrics and datasets.
"""

HOW_TO_READ_RANKING = f"""\
## Reading the ranking

- **τ** is Kendall's τ-b (ties corrected) between a proxy and the stand-alone test Dice over the
  retrained genotypes: +1 = the same order, 0 = unrelated, −1 = reversed. Proxies: the one-shot
  Dice of the genotype in the supernet it came from (inherited weights, BatchNorm statistics
  re-estimated on training batches, validation Dice), its α score, and its parameter count.
  Random genotypes are scored in the supernet of the search they are the control of.
- **Noise ceiling**: τ between the stand-alone Dice of two training seeds of the same genotypes
  (the mean over seed pairs with three or more seeds). No proxy can be expected to rank better
  than the data rank themselves (Yu et al., ICLR 2020).
- **Intervals**: {LEVEL:.0%} percentile bootstrap over genotypes, {N_BOOT:,} replicates, fixed seed.
  "Ceiling ≈ 0" and "a proxy ranks them" mean: the interval includes 0, lies above 0.
- **Relative improvement** = (mean searched − mean random) / mean random, and **P(beats random)**
  = the share of (searched, random) genotype pairs at each training seed where the searched one
  has the higher Dice (ties half), both with intervals that resample the searched and the random
  genotypes (Yang et al., ICLR 2020). **Above size trend**: the searched Dice minus the
  least-squares line of the random genotypes' Dice on log10(parameters) at its size.
"""


# ----------------------------------------------------------------------------- tables
def runs_text(row: TableRow) -> str:
    """`2 (seeds 1, 2)`, or `4 (2 samples; seeds 1, 2)` for random genotypes."""
    parts = []
    if row.samples:
        parts.append(f"{len(row.samples)} samples")
    if row.seeds:
        parts.append(f"seeds {', '.join(str(s) for s in row.seeds)}")
    return f"{len(row.runs)}" + (f" ({'; '.join(parts)})" if parts else "")


def table_markdown(table: CompareTable) -> str:
    header = ["Model", "Kind", "Runs", *(c.title for c in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = [row.label, row.kind, runs_text(row)]
        for c in table.columns:
            text = table.cell(row, c)
            cells.append(f"**{text}**" if table.is_best(row, c) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(tables: list[CompareTable]) -> str:
    """Every dataset's rows, unscaled units (params, MACs as counts), mean and std as separate
    columns; cost columns are empty outside the test split."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["dataset", "model", "kind", "runs", "seeds", "samples",
                     *(f"{c.key}_{s}" for c in COLUMNS for s in ("mean", "std"))])
    for table in tables:
        for row in table.rows:
            values: list[Any] = []
            for c in COLUMNS:
                stat = row.stats.get(c.key)
                values += ["", ""] if stat is None else [repr(stat.mean), "" if stat.std is None else repr(stat.std)]
            writer.writerow([table.dataset, row.label, row.kind, len(row.runs), " ".join(map(str, row.seeds)),
                             " ".join(map(str, row.samples)), *values])
    return buf.getvalue()


# ----------------------------------------------------------------------------- statistics
def _verdict(diff) -> str:
    return "within noise" if diff.within_noise else ("better" if diff.mean > 0 else "worse")


def _diff_text(diff) -> str:
    return f"{diff.mean:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}], p {format_p(diff.p)}"


def contrast_words(c: Contrast) -> str:
    """One line: which metrics differ beyond noise (with numbers), and that the rest are within it."""
    beyond = [(m, d) for m, d in c.diffs.items() if not d.within_noise]
    within = [METRIC_HEADERS.get(m, m) for m, d in c.diffs.items() if d.within_noise]
    dice = c.diffs.get("dice")
    head = f"**{c.model}** vs {c.reference}"
    if not beyond:
        text = f"{head}: every difference is within noise"
        if dice is not None:
            text += f" (Dice Δ {_diff_text(dice)})"
        return text + "." + _few_genotypes(dice)
    parts = [f"{_verdict(d)} in {METRIC_HEADERS.get(m, m)} (Δ {_diff_text(d)})" for m, d in beyond]
    text = f"{head}: " + "; ".join(parts)
    if within:
        text += f"; within noise in {', '.join(within)}"
    return text + "." + _few_genotypes(dice)


def _few_genotypes(dice) -> str:
    """Why a Dice difference with a small p is still "within noise" against random genotypes."""
    if dice is None or dice.n_samples < 2 or not dice.within_noise or dice.p >= ALPHA:
        return ""
    return (f" The images agree (p {format_p(dice.p)}), but the interval, which also resamples the "
            f"{dice.n_samples} random genotypes, includes 0: they differ too much among themselves to "
            f"tell; retrain more random samples.")


def stats_markdown(contrasts: list[Contrast]) -> str:
    lines = ["| Model | vs | Metric | Δ mean | 95 % CI | p | Images × seeds | Pairing | Verdict |",
             "|---|---|---|---:|---|---:|---:|---|---|"]
    for c in contrasts:
        for m, d in c.diffs.items():
            lines.append(f"| {c.model} | {c.reference} | {METRIC_HEADERS.get(m, m)} | {d.mean:+.4f} | "
                         f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}] | {format_p(d.p)} | {d.size_text} | "
                         f"{d.pairing} ({d.design}) | {_verdict(d)} |")
    return "\n".join(lines) + "\n"


def stats_csv(datasets: list[DatasetComparison]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["dataset", "comparison", "model", "reference", "metric", "mean_diff", "ci_low", "ci_high",
                     "p_value", "test", "w_plus", "n_nonzero", "n_images", "n_seeds", "n_genotypes", "pairing",
                     "bootstrap", "verdict"])
    for ds in datasets:
        for what, contrasts in (("vs reference", ds.versus_reference), ("searched vs random", ds.searched_vs_random)):
            for c in contrasts:
                for m, d in c.diffs.items():
                    writer.writerow([ds.dataset, what, c.model, c.reference, m, repr(d.mean), repr(d.ci_low),
                                     repr(d.ci_high), repr(d.p), d.test.method, d.test.statistic, d.test.n,
                                     d.n_images, d.n_seeds, d.n_samples, d.pairing, d.design, _verdict(d)])
    return buf.getvalue()


# ----------------------------------------------------------------------------- charts
def slug(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-") or "data"


def _gallery(ds: DatasetComparison, md_path: Path) -> list[tuple[str, Optional[Path], str]]:
    """(model, figure, why not drawn) for every row that has saved predictions on this dataset:
    its run with the lowest seed (and sample), drawn by the `nas plot predictions` figure code."""
    from nas.plots.common import save_figure
    from nas.plots.predictions import predictions_figure

    out = []
    for row in ds.table.rows:
        runs = [r for r in row.runs if r.scores[ds.dataset].predictions is not None]
        if not runs:
            continue
        run = min(runs, key=lambda r: (r.seed is None, r.seed or 0, r.sample or 0))
        scores = run.scores[ds.dataset]
        seed = f", seed {run.seed}" if run.seed is not None else ""
        title = f"{row.label}{seed} on {ds.dataset}: best and worst by Dice"
        try:
            fig = predictions_figure(scores.folder, GALLERY_CASES, scores.predictions, title=title)
        except UserError as exc:  # a moved image folder should not cost the whole report
            out.append((row.label, None, str(exc)))
            continue
        path = md_path.with_name(f"{md_path.stem}_{slug(ds.dataset)}_gallery_{slug(row.label)}.png")
        out.append((row.label, save_figure(fig, path), ""))
    return out


# ----------------------------------------------------------------------------- ranking and the field's numbers
def _estimate_cells(e) -> list[str]:
    if e is None:
        return ["–", "–"]
    if not math.isfinite(e.value):
        return ["undefined", "–"]
    ci = "–" if not math.isfinite(e.ci_low) else f"[{e.ci_low:+.2f}, {e.ci_high:+.2f}]"
    return [f"{e.value:+.2f}", ci]


def ranking_markdown(ranking: Ranking) -> str:
    """The "Ranking validity" section: per-proxy τ vs stand-alone Dice, the noise ceiling, the
    reading in words, and the genotypes' values."""
    seeds = ", ".join(map(str, ranking.seeds)) or "none in common"
    parts = [f"\n## Ranking validity\n\n"
             f"Do the search's proxies order the {len(ranking.genotypes)} retrained genotypes (searched and random) "
             f"as their stand-alone test Dice ({ranking.dataset}, mean over training seeds) does? Kendall τ-b, "
             f"{LEVEL:.0%} bootstrap interval over genotypes; the noise ceiling is τ between the stand-alone Dice of "
             f"two training seeds (seeds: {seeds}). See [Reading the ranking](#reading-the-ranking).\n\n",
             ranking.reading + "\n\n",
             "| Proxy | τ vs stand-alone Dice | 95 % CI | Genotypes |\n|---|---:|---|---:|\n"]
    for name, e in [*ranking.taus.items(), ("ceiling", ranking.ceiling)]:
        tau, ci = _estimate_cells(e)
        if e is None:
            why = ("needs two training seeds of every genotype" if name == "ceiling"
                   else "not available")
            tau, ci = why, "–"
        parts.append(f"| {PROXY_NAMES[name]} | {tau} | {ci} | {e.n if e else 0} |\n")
    if ranking.notes:
        parts.append("\n" + "".join(f"- {n}\n" for n in ranking.notes))
    seed_list = sorted({k for g in ranking.genotypes for k in g.dice}, key=str)

    def num(v, fmt):
        return "–" if v is None or not math.isfinite(v) else format(v, fmt)

    parts.append("\n| Genotype | Kind | Params (M) | One-shot Dice | α score | "
                 + " | ".join(f"Dice seed {k}" for k in seed_list) + " | Dice mean |\n"
                 + "|---|---|" + "---:|" * (4 + len(seed_list)) + "\n")
    for g in ranking.genotypes:
        parts.append(f"| {g.label} | {g.kind} | {num(None if g.params is None else g.params / 1e6, '.3f')} | "
                     f"{num(g.oneshot_dice, '.4f')} | {num(g.alpha_score, '.4f')} | "
                     + " | ".join(num(g.dice.get(k), ".4f") for k in seed_list)
                     + f" | {g.dice_mean:.4f} |\n")
    return "".join(parts)


def field_markdown(ranking: Ranking, chart: Optional[Path]) -> str:
    """The "Searched vs random, as the field reports it" section (Yang et al., ICLR 2020)."""
    parts = ["\n## Searched vs random, as the field reports it\n\n"
             "Relative improvement of the searched genotype's mean stand-alone Dice over the mean random "
             "genotype, the probability that a searched genotype beats a random one (pairs of genotypes at "
             "each training seed, ties half), with bootstrap intervals over genotypes; and the random "
             "genotypes' Dice per decade of parameters, with how far the searched genotype lies above that size "
             "trend.\n\n"
             "| Dataset | Searched | Random | Genotypes (s/r) | Dice searched | Dice random | Rel. improvement | "
             "95 % CI | P(beats random) | 95 % CI | Params searched / random (M) | Slope per decade | "
             "Above size trend |\n|---|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|\n"]

    def num(v, fmt):
        return "–" if v is None or not math.isfinite(v) else format(v, fmt)

    for f in ranking.field:
        ri, pb = f.improvement, f.beats
        params = (f"{num(None if f.searched_params is None else f.searched_params / 1e6, '.3f')} / "
                  f"{num(None if f.random_params is None else f.random_params / 1e6, '.3f')}")
        parts.append(f"| {f.dataset} | {f.searched} | {f.random} | {f.n_searched}/{f.n_random} | "
                     f"{f.searched_mean:.4f} | {f.random_mean:.4f} | {num(100 * ri.value, '+.2f')} % | "
                     f"[{num(100 * ri.ci_low, '+.2f')}, {num(100 * ri.ci_high, '+.2f')}] % | "
                     f"{num(pb.value, '.2f')} | [{num(pb.ci_low, '.2f')}, {num(pb.ci_high, '.2f')}] | {params} | "
                     f"{num(f.slope, '+.4f')} | {num(f.above_trend, '+.4f')} |\n")
    for f in ranking.field:
        parts.append(f"\n- {field_words(f)}")
    parts.append("\n")
    if chart is not None:
        parts.append(f"\n![Dice vs log10(parameters)]({chart.name})\n")
    return "".join(parts)


def field_words(f) -> str:
    """One sentence per pair: does the searched genotype beat chance beyond genotype noise, and is
    that more than size?"""
    head = f"**{f.searched}** vs {f.random} ({f.dataset})"
    pb = f.beats
    if not math.isfinite(pb.ci_low):
        verdict = "P(beats random) has no interval"
    elif pb.ci_low > 0.5:
        verdict = f"beats a random genotype more often than not (P {pb.value:.2f}, interval above 0.5)"
    elif pb.ci_high < 0.5:
        verdict = f"loses to a random genotype more often than not (P {pb.value:.2f}, interval below 0.5)"
    else:
        verdict = f"is not told apart from a random genotype (P {pb.value:.2f}, interval includes 0.5)"
    size = ""
    if f.above_trend is not None:
        size = (f"; it lies {f.above_trend:+.4f} Dice from the random genotypes' size trend "
                f"({'above' if f.above_trend > 0 else 'not above'} it)")
    elif f.searched_params and f.random_params:
        size = (f"; size trend not measured (the random genotypes have one size), searched/random parameters "
                f"{f.searched_params / f.random_params:.2f}×")
    return f"{head}: {verdict}{size}."


def write_ranking(ranking: Ranking, md_path: Path, csv_path: Path) -> tuple[str, list[Path]]:
    """The two sections' Markdown and the files they need: `csv_path` (per genotype; the proxy
    cache), `<csv stem>_stats.csv` and the size chart."""
    from nas.plots.ranking import size_chart

    table = atomic_write_text(csv_path, ranking_csv(ranking))
    stats = atomic_write_text(csv_path.with_name(f"{csv_path.stem}_stats.csv"), ranking_stats_csv(ranking))
    chart = size_chart(ranking, md_path.with_name(f"{md_path.stem}_dice_vs_params.png"))
    return ranking_markdown(ranking) + field_markdown(ranking, chart), [table, stats, chart]


# ----------------------------------------------------------------------------- report
def _dataset_title(ds: DatasetComparison) -> str:
    if ds.dataset == TEST_SPLIT:
        return "Test split"
    scores = [r.scores[ds.dataset] for row in ds.table.rows for r in row.runs]
    sources = sorted({s.data for s in scores if s.data})
    images = sorted({s.images for s in scores if s.images is not None})
    detail = ", ".join(x for x in (", ".join(f"`{s}`" for s in sources),
                                   f"{'/'.join(map(str, images))} images" if images else "") if x)
    return f"Dataset `{ds.dataset}`" + (f" ({detail})" if detail else "")


def _dataset_section(ds: DatasetComparison, reference: Optional[str], md_path: Path,
                     written: list[Path]) -> str:
    parts = [f"\n## {_dataset_title(ds)}\n\n", table_markdown(ds.table)]
    parts.append("\nMean ± sample std over runs of the same model (seeds; random genotypes: samples × seeds); "
                 "**bold** = best (↑ higher is better, ↓ lower is better). Metrics are per-image means "
                 "(ISIC challenge definitions).\n")
    if ds.notes:
        parts.append("\n" + "".join(f"- {n}\n" for n in ds.notes))
    if ds.versus_reference:
        parts.append(f"\n### Paired differences vs {reference}\n\n")
        parts += [f"- {contrast_words(c)}{f' ({c.note})' if c.note else ''}\n" for c in ds.versus_reference]
        parts += ["\n", stats_markdown(ds.versus_reference)]
        chart = md_path.with_name(f"{md_path.stem}_{slug(ds.dataset)}_per_image.png")
        from nas.plots.compare import per_image_chart

        written.append(per_image_chart(ds.versus_reference, chart,
                                       title=f"Per-image Dice vs {reference} ({ds.dataset})"))
        parts.append(f"\n![per-image Dice vs {reference}]({chart.name})\n")
    if ds.searched_vs_random:
        parts.append("\n### Searched vs random\n\n")
        parts += [f"- {contrast_words(c)}{f' ({c.note})' if c.note else ''}\n" for c in ds.searched_vs_random]
        parts += ["\n", stats_markdown(ds.searched_vs_random)]
    gallery = _gallery(ds, md_path)
    if gallery:
        parts.append("\n### Best and worst cases\n")
        for label, path, why in gallery:
            if path is not None:
                written.append(path)
                parts.append(f"\n![{label}]({path.name})\n")
            else:
                parts.append(f"\n{label}: gallery not drawn ({why})\n")
    return "".join(parts)


def write_report(comparison: Comparison, out_path_md: str | Path, title: str = "Model comparison",
                 supernets: Optional[dict[str, list[Path]]] = None, ranking_path: Optional[Path] = None,
                 threads: Optional[int] = None) -> list[Path]:
    """Write `<name>.md`, `<name>.csv` (every table), `<name>_stats.csv` (paired statistics) and
    the charts next to it. Every file is written atomically. Returns the written paths,
    Markdown first.

    With random genotypes, also the ranking sections and `ranking_path` (default
    `<name>_ranking.csv`, also the cache of the supernet scores), its `_stats.csv` and the size
    chart; `supernets` (row label -> search runs) says which supernets score a row's genotypes
    (default: the genotype's `source: run:`)."""
    from nas.plots.compare import bar_chart, scatter_chart

    md_path = Path(out_path_md)
    if md_path.suffix != ".md":
        md_path = md_path.with_suffix(".md")
    charts: list[Path] = []
    first = comparison.datasets[0].table
    overview = [scatter_chart(first, md_path.with_name(f"{md_path.stem}_quality_vs_params.png")),
                bar_chart(first, md_path.with_name(f"{md_path.stem}_metrics.png"))]
    csv_path = atomic_write_text(md_path.with_suffix(".csv"), table_csv([d.table for d in comparison.datasets]))
    stats_path = atomic_write_text(md_path.with_name(f"{md_path.stem}_stats.csv"), stats_csv(comparison.datasets))
    parts = [f"# {title}\n\n"]
    if comparison.reference:
        parts.append(f"Reference: **{comparison.reference}** ({comparison.reference_reason}). Every other model "
                     f"is compared with it on the same images: mean paired difference Δ, its {LEVEL:.0%} bootstrap "
                     f"interval and a Wilcoxon signed-rank p (see [How to read the statistics]"
                     f"(#how-to-read-the-statistics)).\n")
    diffs = data_differences(comparison.results)
    if diffs:
        parts.append("\n**Warning: the runs did not use the same data settings**, so the rows are not "
                     "directly comparable: " + "; ".join(diffs) + ".\n")
    for ds in comparison.datasets:
        parts.append(_dataset_section(ds, comparison.reference, md_path, charts))
    ranking = build_ranking(comparison, supernets=supernets, threads=threads,
                            cache=ranking_path or md_path.with_name(f"{md_path.stem}_ranking.csv"))
    ranking_files: list[Path] = []
    if ranking is not None:
        text, ranking_files = write_ranking(ranking, md_path,
                                            ranking_path or md_path.with_name(f"{md_path.stem}_ranking.csv"))
        parts.append(text)
    parts.append(f"\n## Charts ({first.dataset})\n")
    parts += [f"\n![{p.stem}]({p.name})\n" for p in overview]
    parts.append("\n" + HOW_TO_READ)
    if ranking is not None:
        parts.append("\n" + HOW_TO_READ_RANKING)
    parts.append("\n## Runs\n\n| Model | Kind | Seed | Sample | Run folder |\n|---|---|---|---|---|\n")
    parts += [f"| {r.label} | {r.kind} | {r.seed if r.seed is not None else '–'} | "
              f"{r.sample if r.sample is not None else '–'} | `{r.run_dir}` |\n" for r in comparison.results]
    md = atomic_write_text(md_path, "".join(parts))
    return [md, csv_path, stats_path, *overview, *charts, *ranking_files]
