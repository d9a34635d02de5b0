"""Ranking validity and the field's searched-vs-random numbers: τ-b, bootstrap intervals, the words,
Yang et al.'s statistics, and the report sections of a suite and of plain run folders."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report import IDS, make_run  # noqa: E402  (shared run-folder builders)
from test_suite import fake, write_suite  # noqa: E402,F401  (the suite's fake training fixture)

from nas.comparison import build_comparison, collect_runs  # noqa: E402
from nas.ranking import (GenotypeScores, Ranking, field_stats, noise_ceiling, proxy_taus,  # noqa: E402
                         reading)
from nas.report import write_report  # noqa: E402
from nas.stats import (beat_probability, kendall_tau_b, mean_tau_b, relative_improvement,  # noqa: E402
                       size_trend, two_sample_bootstrap)


# ----------------------------------------------------------------------------- τ-b
@pytest.mark.parametrize("x, y, expected", [
    ([1, 2, 3], [1, 2, 3], 1.0),
    ([1, 2, 3], [3, 2, 1], -1.0),
    ([1, 2, 3], [1, 3, 2], 1 / 3),  # C=2, D=1 of 3 pairs
    ([1, 2, 2, 3], [1, 2, 3, 3], 4 / 5),  # C=4, D=0; one tie in x, one in y: 4 / sqrt(5 * 5)
    ([1, 1, 2], [1, 2, 3], 2 / math.sqrt(6)),  # C=2; x ties one pair: 2 / sqrt(2 * 3)
    ([0.85 - 0.80, 0.75 - 0.70, 0.1], [1, 2, 3], 2 / math.sqrt(6)),  # float noise is still a tie
])
def test_kendall_tau_b_hand_computed(x, y, expected):
    assert kendall_tau_b(x, y) == pytest.approx(expected)
    assert kendall_tau_b(y, x) == pytest.approx(expected)


def test_kendall_tau_b_undefined_when_one_side_is_constant():
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau_b([1], [2]))


def test_bootstrap_interval_contains_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(3)
    x = np.arange(12.0)
    y = x + rng.normal(0, 4, 12)
    a = mean_tau_b([x, y], [(0, 1)], n_boot=2000)
    assert a.value == pytest.approx(kendall_tau_b(x, y))
    assert a.ci_low <= a.value <= a.ci_high and a.ci_low < a.ci_high and a.n == 12
    assert mean_tau_b([x, y], [(0, 1)], n_boot=2000) == a
    assert mean_tau_b([x, y], [(0, 1)], n_boot=2000, seed=1) != a


def test_ceiling_is_the_mean_over_seed_pairs():
    dice = {1: [0.1, 0.2, 0.3, 0.4], 2: [0.1, 0.3, 0.2, 0.4], 3: [0.4, 0.3, 0.2, 0.1]}
    gs = [GenotypeScores(f"g{i}", "random", "r", {s: dice[s][i] for s in dice}) for i in range(4)]
    expected = np.mean([kendall_tau_b(dice[a], dice[b]) for a, b in ((1, 2), (1, 3), (2, 3))])
    ceiling = noise_ceiling(gs, n_boot=200)
    assert ceiling.value == pytest.approx(expected) and ceiling.n == 4
    assert noise_ceiling([GenotypeScores("g", "random", "r", {1: 0.5})] * 4) is None  # one seed


# ----------------------------------------------------------------------------- Yang et al.
SEARCHED = np.array([[0.8, 0.9]])
RANDOM = np.array([[0.7, 0.9], [0.6, 0.7]])


def test_relative_improvement_and_beat_probability_hand_computed():
    assert relative_improvement(SEARCHED, RANDOM) == pytest.approx((0.85 - 0.725) / 0.725)
    # seed 1: 0.8 > 0.7, 0.8 > 0.6; seed 2: 0.9 = 0.9 (half), 0.9 > 0.7
    assert beat_probability(SEARCHED, RANDOM) == pytest.approx(3.5 / 4)
    # a genotype not trained at a seed (NaN) leaves those pairs out
    assert beat_probability(SEARCHED, np.array([[0.9, math.nan]])) == pytest.approx(0.0)
    e = two_sample_bootstrap(beat_probability, SEARCHED, RANDOM, n_boot=500)
    assert e.value == pytest.approx(0.875) and e.ci_low <= e.value <= e.ci_high and e.n == 3


def test_field_stats_and_size_trend():
    def g(label, kind, row, dice, params):
        return GenotypeScores(label, kind, row, {1: dice}, params=params)

    gs = [g("s", "searched", "s", 0.9, 1e6), g("r1", "random", "r", 0.6, 1e5), g("r2", "random", "r", 0.7, 1e6),
          g("r3", "random", "r", 0.8, 1e7)]
    slope, intercept = size_trend([5, 6, 7], [0.6, 0.7, 0.8])
    assert slope == pytest.approx(0.1) and intercept == pytest.approx(0.1)
    f = field_stats(gs, "s", "r", n_boot=200)
    assert f.improvement.value == pytest.approx((0.9 - 0.7) / 0.7) and f.beats.value == pytest.approx(1.0)
    assert f.slope == pytest.approx(0.1) and f.above_trend == pytest.approx(0.2)
    assert size_trend([6, 6], [0.5, 0.6]) is None  # one size: no trend
    assert field_stats(gs, "s", "missing") is None


# ----------------------------------------------------------------------------- the words
def _ranking(seeds_dice, oneshot=None, alpha=None, n_boot=500) -> Ranking:
    """Genotypes from {seed: [dice per genotype]}, with optional proxy values per genotype."""
    n = len(next(iter(seeds_dice.values())))
    gs = [GenotypeScores(f"g{i}", "random" if i else "searched", "r" if i else "s",
                         {s: v[i] for s, v in seeds_dice.items()}, params=1e6,
                         oneshot_dice=None if oneshot is None else oneshot[i],
                         alpha_score=None if alpha is None else alpha[i]) for i in range(n)]
    r = Ranking("test split", gs, sorted(seeds_dice), proxy_taus(gs, n_boot), noise_ceiling(gs, n_boot), [], [])
    r.reading = reading(r)
    return r


UP = [0.1 * i for i in range(8)]
AGREE = {1: UP, 2: [v + 0.01 for v in UP]}


def test_words_ceiling_at_zero_means_the_data_cannot_rank():
    r = _ranking({1: UP, 2: [0.3, 0.1, 0.0, 0.5, 0.2, 0.7, 0.6, 0.4]}, oneshot=UP, alpha=UP)
    assert r.ceiling.value > 0 and r.ceiling.ci_low <= 0  # positive, but its interval includes 0
    assert "The data cannot rank these architectures" in r.reading and "search ranks" not in r.reading


def test_words_supernet_ranks_but_alpha_do_not():
    r = _ranking(AGREE, oneshot=UP, alpha=[0.3, 0.6, 0.1, 0.7, 0.0, 0.5, 0.2, 0.4])
    assert "Training seeds agree" in r.reading and "The supernet ranks them but α do not" in r.reading
    assert "perturbation" in r.reading


def test_words_the_search_ranks_them():
    assert "The search ranks them" in _ranking(AGREE, oneshot=UP, alpha=UP).reading
    neither = _ranking(AGREE, oneshot=UP[::-1], alpha=UP[::-1]).reading
    assert "Neither the supernet nor α rank them" in neither


def test_words_too_few_genotypes_and_no_ceiling():
    assert "Too few genotypes to rank" in _ranking({1: UP[:3], 2: UP[:3]}, alpha=UP[:3]).reading
    one_seed = _ranking({1: UP}, alpha=UP).reading
    assert "noise ceiling cannot be measured" in one_seed and "The search ranks them" in one_seed


# ----------------------------------------------------------------------------- reports
def test_suite_report_has_the_sections_and_reuses_cached_proxies(tmp_path, fake):
    entries = [{"name": "s", "search": {"k": 2}}, {"name": "rnd", "random": {"samples": 3, "seed": 10}},
               {"name": "u", "model": "unet"}]
    path = write_suite(tmp_path, entries, base_set=("data.image_size=32", "search.space=tiny"))
    out = tmp_path / "out"
    result = run_suite_(path, out)
    names = [p.name for p in result.written]
    assert {"ranking.csv", "ranking_stats.csv", "report_dice_vs_params.png"} <= set(names)
    md = (out / "report.md").read_text()
    assert "## Ranking validity" in md and "## Searched vs random, as the field reports it" in md
    assert "| s | rnd | 1/3 |" in md and "## Reading the ranking" in md
    rows = list(csv.DictReader((out / "ranking.csv").open()))
    assert [(r["label"], r["kind"]) for r in rows] == [("s", "searched"), ("rnd-sample10", "random"),
                                                       ("rnd-sample11", "random"), ("rnd-sample12", "random")]
    assert {"dice_seed1", "dice_seed2", "dice_mean", "params", "oneshot_dice", "alpha_score"} <= set(rows[0])
    stats = list(csv.DictReader((out / "ranking_stats.csv").open()))
    assert [r["proxy"] for r in stats] == ["oneshot_dice", "alpha_score", "params", "ceiling"]
    # a supernet checkpoint and cached scores: a rerun reads them and scores nothing
    search = out / "s" / "search"
    (search / "checkpoints").mkdir()
    (search / "checkpoints" / "last.pt").write_bytes(b"")
    for i, r in enumerate(rows):
        r["supernet"], r["oneshot_dice"], r["alpha_score"] = str(search), str(0.5 + 0.1 * i), str(0.9 - 0.1 * i)
    with (out / "ranking.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run_suite_(path, out)
    again = list(csv.DictReader((out / "ranking.csv").open()))
    assert [float(r["oneshot_dice"]) for r in again] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert all(r["supernet"] == str(search) for r in again)
    stats = {r["proxy"]: r for r in csv.DictReader((out / "ranking_stats.csv").open())}
    assert stats["oneshot_dice"]["n_genotypes"] == "4" and stats["alpha_score"]["tau"] != ""


def run_suite_(path, out):
    from nas.suite import run_suite

    return run_suite(path, out)


def test_plain_runs_locate_the_supernet_from_the_genotype_source(tmp_path):
    search = tmp_path / "search"
    (search / "checkpoints").mkdir(parents=True)
    (search / "checkpoints" / "last.pt").write_bytes(b"")
    runs = []
    for seed in (1, 2):
        runs.append(make_run(tmp_path, f"g{seed}", "x", seed, genotype="g/searched.yaml", params=500_000,
                             per_image={i: 0.8 for i in IDS}, source={"run": str(search)}))
        for sample in range(3):
            runs.append(make_run(tmp_path, f"r{sample}s{seed}", "x", seed, genotype=f"rand{sample}.yaml",
                                 params=400_000 + 100_000 * sample, source={"run": "elsewhere", "random": True,
                                                                             "seed": sample},
                                 per_image={i: 0.6 + 0.05 * sample for i in IDS}))
    paths = write_report(build_comparison(collect_runs(runs)), tmp_path / "rep" / "cmp.md")
    assert {"cmp_ranking.csv", "cmp_ranking_stats.csv", "cmp_dice_vs_params.png"} <= {p.name for p in paths}
    rows = {r["label"]: r for r in csv.DictReader((tmp_path / "rep" / "cmp_ranking.csv").open())}
    assert rows["searched"]["supernet"] == str(search) and rows["random-sample0"]["supernet"] == ""
    md = (tmp_path / "rep" / "cmp.md").read_text()
    assert "no supernet checkpoint found for random-sample0, random-sample1, random-sample2" in md
    assert "| test split | searched | random | 1/3 | 0.8000 | 0.6500 | +23.08 % |" in md
    # size: the random genotypes gain 0.05 Dice per 100k parameters; the searched lies above that line
    assert "above it" in md


def test_no_ranking_section_without_random_genotypes(tmp_path):
    runs = [make_run(tmp_path, f"g{s}", "x", s, genotype="g/searched.yaml", per_image={i: 0.8 for i in IDS})
            for s in (1, 2)]
    paths = write_report(build_comparison(collect_runs(runs)), tmp_path / "r.md")
    assert "Ranking validity" not in paths[0].read_text() and not (tmp_path / "r_ranking.csv").exists()


# ----------------------------------------------------------------------------- end to end (real supernet)
def test_suite_end_to_end_scores_genotypes_in_their_supernet(tmp_path, tiny_overrides):
    """A real tiny search, its genotype and two random controls retrained at two seeds: every
    genotype gets a one-shot and an α score from the search entry's supernet."""
    try:
        import nas.oneshot  # noqa: F401
    except ImportError:
        pytest.skip("nas.oneshot (one-shot and α scores) is not part of this version")
    from nas.suite import run_suite

    base = [o for o in tiny_overrides if not o.startswith(("run.seed", "train.epochs"))]
    base += ["train.epochs=1", "retrain.epochs=1", "model.width=4", "retrain.optimizer=adamw"]
    (tmp_path / "base.yaml").write_text("{}\n")
    suite = {"name": "e2e", "base": {"config": "base.yaml", "set": base}, "seeds": [1, 2],
             "entries": [{"name": "s", "search": {"k": 1}},
                         {"name": "rnd", "random": {"samples": 2, "from": "s"}}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    run_suite(path, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "ranking.csv").open()))
    assert len(rows) == 3 and all(r["oneshot_dice"] != "" and r["alpha_score"] != "" for r in rows)
    assert {r["supernet"] for r in rows} == {str(tmp_path / "out" / "s" / "search")}
    assert "## Ranking validity" in (tmp_path / "out" / "report.md").read_text()


def test_a_search_entry_with_several_seeds_scores_in_all_its_supernets(tmp_path):
    """Every genotype of a multi-seed search entry (and its random controls) is scored in the
    supernets of all its seeds, so no genotype is favoured by the supernet that found it."""
    from nas.ranking import suite_supernets
    from nas.suite import load_suite

    (tmp_path / "base.yaml").write_text("data: {image_size: 32}\nsearch: {space: tiny}\n")
    (tmp_path / "suite.yaml").write_text(
        "name: s\nbase: {config: base.yaml}\nseeds: [1, 2]\nentries:\n"
        "  - {name: searched, search: {seeds: [4, 5]}}\n"
        "  - {name: random, random: {samples: 2, from: searched}}\n")
    nets = suite_supernets(load_suite(tmp_path / "suite.yaml"), tmp_path / "out")
    expected = [tmp_path / "out" / "searched" / "search-seed4", tmp_path / "out" / "searched" / "search-seed5"]
    assert nets == {"searched": expected, "random": expected}
