"""Ranking validity and the field's searched-vs-random statistics, for comparisons with random genotypes.

A search claims that it orders architectures better than chance. Two questions check that claim
(issue 21, items 3-4), and both need the random genotypes retrained beside the searched one:

- **Ranking validity** (Yu et al., ICLR 2020, "Evaluating the search phase of NAS"). For every
  genotype (searched and random): its one-shot score (inherited supernet weights, validation
  Dice), its α score and its parameter count, each ranked against the genotype's stand-alone test
  Dice by Kendall τ-b with a bootstrap interval over genotypes, next to the **noise ceiling**: τ
  between the stand-alone Dice of two training seeds of the same genotypes. A proxy cannot rank
  better than the training noise lets the data rank.
- **Searched vs random as the field reports it** (Yang et al., ICLR 2020, "NAS evaluation is
  frustratingly hard"): relative improvement over the mean random genotype, P(a searched genotype
  beats a random one), and Dice against log10(parameters) so that "beats random" is not just
  "is larger".

The statistics take plain inputs (:class:`GenotypeScores`); only :func:`gather_proxies` touches a
supernet, through `nas.oneshot`, and caches what it computed in `ranking.csv` so that a rebuilt
report does not recompute it. Rendering is in :mod:`nas.report` and :mod:`nas.plots.ranking`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from nas.comparison import TEST_SPLIT, Comparison, RunResult, compare_table, genotype_source
from nas.errors import UserError
from nas.stats import (BOOT_SEED, N_BOOT, Estimate, beat_probability, mean_tau_b, relative_improvement,
                       size_trend, two_sample_bootstrap)
from nas.textfiles import read_csv

if TYPE_CHECKING:  # pragma: no cover
    from nas.suite import Suite

PROXIES = ("oneshot_dice", "alpha_score", "params")
PROXY_NAMES = {"oneshot_dice": "one-shot Dice (supernet)", "alpha_score": "α score", "params": "parameter count",
               "ceiling": "noise ceiling (seed vs seed)"}
MIN_GENOTYPES = 4  # fewer genotypes than this: no ranking statement at all
CSV_FIXED = ("label", "kind", "row", "genotype", "supernet", "params", "oneshot_dice", "alpha_score")


# ----------------------------------------------------------------------------- inputs
@dataclass
class GenotypeScores:
    """One genotype of a comparison: its stand-alone test Dice per training seed and its proxies."""

    label: str  # the row label, or `<row>-sample<j>` for a random sample
    kind: str  # searched | random
    row: str  # the comparison row it belongs to
    dice: dict[Any, float]  # training seed -> stand-alone test Dice (mean of that seed's runs)
    params: Optional[float] = None
    genotype: str = ""  # the genotype file retrained
    supernet: Optional[tuple[Path, ...]] = None  # the search run(s) whose supernets score it (mean)
    oneshot_dice: Optional[float] = None
    alpha_score: Optional[float] = None

    @property
    def dice_mean(self) -> float:
        return float(np.mean(list(self.dice.values())))

    def proxy(self, name: str) -> Optional[float]:
        return getattr(self, name)

    @property
    def supernet_key(self) -> str:
        """The supernet folders as one text (cache key and CSV cell): `a;b` for several."""
        return "" if self.supernet is None else ";".join(str(p) for p in self.supernet)


@dataclass(frozen=True)
class FieldStats:
    """Searched row vs random row as Yang et al. report it, on one dataset."""

    dataset: str
    searched: str
    random: str
    n_searched: int
    n_random: int
    searched_mean: float  # mean over genotypes of the mean over seeds
    random_mean: float
    improvement: Estimate  # relative improvement over the mean random genotype
    beats: Estimate  # P(searched genotype beats random genotype), per seed
    searched_params: Optional[float]
    random_params: Optional[float]
    slope: Optional[float]  # Dice per decade of parameters over the random genotypes
    above_trend: Optional[float]  # searched mean Dice minus the random trend at its size


@dataclass
class Ranking:
    dataset: str
    genotypes: list[GenotypeScores]
    seeds: list[Any]  # training seeds every genotype has (the ceiling's)
    taus: dict[str, Optional[Estimate]]  # proxy -> τ vs mean stand-alone Dice (None: not available)
    ceiling: Optional[Estimate]
    field: list[FieldStats]
    baselines: list[tuple[str, float, float]]  # (label, params, Dice) for the size chart
    notes: list[str] = field(default_factory=list)
    reading: str = ""


# ----------------------------------------------------------------------------- from run folders
def _summary_genotype(run: RunResult) -> str:
    import json

    try:
        summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(summary.get("genotype") or "") if isinstance(summary, dict) else ""


def located_supernet(run: RunResult) -> Optional[tuple[Path, ...]]:
    """The search run a plain run's genotype came from: the genotype's `source: run:` (written by
    `nas discretize RUN`, with or without --random), when that folder still holds a checkpoint."""
    import json

    try:
        summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = genotype_source(run.run_dir, summary if isinstance(summary, dict) else {}) or {}
    path = source.get("run")
    if not isinstance(path, str) or not path:
        return None
    return _with_checkpoints([Path(path)])


def _with_checkpoints(paths: Sequence[Path]) -> Optional[tuple[Path, ...]]:
    """The search runs that hold a checkpoint (None when none does)."""
    have = tuple(Path(p) for p in paths if (Path(p) / "checkpoints" / "last.pt").is_file())
    return have or None


def suite_supernets(suite: "Suite", out_dir: Path) -> dict[str, list[Path]]:
    """Row label -> the suite's search runs whose supernets score that row's genotypes: a search
    entry's own (every seed's, for an entry with several search seeds), and for a random entry
    those of the search entry it was sampled for (`random: {from:}`), so that a searched genotype
    and its random controls are ranked in the same supernets."""
    def runs(entry_name: str) -> list[Path]:
        return [Path(out_dir) / run for _, run, _ in suite.search_runs(suite.entry(entry_name))]

    out = {}
    for entry in suite.entries:
        if entry.search is not None:
            out[entry.name] = runs(entry.name)
        elif entry.random is not None and entry.random.source is not None:
            out[entry.name] = runs(entry.random.source)
    return out


def genotype_scores(comparison: Comparison, dataset: str = TEST_SPLIT,
                    supernets: Optional[Mapping[str, Sequence[Path]]] = None) -> list[GenotypeScores]:
    """Every searched and random genotype counted on `dataset`, its Dice per seed and parameters.
    `supernets` (row label -> search run) overrides the run's own genotype source."""
    table = compare_table(comparison.results, dataset=dataset)
    found: dict[tuple[str, Any, str], GenotypeScores] = {}
    per_seed: dict[tuple[str, Any, str], dict[Any, list[float]]] = {}
    params: dict[tuple[str, Any, str], list[float]] = {}
    for row in table.rows:
        for run in row.runs:
            if run.kind not in ("searched", "random"):
                continue
            genotype = _summary_genotype(run)
            key = (row.label, run.sample, genotype)
            if key not in found:
                label = row.label if run.sample is None else f"{row.label}-sample{run.sample}"
                if supernets is not None and row.label in supernets:
                    supernet = _with_checkpoints(supernets[row.label])
                else:
                    supernet = located_supernet(run)
                found[key] = GenotypeScores(label, run.kind, row.label, {}, genotype=genotype, supernet=supernet)
            per_seed.setdefault(key, {}).setdefault(run.seed, []).append(run.scores[dataset].test["dice"])
            if run.params is not None:
                params.setdefault(key, []).append(run.params)
    labels: dict[str, int] = {}
    for key, g in found.items():
        g.dice = {seed: float(np.mean(v)) for seed, v in per_seed[key].items()}
        g.params = float(np.mean(params[key])) if key in params else None
        labels[g.label] = labels.get(g.label, 0) + 1
    for g in found.values():  # one row with several genotype files (e.g. one per search seed)
        if labels[g.label] > 1:
            g.label = f"{g.label}:{Path(g.genotype).stem}"
    return list(found.values())


# ----------------------------------------------------------------------------- proxies (cached)
def read_cache(path: Optional[Path]) -> dict[tuple[str, str, str], dict[str, Optional[float]]]:
    """(label, genotype, supernet) -> cached proxy values of an earlier `ranking.csv`."""
    if path is None or not Path(path).is_file():
        return {}
    out = {}
    for row in read_csv(Path(path), "ranking cache")[1]:
        values = {}
        for name in ("oneshot_dice", "alpha_score"):
            try:
                values[name] = float(row[name]) if row.get(name) not in (None, "") else None
            except ValueError:
                raise UserError(f"{path}: {name} of {row.get('label')} is not a number: {row[name]!r}") from None
        out[(row.get("label", ""), row.get("genotype", ""), row.get("supernet", ""))] = values
    return out


def gather_proxies(genotypes: Sequence[GenotypeScores], cache: Optional[Path] = None,
                   threads: Optional[int] = None) -> list[str]:
    """Fill in the one-shot and α scores of every genotype with a supernet, from `cache` where it
    holds them, else through `nas.oneshot`. Returns notes on what could not be scored."""
    cached = read_cache(cache)
    notes: list[str] = []
    todo = []
    for g in genotypes:
        if g.supernet is None:
            continue
        hit = cached.get((g.label, g.genotype, g.supernet_key), {})
        g.oneshot_dice, g.alpha_score = hit.get("oneshot_dice"), hit.get("alpha_score")
        if g.oneshot_dice is None or g.alpha_score is None:
            todo.append(g)
    missing = [g.label for g in genotypes if g.supernet is None]
    if missing:
        notes.append(f"no supernet checkpoint found for {', '.join(missing)}: no one-shot or α score "
                     f"(a genotype's search run is its `source: run:`, or the suite's search entry)")
    if not todo:
        return notes
    try:
        from nas.oneshot import alpha_score, oneshot_score
    except ImportError:
        notes.append("one-shot and α scores need nas.oneshot, which this installation lacks")
        return notes
    for g in todo:
        try:
            # several supernets (a search entry with several seeds): the mean score over them, so
            # that every genotype of the entry is scored alike, whichever seed found it
            if g.oneshot_dice is None:
                g.oneshot_dice = float(np.mean([oneshot_score(p, g.genotype, threads=threads).dice
                                                for p in g.supernet]))
            if g.alpha_score is None:
                g.alpha_score = float(np.mean([alpha_score(p, g.genotype) for p in g.supernet]))
        except UserError as exc:
            notes.append(f"{g.label}: not scored in {g.supernet_key} ({exc})")
    return notes


# ----------------------------------------------------------------------------- statistics
def common_seeds(genotypes: Sequence[GenotypeScores]) -> list[Any]:
    """Training seeds every genotype was trained with (the noise ceiling pairs them)."""
    if not genotypes:
        return []
    seeds = set(genotypes[0].dice)
    for g in genotypes[1:]:
        seeds &= set(g.dice)
    return sorted(seeds, key=str)


def proxy_taus(genotypes: Sequence[GenotypeScores], n_boot: int = N_BOOT,
               seed: int = BOOT_SEED) -> dict[str, Optional[Estimate]]:
    """τ-b of each proxy against the mean stand-alone Dice, over the genotypes that have it."""
    out: dict[str, Optional[Estimate]] = {}
    for name in PROXIES:
        have = [g for g in genotypes if g.proxy(name) is not None]
        if len(have) < 2:
            out[name] = None
            continue
        out[name] = mean_tau_b([[g.proxy(name) for g in have], [g.dice_mean for g in have]], [(0, 1)],
                               n_boot=n_boot, seed=seed)
    return out


def noise_ceiling(genotypes: Sequence[GenotypeScores], n_boot: int = N_BOOT,
                  seed: int = BOOT_SEED) -> Optional[Estimate]:
    """τ-b between the stand-alone Dice of two training seeds over the same genotypes (the mean
    over seed pairs with three or more seeds); None with fewer than two common seeds."""
    seeds = common_seeds(genotypes)
    if len(seeds) < 2 or len(genotypes) < 2:
        return None
    columns = [[g.dice[s] for g in genotypes] for s in seeds]
    pairs = [(a, b) for a in range(len(seeds)) for b in range(a + 1, len(seeds))]
    return mean_tau_b(columns, pairs, n_boot=n_boot, seed=seed)


def _by_seed(genotypes: Sequence[GenotypeScores], seeds: Sequence[Any]) -> np.ndarray:
    """[genotypes, seeds] stand-alone Dice, NaN where a genotype was not trained at a seed."""
    return np.array([[g.dice.get(s, math.nan) for s in seeds] for g in genotypes], dtype=float)


def _mean_params(genotypes: Sequence[GenotypeScores]) -> Optional[float]:
    values = [g.params for g in genotypes if g.params is not None]
    return float(np.mean(values)) if len(values) == len(genotypes) and values else None


def field_stats(genotypes: Sequence[GenotypeScores], searched: str, random: str, dataset: str = TEST_SPLIT,
                n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Optional[FieldStats]:
    """Yang et al.'s numbers for one (searched row, random row) pair; None when a side is empty."""
    s = [g for g in genotypes if g.row == searched]
    r = [g for g in genotypes if g.row == random]
    if not s or not r:
        return None
    seeds = sorted({k for g in [*s, *r] for k in g.dice}, key=str)
    sv, rv = _by_seed(s, seeds), _by_seed(r, seeds)
    improvement = two_sample_bootstrap(relative_improvement, sv, rv, n_boot=n_boot, seed=seed)
    beats = two_sample_bootstrap(beat_probability, sv, rv, n_boot=n_boot, seed=seed)
    trend = None
    if all(g.params and g.params > 0 for g in r):
        trend = size_trend([math.log10(g.params) for g in r], [g.dice_mean for g in r])
    s_params = _mean_params(s)
    above = None
    s_mean = float(np.mean([g.dice_mean for g in s]))
    if trend is not None and s_params and s_params > 0:
        above = s_mean - (trend[1] + trend[0] * math.log10(s_params))
    return FieldStats(dataset=dataset, searched=searched, random=random, n_searched=len(s), n_random=len(r),
                      searched_mean=s_mean, random_mean=float(np.mean([g.dice_mean for g in r])),
                      improvement=improvement, beats=beats, searched_params=s_params, random_params=_mean_params(r),
                      slope=trend[0] if trend else None, above_trend=above)


def _significant(e: Optional[Estimate]) -> bool:
    """A τ whose interval lies above 0."""
    return e is not None and math.isfinite(e.ci_low) and e.ci_low > 0.0


def _tau_text(e: Estimate) -> str:
    return f"τ {e.value:+.2f} [{e.ci_low:+.2f}, {e.ci_high:+.2f}]"


def reading(ranking: Ranking) -> str:
    """One paragraph choosing which reading applies. Thresholds: fewer than MIN_GENOTYPES
    genotypes = too few to rank; the ceiling "≈ 0" = its interval includes 0 (or it is undefined);
    a proxy "ranks them" = its τ interval lies above 0."""
    n = len(ranking.genotypes)
    if n < MIN_GENOTYPES:
        return (f"**Too few genotypes to rank**: {n} (searched and random) with stand-alone scores; a ranking "
                f"statement needs at least {MIN_GENOTYPES}. Retrain more random samples.")
    one, alpha, size = (ranking.taus.get(p) for p in PROXIES)
    ceiling = ranking.ceiling
    parts = []
    if ceiling is None:
        parts.append("The noise ceiling cannot be measured (each genotype needs at least two training seeds), so "
                     "whether these data can rank the architectures at all is unknown.")
    elif not math.isfinite(ceiling.value) or ceiling.ci_low <= 0.0:
        shown = _tau_text(ceiling) if math.isfinite(ceiling.value) else "undefined: every genotype ties"
        return (f"**The data cannot rank these architectures**: two training seeds of the same genotypes do not "
                f"agree on their order (noise ceiling {shown}; its interval includes 0). No proxy, and no "
                f"search, can be judged against a ranking the training noise does not reproduce; train more "
                f"seeds, a longer schedule or on more test images before reading the proxies.")
    else:
        parts.append(f"Training seeds agree on the order (noise ceiling {_tau_text(ceiling)}).")
    if _significant(alpha):
        parts.append(f"**The search ranks them**: the α score orders the genotypes as their stand-alone Dice does "
                     f"({_tau_text(alpha)}).")
    elif _significant(one):
        tail = f" ({_tau_text(alpha)})" if alpha is not None else " (no α score available)"
        parts.append(f"**The supernet ranks them but α do not**: one-shot Dice agrees with stand-alone Dice "
                     f"({_tau_text(one)}), the α score does not{tail}. Select operations by their effect on the "
                     f"supernet (perturbation-based discretization, Wang et al., ICLR 2021) rather than by α.")
    elif one is None and alpha is None:
        parts.append("No one-shot or α score is available, so the search's ranking cannot be judged here.")
    else:
        parts.append("**Neither the supernet nor α rank them**: no proxy's τ interval lies above 0 "
                     + "; ".join(f"{PROXY_NAMES[p]} {_tau_text(e)}" for p, e in (("oneshot_dice", one),
                                                                                   ("alpha_score", alpha)) if e)
                     + ".")
    if _significant(size):
        parts.append(f"Parameter count alone also ranks them ({_tau_text(size)}): compare at matched size.")
    return " ".join(parts)


def build_ranking(comparison: Comparison, supernets: Optional[Mapping[str, Sequence[Path]]] = None,
                  cache: Optional[Path] = None, proxies: bool = True, threads: Optional[int] = None,
                  random_pairs: Optional[Sequence[tuple[str, str]]] = None, n_boot: int = N_BOOT) -> Optional[Ranking]:
    """The ranking validity and field statistics of a comparison, or None when it has no random
    genotypes. Ranking on the first dataset (the test split); field statistics on every dataset, for
    `random_pairs` (searched row, random row), by default the comparison's searched-vs-random pairs.
    `proxies=False` skips the supernet scores (only cached values are read)."""
    first = comparison.datasets[0].dataset
    genotypes = genotype_scores(comparison, first, supernets)
    if not any(g.kind == "random" for g in genotypes):
        return None
    notes = gather_proxies(genotypes, cache, threads) if proxies else []
    if not proxies:
        cached = read_cache(cache)
        for g in genotypes:
            hit = cached.get((g.label, g.genotype, g.supernet_key), {})
            g.oneshot_dice, g.alpha_score = hit.get("oneshot_dice"), hit.get("alpha_score")
    supernets_used = {g.supernet_key for g in genotypes if g.supernet is not None}
    if len(supernets_used) > 1:
        notes.append(f"the genotypes were scored in {len(supernets_used)} supernets; one-shot and α scores of "
                     f"different supernets are ranked together")
    field_rows = []
    for ds in comparison.datasets:
        gs = genotypes if ds.dataset == first else genotype_scores(comparison, ds.dataset, supernets)
        rows = {g.row: g.kind for g in gs}
        pairs = random_pairs or [(c.model, c.reference) for c in ds.searched_vs_random] or [
            (s, r) for s, k in rows.items() if k == "searched" for r, kr in rows.items() if kr == "random"]
        field_rows += [f for s, r in pairs if (f := field_stats(gs, s, r, ds.dataset, n_boot)) is not None]
    table = comparison.datasets[0].table
    baselines = [(row.label, row.stats["params"].mean, row.stats["dice"].mean) for row in table.rows
                 if row.kind == "baseline" and row.stats.get("params") and row.stats.get("dice")]
    result = Ranking(dataset=first, genotypes=genotypes, seeds=common_seeds(genotypes),
                     taus=proxy_taus(genotypes, n_boot), ceiling=noise_ceiling(genotypes, n_boot),
                     field=field_rows, baselines=baselines, notes=notes)
    result.reading = reading(result)
    return result


# ----------------------------------------------------------------------------- files
def _num(value: Optional[float]) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def ranking_csv(ranking: Ranking) -> str:
    """Per genotype: label, kind, row, genotype file, supernet, params, oneshot_dice, alpha_score,
    stand-alone Dice per training seed (`dice_seed<k>`) and their mean (`dice_mean`)."""
    seeds = sorted({s for g in ranking.genotypes for s in g.dice}, key=str)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CSV_FIXED, *(f"dice_seed{s}" for s in seeds), "dice_mean"])
    for g in ranking.genotypes:
        writer.writerow([g.label, g.kind, g.row, g.genotype, g.supernet_key,
                         _num(g.params), _num(g.oneshot_dice), _num(g.alpha_score),
                         *(_num(g.dice.get(s)) for s in seeds), _num(g.dice_mean)])
    return buf.getvalue()


def ranking_stats_csv(ranking: Ranking) -> str:
    """proxy, tau, ci_low, ci_high, n_genotypes: one row per proxy and one `ceiling` row (empty
    values where not available)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["proxy", "tau", "ci_low", "ci_high", "n_genotypes"])
    for name, e in [*ranking.taus.items(), ("ceiling", ranking.ceiling)]:
        if e is None:
            writer.writerow([name, "", "", "", 0])
        else:
            writer.writerow([name, _num(e.value), _num(e.ci_low), _num(e.ci_high), e.n])
    return buf.getvalue()
