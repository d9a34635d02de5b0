"""Paired statistics for model comparisons: is "A beats B" more than seed and test-set noise?

Two models scored on the same test images give one per-image difference per image (and per
seed, when both were trained with the same seeds). From these, with numpy only and
deterministically (a fixed generator seed):

- **mean paired difference**: the mean over seeds of the mean over that seed's images;
- **95 % bootstrap interval** (percentile) of that mean, resampling what varies between
  repetitions of the experiment: the test images, where there are several the seeds
  (:func:`bootstrap_means`, two designs: *crossed* when every seed scored the same images,
  *nested* when each seed has its own test split), and where one side is a set of retrained
  random genotypes, the genotypes;
- **p-value** of the Wilcoxon signed-rank test on one difference per distinct image (its mean
  over the seeds that scored it), zeros dropped, tied |differences| given mid-ranks; exact
  (the full sign-flip distribution, computed by dynamic programming) up to
  :data:`EXACT_MAX_N` non-zero differences, normal approximation with tie and continuity
  correction above.

Why both: the p-value treats the images as the unit (do the two models differ on images like
these?), while the interval also carries the seed-to-seed spread of training. A difference is
called *within noise* when the interval contains 0 or p ≥ 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Optional, Sequence

import numpy as np

EXACT_MAX_N = 200  # exact signed-rank distribution up to this many non-zero differences
TIE_DECIMALS = 9  # differences are rounded to this before ranking: per-image CSVs hold 6 decimals, and
                  # 0.85 - 0.80 must tie with 0.75 - 0.70 (and 0.7 - 0.7 be zero) despite float error
N_BOOT = 10_000
BOOT_SEED = 0
LEVEL = 0.95
ALPHA = 0.05
_CHUNK = 1000  # bootstrap replicates drawn at a time (bounds memory to chunk x images)


# ----------------------------------------------------------------------------- signed-rank test
@dataclass(frozen=True)
class SignedRank:
    statistic: float  # W+, the sum of the ranks of the positive differences
    n: int            # non-zero differences (zeros are dropped)
    p: float          # two-sided
    method: str       # "exact", "normal" or "none" (no non-zero difference)


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`, ties sharing the mean of the ranks they span."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_vals = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_vals[end] != sorted_vals[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2.0
            start = end
    return ranks


def _exact_p(ranks: np.ndarray, w_plus: float) -> float:
    """Two-sided p of W+ under random signs: the distribution of the sum of a random subset of the
    (mid-)ranks, by dynamic programming over doubled ranks (mid-ranks are halves of integers)."""
    doubled = np.rint(2 * ranks).astype(np.int64)
    dist = np.zeros(int(doubled.sum()) + 1)
    dist[0] = 1.0
    for r in doubled:
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[:-r]
        dist = 0.5 * (dist + shifted)
    t = int(round(2 * w_plus))
    low, high = dist[:t + 1].sum(), dist[t:].sum()
    return float(min(1.0, 2.0 * min(low, high)))


def _normal_p(ranks: np.ndarray, w_plus: float) -> float:
    """Two-sided p of W+ by the normal approximation, with tie and continuity correction."""
    n = len(ranks)
    mean = n * (n + 1) / 4.0
    _, counts = np.unique(ranks, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(counts ** 3 - counts)) / 48.0
    if var <= 0:
        return 1.0
    dev = abs(w_plus - mean)
    z = max(dev - 0.5, 0.0) / math.sqrt(var)
    return float(min(1.0, math.erfc(z / math.sqrt(2.0))))


def signed_rank_test(differences: Sequence[float], exact_max_n: int = EXACT_MAX_N) -> SignedRank:
    """Wilcoxon signed-rank test of "the differences are symmetric around 0" (two-sided)."""
    d = np.asarray(differences, dtype=float)
    if not np.all(np.isfinite(d)):
        raise ValueError("signed_rank_test: differences must be finite")
    d = np.round(d, TIE_DECIMALS)
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return SignedRank(0.0, 0, 1.0, "none")
    ranks = midranks(np.abs(nonzero))
    w_plus = float(ranks[nonzero > 0].sum())
    if len(nonzero) <= exact_max_n:
        return SignedRank(w_plus, len(nonzero), _exact_p(ranks, w_plus), "exact")
    return SignedRank(w_plus, len(nonzero), _normal_p(ranks, w_plus), "normal")


# ----------------------------------------------------------------------------- bootstrap
def _counts(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """[rows, n]: how often each of n items is drawn in n draws with replacement, per row."""
    picks = rng.integers(n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n)


def bootstrap_means(layers: Sequence[np.ndarray], crossed: bool, n_boot: int = N_BOOT,
                    seed: int = BOOT_SEED, shared_samples: bool = False) -> np.ndarray:
    """Bootstrap replicates of the mean over layers (seeds) of the mean over images.

    `layers` holds one array of per-image values per seed. *Crossed* (every layer has the same
    images, in the same order): each replicate draws the seeds with replacement and, once, the
    images with replacement, shared by every drawn seed (an image is hard or easy for every
    model). *Nested* (each seed has its own images): each replicate draws the seeds with
    replacement and, for every drawn seed, its own images with replacement. One layer: a plain
    bootstrap over images.

    A layer may also be 2-D, ``[samples, images]``: one side is a set of random genotypes, each
    retrained (`samples`). Each replicate then also draws the samples with replacement, once for
    all seeds when `shared_samples` (the same genotypes retrained at every seed, same order in
    every layer), else once per seed layer (a seed drawn twice keeps its draw: slightly wider than
    independent draws), so that the interval carries the spread between genotypes too:
    a searched genotype must beat random genotypes, not the few that happened to be drawn.
    """
    arrays = [np.atleast_2d(np.asarray(x, dtype=float)) for x in layers]  # [samples, images] each
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("bootstrap_means: every layer needs at least one value")
    if shared_samples and len({a.shape[0] for a in arrays}) != 1:
        raise ValueError("bootstrap_means: shared samples need the same number of samples in every layer")
    resample = any(a.shape[0] > 1 for a in arrays)
    rng = np.random.default_rng(seed)
    s = len(arrays)
    out = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        b = min(start + _CHUNK, n_boot) - start
        if not resample:
            values = [np.broadcast_to(a[0], (b, a.shape[1])) for a in arrays]
        elif shared_samples:
            weights = _counts(rng, arrays[0].shape[0], b) / arrays[0].shape[0]
            values = [weights @ a for a in arrays]  # per layer [b, images]
        else:
            values = [(_counts(rng, a.shape[0], b) / a.shape[0]) @ a for a in arrays]
        seed_counts = _counts(rng, s, b) if s > 1 else np.ones((b, 1))
        if crossed:
            n = values[0].shape[1]
            image_counts = _counts(rng, n, b)
            out[start:start + b] = np.einsum("bs,bsn,bn->b", seed_counts, np.stack(values, 1), image_counts) / (s * n)
            continue
        total = np.zeros(b)  # nested: each drawn copy of a seed draws its own images
        for layer in range(s):
            n = values[layer].shape[1]
            for copy in range(int(seed_counts[:, layer].max())):
                rows = np.flatnonzero(seed_counts[:, layer] > copy)
                total[rows] += (_counts(rng, n, len(rows)) * values[layer][rows]).sum(1) / n
        out[start:start + b] = total / s
    return out


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- paired difference
Layers = Mapping[Hashable, Mapping[str, "float | Sequence[float]"]]
"""seed -> image id -> value, or one value per retrained random genotype (sample) of that seed."""


class PairingError(ValueError):
    """The two sides were not scored on the same images (the message says where they differ)."""


@dataclass(frozen=True)
class PairedDiff:
    mean: float              # model - reference
    ci_low: float
    ci_high: float
    p: float
    test: SignedRank
    n_images: int            # distinct images
    n_seeds: int             # seed layers the difference was averaged over
    n_samples: int           # random genotypes per seed the interval resamples (1: none)
    pairing: str             # "by seed" or "seed means"
    design: str              # bootstrap design: "images", "crossed" or "nested"
    ids: tuple[str, ...]     # distinct images, sorted
    model_values: np.ndarray      # per distinct image: the model's value (mean over seeds)
    reference_values: np.ndarray  # per distinct image: the reference's value (mean over seeds)

    @property
    def size_text(self) -> str:
        """What the interval resamples: `14 × 3` (images × seeds), `14 × 3 × 4 genotypes` with samples."""
        text = f"{self.n_images} × {self.n_seeds}"
        return f"{text} × {self.n_samples} genotypes" if self.n_samples > 1 else text

    @property
    def within_noise(self) -> bool:
        return self.ci_low <= 0.0 <= self.ci_high or self.p >= ALPHA

    @property
    def verdict(self) -> str:
        if self.within_noise:
            return "within noise"
        return "higher" if self.mean > 0 else "lower"


def _differing(a: set[str], b: set[str]) -> str:
    diff = sorted(a ^ b)
    return f"{len(diff)} ids differ, e.g. {diff[0]}"


def _samples(value: "float | Sequence[float]") -> np.ndarray:
    return np.atleast_1d(np.asarray(value, dtype=float))


def _seed_means(layers: Layers, side: str, keep_samples: bool) -> dict[str, np.ndarray]:
    """image id -> value averaged over the seeds (per sample when `keep_samples`, else also over
    the samples)."""
    ids = None
    for seed, values in layers.items():
        if ids is None:
            ids = set(values)
        elif set(values) != ids:
            raise PairingError(f"{side}: seeds scored different images ({_differing(ids, set(values))}); "
                               f"they can only be paired seed by seed with a reference trained on the same seeds")
    out = {}
    for i in sorted(ids or ()):
        stacked = np.stack([_samples(layers[s][i]) for s in layers])  # [seeds, samples]
        out[i] = stacked.mean(0) if keep_samples else np.atleast_1d(stacked.mean())
    return out


def _layer(m: Mapping[str, np.ndarray], r: Mapping[str, np.ndarray], ids: list[str]) -> np.ndarray:
    """[samples, images] differences m - r of one layer. At most one side keeps its samples: when
    both are sets of random genotypes, the model side is averaged."""
    ma = np.stack([_samples(m[i]) for i in ids], axis=1)
    ra = np.stack([_samples(r[i]) for i in ids], axis=1)
    if ma.shape[0] > 1 and ra.shape[0] > 1:
        ma = ma.mean(0, keepdims=True)
    return ma - ra


def paired_difference(model: Layers, reference: Layers, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      level: float = LEVEL, shared_samples: bool = False) -> PairedDiff:
    """Paired difference model - reference, per image.

    When both sides have the same seeds, images are paired within each seed (seed s of the
    model with seed s of the reference, which saw the same split). Otherwise each side is first
    averaged per image over its seeds, which needs every seed of a side to have scored the same
    images. Either way both sides must have scored exactly the same images (else
    :class:`PairingError`).

    A side whose values are sequences is a set of random genotypes (one value per sample); the
    interval then also resamples the genotypes (`shared_samples`: the same genotypes, in the same
    order, at every seed; see :func:`bootstrap_means`), the mean and the p-value use their mean.
    """
    if not model or not reference:
        raise ValueError("paired_difference: both sides need at least one seed")
    if set(model) == set(reference):
        pairing = "by seed"
        layer_ids, layer_diffs = [], []
        for s in sorted(model, key=str):
            m, r = model[s], reference[s]
            if set(m) != set(r):
                raise PairingError(f"seed {s}: model and reference scored different images "
                                   f"({_differing(set(m), set(r))})")
            ids = sorted(m)
            layer_ids.append(ids)
            layer_diffs.append(_layer(m, r, ids))
        per_image: dict[str, list[tuple[float, float]]] = {}
        for s in sorted(model, key=str):
            for i in model[s]:
                per_image.setdefault(i, []).append((float(_samples(model[s][i]).mean()),
                                                    float(_samples(reference[s][i]).mean())))
    else:
        pairing = "seed means"
        m = _seed_means(model, "model", shared_samples)
        r = _seed_means(reference, "reference", shared_samples)
        if set(m) != set(r):
            raise PairingError(f"model and reference scored different images ({_differing(set(m), set(r))})")
        ids = sorted(m)
        layer_ids, layer_diffs = [ids], [_layer(m, r, ids)]
        per_image = {i: [(float(m[i].mean()), float(r[i].mean()))] for i in ids}
    if any(x.shape[1] == 0 for x in layer_diffs):
        raise PairingError("no images to pair")
    shared = shared_samples and len({x.shape[0] for x in layer_diffs}) == 1
    crossed = all(ids == layer_ids[0] for ids in layer_ids)
    design = "images" if len(layer_diffs) == 1 else ("crossed" if crossed else "nested")
    mean = float(np.mean([x.mean() for x in layer_diffs]))
    lo, hi = percentile_interval(bootstrap_means(layer_diffs, crossed, n_boot, seed, shared), level)
    distinct = sorted(per_image)
    model_values = np.array([np.mean([p[0] for p in per_image[i]]) for i in distinct])
    ref_values = np.array([np.mean([p[1] for p in per_image[i]]) for i in distinct])
    test = signed_rank_test(model_values - ref_values)
    return PairedDiff(mean=mean, ci_low=lo, ci_high=hi, p=test.p, test=test,
                      n_images=len(distinct), n_seeds=len(layer_diffs),
                      n_samples=max(x.shape[0] for x in layer_diffs), pairing=pairing, design=design,
                      ids=tuple(distinct), model_values=model_values, reference_values=ref_values)


def format_p(p: Optional[float]) -> str:
    """`0.032`, `< 0.001`, `1.00`: readable, never a misleading `0.000`."""
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.995 else "1.00"


# ----------------------------------------------------------------------------- rank agreement
def _signs(values: np.ndarray) -> np.ndarray:
    """[n, n] sign(values_i - values_j), after rounding to TIE_DECIMALS (ties are exact ties)."""
    v = np.round(np.asarray(values, dtype=float), TIE_DECIMALS)
    return np.sign(v[:, None] - v[None, :])


def _tau_from_signs(sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """τ-b of sign matrices [..., n, n]: concordant minus discordant pairs over the root of the
    product of the pairs untied in x and untied in y (NaN when either side is all ties)."""
    num = (sx * sy).sum((-1, -2))
    den = np.sqrt(np.abs(sx).sum((-1, -2)) * np.abs(sy).sum((-1, -2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two paired samples (ties in either corrected for); NaN when one side is
    constant or there are fewer than two pairs. Rank agreement, not linear fit: the question is
    whether a proxy orders architectures as their trained scores do (Yu et al., ICLR 2020)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("kendall_tau_b: x and y must be 1-D of the same length")
    if len(x) < 2:
        return math.nan
    return float(_tau_from_signs(_signs(x), _signs(y)))


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile bootstrap interval (NaN where it is undefined)."""

    value: float
    ci_low: float
    ci_high: float
    n: int  # units resampled (genotypes)

    @property
    def interval_includes_zero(self) -> bool:
        return not (self.ci_low > 0.0 or self.ci_high < 0.0)


def _nan_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return math.nan, math.nan
    return percentile_interval(finite, level)


def _index_draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(n, size=(n_boot, n))


def mean_tau_b(columns: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], n_boot: int = N_BOOT,
               seed: int = BOOT_SEED, level: float = LEVEL) -> Estimate:
    """Mean τ-b over `pairs` of `columns` (each a value per genotype, same order), with a
    percentile interval that resamples the genotypes (the same draw for every pair). One pair
    (proxy, stand-alone Dice) is a proxy's τ; the pairs of training seeds give the noise ceiling.
    Replicates where τ is undefined (a draw of ties only) are left out of the interval."""
    cols = [np.asarray(c, dtype=float) for c in columns]
    n = len(cols[0])
    if not pairs or any(len(c) != n for c in cols):
        raise ValueError("mean_tau_b: columns of one length and at least one pair expected")
    signs = [_signs(c) for c in cols]
    value = float(np.mean([_tau_from_signs(signs[a], signs[b]) for a, b in pairs])) if n >= 2 else math.nan
    if n < 2 or not math.isfinite(value):
        return Estimate(value, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK * 50 // max(n * n, 1))
    for start in range(0, n_boot, chunk):
        idx = _index_draws(rng, n, min(chunk, n_boot - start))
        rows, cols_ = idx[:, :, None], idx[:, None, :]
        out[start:start + len(idx)] = np.mean([_tau_from_signs(signs[a][rows, cols_], signs[b][rows, cols_])
                                               for a, b in pairs], axis=0)
    lo, hi = _nan_interval(out, level)
    return Estimate(value, lo, hi, n)


# ----------------------------------------------------------------------------- searched vs random
def _genotype_means(values: np.ndarray) -> np.ndarray:
    """[genotypes, seeds] (NaN = not trained at that seed) -> mean over the seeds each has."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(values, axis=1)


def relative_improvement(searched: np.ndarray, random: np.ndarray) -> float:
    """(mean searched − mean random) / mean random over genotypes (each the mean of its seeds),
    the "relative improvement" of Yang et al. (ICLR 2020, "NAS evaluation is frustratingly hard")."""
    s, r = _genotype_means(np.atleast_2d(searched)).mean(), _genotype_means(np.atleast_2d(random)).mean()
    return float((s - r) / r) if r != 0 else math.nan


def beat_probability(searched: np.ndarray, random: np.ndarray) -> float:
    """Share of (searched genotype, random genotype) pairs, per training seed both have, where the
    searched one scores higher (ties count half): P(a searched genotype beats a random one)."""
    s, r = np.atleast_2d(np.asarray(searched, float)), np.atleast_2d(np.asarray(random, float))
    diff = s[:, None, :] - r[None, :, :]  # [S, R, seeds]
    diff = np.round(diff, TIE_DECIMALS)
    valid = np.isfinite(diff)
    if not valid.any():
        return math.nan
    wins = (diff > 0) + 0.5 * (diff == 0)
    return float(wins[valid].mean())


def two_sample_bootstrap(statistic, searched: np.ndarray, random: np.ndarray, n_boot: int = N_BOOT,
                         seed: int = BOOT_SEED, level: float = LEVEL) -> Estimate:
    """`statistic(searched, random)` ([genotypes, seeds] each) with a percentile interval that
    resamples the searched and the random genotypes separately (rows, with replacement): the
    claim is about genotypes the search and chance give, not the few that were trained."""
    s, r = np.atleast_2d(np.asarray(searched, float)), np.atleast_2d(np.asarray(random, float))
    value = float(statistic(s, r))
    rng = np.random.default_rng(seed)
    out = np.array([statistic(s[rng.integers(len(s), size=len(s))], r[rng.integers(len(r), size=len(r))])
                    for _ in range(n_boot)])
    lo, hi = _nan_interval(out, level)
    return Estimate(value, lo, hi, len(s) + len(r))


def size_trend(log_params: Sequence[float], dice: Sequence[float]) -> Optional[tuple[float, float]]:
    """(slope, intercept) of the least-squares line Dice = intercept + slope · log10(params), or
    None with fewer than two distinct sizes: the size trend a searched genotype is judged against."""
    x, y = np.asarray(log_params, float), np.asarray(dice, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(np.round(x, TIE_DECIMALS))) < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)
