"""nas.stats against hand-computed cases and exhaustive enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nas.stats import (PairingError, bootstrap_means, format_p, midranks, paired_difference,
                       percentile_interval, signed_rank_test)


def brute_force_p(d: np.ndarray) -> float:
    """Two-sided p of W+ by enumerating all 2^n sign patterns of the non-zero |d| (mid-ranks)."""
    nz = d[d != 0]
    ranks = midranks(np.abs(nz))
    w = ranks[nz > 0].sum()
    sums = np.array([sum(r for r, s in zip(ranks, signs) if s)
                     for signs in itertools.product((0, 1), repeat=len(nz))])
    return min(1.0, 2 * min(np.mean(sums <= w + 1e-9), np.mean(sums >= w - 1e-9)))


def test_midranks_share_tied_ranks():
    assert midranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert midranks(np.array([5.0, 5.0, 5.0])).tolist() == [2.0, 2.0, 2.0]


def test_signed_rank_hand_computed_exact():
    # ranks 1..4, the -4 is negative: W+ = 1+2+3 = 6. The 16 subset sums of {1,2,3,4} are
    # 0,1,2,3,3,4,4,5,5,6,6,7,7,8,9,10: P(W+ <= 6) = 11/16, P(W+ >= 6) = 7/16 -> p = 2 * 7/16.
    r = signed_rank_test([1.0, 2.0, 3.0, -4.0])
    assert (r.statistic, r.n, r.method) == (6.0, 4, "exact")
    assert r.p == pytest.approx(0.875)
    # all ten positive: only the all-positive pattern reaches W+ = 55, p = 2 / 2^10
    assert signed_rank_test(np.arange(1, 11)).p == pytest.approx(2 / 1024)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_p_equals_enumeration_with_ties_and_zeros(seed):
    d = np.round(np.random.default_rng(seed).normal(0.05, 0.1, 12), 1)  # rounding makes ties and zeros
    r = signed_rank_test(d)
    assert r.method == "exact" and r.n == int(np.count_nonzero(d))
    assert r.p == pytest.approx(brute_force_p(d), abs=1e-12)
    assert signed_rank_test(np.concatenate([d, [0.0, 0.0]])).p == r.p  # zeros are dropped


def test_normal_approximation_hand_computed():
    # 1..10 all positive: W+ = 55, mean 27.5, var 10*11*21/24 = 96.25, z = (27.5 - 0.5)/sqrt(96.25)
    r = signed_rank_test(np.arange(1, 11), exact_max_n=0)
    assert r.method == "normal" and r.p == pytest.approx(math.erfc(27.0 / math.sqrt(96.25) / math.sqrt(2)))
    assert r.p == pytest.approx(0.005922, abs=1e-6)
    # ties: |d| = 1,1,2,2,3 -> mid-ranks 1.5,1.5,3.5,3.5,5; W+ = 1.5+1.5+3.5+5 = 11.5, mean 7.5,
    # var = 5*6*11/24 - (6 + 6)/48 = 13.5, z = (4 - 0.5)/sqrt(13.5)
    r = signed_rank_test([1.0, 1.0, 2.0, -2.0, 3.0], exact_max_n=0)
    assert r.statistic == 11.5 and r.p == pytest.approx(math.erfc(3.5 / math.sqrt(13.5) / math.sqrt(2)))


def test_normal_and_exact_agree_for_large_n():
    d = np.random.default_rng(3).normal(0.01, 0.1, 150)
    assert signed_rank_test(d, exact_max_n=0).p == pytest.approx(signed_rank_test(d).p, abs=2e-3)


def test_no_difference_gives_p_one():
    r = signed_rank_test([0.0, 0.0, 0.0])
    assert (r.n, r.p, r.method) == (0, 1.0, "none")


def test_bootstrap_single_layer_variance():
    x = np.array([0.1, -0.3, 0.5, 0.2, 0.0, 0.4, -0.1])
    reps = bootstrap_means([x], crossed=True, n_boot=40_000)
    assert reps.mean() == pytest.approx(x.mean(), abs=3e-3)
    assert reps.var() == pytest.approx(x.var() / len(x), rel=0.05)  # population variance / n


def test_bootstrap_crossed_and_nested_designs():
    a = np.array([0.0, 0.1, -0.05])            # seed effects
    b = np.array([0.2, -0.1, 0.0, 0.3, -0.2])  # image effects
    data = [ai + b for ai in a]                # additive: D[s, i] = a_s + b_i
    crossed = bootstrap_means(data, crossed=True, n_boot=40_000)
    # a crossed replicate is mean_w(a) + mean_v(b) with independent seed and image draws
    assert crossed.var() == pytest.approx(a.var() / 3 + b.var() / 5, rel=0.05)
    nested = bootstrap_means(data, crossed=False, n_boot=40_000)
    # nested: every drawn seed gets its own image draw, so the image term shrinks by the seed count
    assert nested.var() == pytest.approx(a.var() / 3 + b.var() / 5 / 3, rel=0.05)
    ragged = [np.array([0.1, 0.3]), np.array([0.0, 0.2, 0.4, -0.2])]
    reps = bootstrap_means(ragged, crossed=False, n_boot=40_000)
    means = np.array([x.mean() for x in ragged])
    expected = means.var() / 2 + np.mean([x.var() / len(x) for x in ragged]) / 2
    assert reps.var() == pytest.approx(expected, rel=0.05)


def test_bootstrap_resamples_random_genotypes_shared_or_per_seed():
    c = np.array([0.3, -0.2, 0.1, -0.2])       # genotype effects (4 random genotypes)
    a = np.array([0.0, 0.1, -0.05])            # seed effects
    b = np.array([0.2, -0.1, 0.0, 0.3, -0.2])  # image effects
    data = [c[:, None] + ai + b[None, :] for ai in a]  # [G, N] per seed: D[g, s, i] = c_g + a_s + b_i
    shared = bootstrap_means(data, crossed=True, n_boot=40_000, shared_samples=True)
    # the same genotype draw for every seed: its term does not shrink with the seeds
    assert shared.var() == pytest.approx(c.var() / 4 + a.var() / 3 + b.var() / 5, rel=0.05)
    per_seed = bootstrap_means(data, crossed=True, n_boot=40_000, shared_samples=False)
    # one genotype draw per seed layer (a seed drawn twice keeps its draw): weight E[Σ w_s²] = 5/9
    assert per_seed.var() == pytest.approx(5 / 9 * c.var() / 4 + a.var() / 3 + b.var() / 5, rel=0.05)
    assert shared.mean() == pytest.approx(np.mean(data), abs=3e-3)
    nested = bootstrap_means(data, crossed=False, n_boot=40_000, shared_samples=True)
    assert nested.var() == pytest.approx(c.var() / 4 + a.var() / 3 + b.var() / 5 / 3, rel=0.05)
    # one sample per layer is the plain design, replicate for replicate
    flat = [ai + b for ai in a]
    assert np.array_equal(bootstrap_means([x[None, :] for x in flat], True), bootstrap_means(flat, True))


def test_paired_difference_against_random_genotypes():
    model = {1: {"a": 0.8, "b": 0.6}, 2: {"a": 0.7, "b": 0.9}}
    rand = {1: {"a": [0.5, 0.7], "b": [0.4, 0.6]}, 2: {"a": [0.6, 0.6], "b": [0.5, 0.9]}}
    r = paired_difference(model, rand, shared_samples=True)
    # sample means: seed 1 a 0.6 b 0.5 -> 0.2, 0.1; seed 2 a 0.6 b 0.7 -> 0.1, 0.2
    assert r.mean == pytest.approx(0.15) and r.n_samples == 2 and r.size_text == "2 × 2 × 2 genotypes"
    assert r.reference_values.tolist() == pytest.approx([0.6, 0.6])
    averaged = paired_difference(model, {s: {i: float(np.mean(v)) for i, v in x.items()} for s, x in rand.items()})
    assert averaged.mean == pytest.approx(r.mean) and averaged.p == r.p and averaged.n_samples == 1
    assert r.ci_high - r.ci_low > averaged.ci_high - averaged.ci_low  # the genotypes' spread is in the interval
    other_seeds = paired_difference({7: model[1]}, rand, shared_samples=True)  # seed means, per sample
    assert other_seeds.pairing == "seed means" and other_seeds.n_samples == 2
    assert other_seeds.mean == pytest.approx((0.8 - 0.6 + 0.6 - 0.6) / 2)


def test_bootstrap_is_deterministic():
    x = [np.random.default_rng(5).normal(size=30)]
    reps = bootstrap_means(x, True)
    assert np.array_equal(reps, bootstrap_means(x, True))
    assert not np.array_equal(reps, bootstrap_means(x, True, seed=1))


def test_paired_by_seed_hand_computed():
    model = {1: {"a": 0.8, "b": 0.6}, 2: {"a": 0.7, "b": 0.9}}
    ref = {1: {"a": 0.5, "b": 0.6}, 2: {"a": 0.6, "b": 0.8}}
    r = paired_difference(model, ref)
    # seed 1: 0.3, 0.0; seed 2: 0.1, 0.1 -> mean of seed means (0.15 + 0.1) / 2
    assert r.mean == pytest.approx(0.125)
    assert (r.pairing, r.design, r.n_images, r.n_seeds, r.ids) == ("by seed", "crossed", 2, 2, ("a", "b"))
    assert r.model_values.tolist() == pytest.approx([0.75, 0.75])
    assert r.reference_values.tolist() == pytest.approx([0.55, 0.7])
    assert r.test.statistic == 3.0 and r.p == 0.5  # per image 0.2, 0.05: both positive, 2/4
    assert r.ci_low <= r.mean <= r.ci_high and r.within_noise


def test_paired_seed_means_when_seeds_differ():
    model = {1: {"a": 0.8, "b": 0.6}, 2: {"a": 0.6, "b": 0.8}}
    ref = {7: {"a": 0.5, "b": 0.5}}
    r = paired_difference(model, ref)
    assert (r.pairing, r.design, r.n_seeds) == ("seed means", "images", 1)
    assert r.mean == pytest.approx(0.2) and r.model_values.tolist() == pytest.approx([0.7, 0.7])


def test_paired_nested_when_seeds_scored_other_images():
    model = {1: {"a": 0.9, "b": 0.9}, 2: {"c": 0.9, "a": 0.8}}
    ref = {1: {"a": 0.5, "b": 0.6}, 2: {"c": 0.4, "a": 0.6}}
    r = paired_difference(model, ref)
    assert (r.design, r.ids) == ("nested", ("a", "b", "c"))
    assert r.mean == pytest.approx(((0.4 + 0.3) / 2 + (0.5 + 0.2) / 2) / 2)
    assert r.model_values.tolist() == pytest.approx([0.85, 0.9, 0.9])  # a: mean over both seeds


def test_clear_difference_is_not_noise():
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(40)]
    ref = {1: {i: float(v) for i, v in zip(ids, rng.uniform(0.5, 0.8, 40))}}
    model = {1: {i: v + 0.05 + float(rng.normal(0, 0.01)) for i, v in ref[1].items()}}
    r = paired_difference(model, ref)
    assert r.ci_low > 0 and r.p < 0.001 and r.verdict == "higher" and not r.within_noise


def test_pairing_errors():
    with pytest.raises(PairingError, match="seed 1: model and reference scored different images .1 ids differ, e.g. c"):
        paired_difference({1: {"a": 1.0, "b": 1.0}}, {1: {"a": 1.0, "b": 1.0, "c": 0.0}})
    with pytest.raises(PairingError, match="model: seeds scored different images"):
        paired_difference({1: {"a": 1.0}, 2: {"b": 1.0}}, {3: {"a": 1.0}})


def test_format_p():
    assert [format_p(p) for p in (0.0004, 0.0312, 0.5, 0.999, None)] == ["< 0.001", "0.031", "0.500", "1.00", "–"]


def test_float_noise_neither_breaks_ties_nor_hides_zeros():
    # per-image CSV values: 0.85 - 0.80 and 0.75 - 0.70 differ in the last bits, 0.3 - 0.1 - 0.2 is -2.8e-17
    r = signed_rank_test([0.85 - 0.80, -(0.75 - 0.70), 0.3 - 0.1 - 0.2])
    assert (r.n, r.statistic) == (2, 1.5)  # one zero dropped, the two 0.05 tie at rank 1.5
