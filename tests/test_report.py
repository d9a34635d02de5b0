"""`nas compare`: grouping by model, mean ± std, best marks, datasets, paired statistics, report files."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nas.cli import main
from nas.comparison import (TEST_SPLIT, build_comparison, collect_runs, compare_table, model_label)
from nas.errors import UserError
from nas.plots import panels_of
from nas.report import table_csv, table_markdown, write_report

DATA = {"root": None, "layout": "synthetic", "image_size": 64, "split": [0.7, 0.15, 0.15], "limit": None}
METRIC_COLUMNS = ("dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity", "precision")


def write_per_image(folder: Path, dice: dict[str, float]) -> dict[str, float]:
    """per_image.csv with the given Dice per image (other metrics derived); returns the means."""
    rows = []
    for image_id, d in dice.items():
        j = d / (2 - d)
        rows.append({"id": image_id, "dice": d, "jaccard": j, "jaccard_t": j if j >= 0.65 else 0.0,
                     "accuracy": 0.5 + d / 2, "sensitivity": d, "specificity": 1.0, "precision": d})
    with open(folder / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", *METRIC_COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    return {m: float(np.mean([r[m] for r in rows])) for m in METRIC_COLUMNS}


def make_run(root: Path, name: str, model: str = "unet", seed: int = 1, dice: float = 0.8, params: int = 1_000_000,
             genotype: str | None = None, kind: str = "retrain", data: dict | None = None,
             per_image: dict[str, float] | None = None, source: dict | None = None, **extra) -> Path:
    """A finished run folder: summary.json in the documented format (+ per_image.csv, genotype.yaml)."""
    run = root / name
    run.mkdir(parents=True)
    test = {"dice": dice, "jaccard": dice - 0.1, "jaccard_t": dice - 0.2, "accuracy": 0.9,
            "sensitivity": 0.8, "specificity": 0.95, "precision": 0.7, "loss": 0.3}
    if per_image is not None:
        test = write_per_image(run, per_image)
    summary = {"kind": kind, "model": model, "genotype": genotype, "params": params, "macs": 2 * params,
               "train_time_s": 100.0 + seed, "epochs": 2, "best_epoch": 2, "best_val_dice": dice,
               "test": test, "test_pooled_dice": dice, "latency_ms_batch1": 5.0, "latency_ms_batched": 1.0,
               "images_per_s": 1000.0, "data": data or DATA, "seed": seed, **extra}
    (run / "summary.json").write_text(json.dumps(summary))
    if source is not None:
        (run / "genotype.yaml").write_text(json.dumps({"format": "skipnas-genotype/1", "source": source}))
    return run


def add_evaluation(run: Path, name: str, per_image: dict[str, float], data: str = "/data/ext") -> Path:
    folder = run / f"evaluation-{name}"
    folder.mkdir()
    test = write_per_image(folder, per_image)
    (folder / "summary.json").write_text(json.dumps({"kind": "evaluate", "model": "m", "run": str(run),
                                                     "data": data, "images": len(per_image), "test": test}))
    return folder


@pytest.fixture
def three_runs(tmp_path):
    return [make_run(tmp_path, "a1", "unet", 1, dice=0.80, params=2_000_000),
            make_run(tmp_path, "a2", "unet", 2, dice=0.90, params=2_000_000),
            make_run(tmp_path, "b1", "attunet", 1, dice=0.70, params=1_000_000)]


IDS = [f"img{i}" for i in range(8)]
REF = {1: [0.80, 0.70, 0.90, 0.60, 0.85, 0.75, 0.65, 0.95], 2: [0.78, 0.72, 0.88, 0.62, 0.80, 0.70, 0.70, 0.90]}
GAIN = [0.05, -0.02, 0.04, 0.03, 0.00, 0.06, 0.01, 0.02]  # model - reference, per image (both seeds)


@pytest.fixture
def paired_runs(tmp_path):
    """unet and a searched genotype, seeds 1 and 2, on the same 8 test images."""
    runs = []
    for seed in (1, 2):
        runs.append(make_run(tmp_path, f"unet{seed}", "unet", seed, per_image=dict(zip(IDS, REF[seed]))))
        runs.append(make_run(tmp_path, f"att{seed}", "attunet", seed,
                             per_image={i: v - 0.1 for i, v in zip(IDS, REF[seed])}))
        runs.append(make_run(tmp_path, f"g{seed}", "x", seed, genotype="g/searched.yaml",
                             per_image={i: v + g for i, v, g in zip(IDS, REF[seed], GAIN)}))
    return runs


def test_table_values_mean_std_and_best(three_runs):
    table = compare_table(collect_runs(three_runs))
    assert [r.label for r in table.rows] == ["unet", "attunet"]
    unet, att = table.rows
    cols = {c.key: c for c in table.columns}
    assert unet.stats["dice"].mean == pytest.approx(0.85)
    assert unet.stats["dice"].std == pytest.approx(math.sqrt(0.005))  # sample std of 0.8, 0.9
    assert table.cell(unet, cols["dice"]) == "0.8500 ± 0.0707"
    assert table.cell(att, cols["dice"]) == "0.7000"  # one run: no ± part
    assert table.cell(unet, cols["params"]) == "2.000 ± 0.000"
    assert table.cell(att, cols["macs"]) == "0.002"
    assert table.best["dice"] == {"unet"} and table.best["jaccard"] == {"unet"}
    assert table.best["params"] == {"attunet"} and table.best["macs"] == {"attunet"}  # lower is better
    assert table.best["train_time_s"] == {"attunet"}  # 101 vs mean(101, 102)
    assert table.best["accuracy"] == {"unet", "attunet"}  # ties: both marked
    md = table_markdown(table)
    assert "| unet | baseline | 2 (seeds 1, 2) | **0.8500 ± 0.0707** |" in md
    assert "| attunet | baseline | 1 (seeds 1) | 0.7000 |" in md and "**1.000**" in md
    assert "Dice ↑" in md and "Params (M) ↓" in md


def test_csv_has_raw_mean_and_std(three_runs):
    rows = list(csv.DictReader(table_csv([compare_table(collect_runs(three_runs))]).splitlines()))
    assert [r["model"] for r in rows] == ["unet", "attunet"] and rows[0]["dataset"] == TEST_SPLIT
    assert float(rows[0]["dice_mean"]) == pytest.approx(0.85)
    assert float(rows[0]["dice_std"]) == pytest.approx(0.0707, abs=1e-4)
    assert rows[1]["dice_std"] == "" and float(rows[1]["params_mean"]) == 1_000_000
    assert rows[0]["seeds"] == "1 2" and rows[0]["runs"] == "2" and rows[0]["kind"] == "baseline"


def test_write_report_files_without_per_image(three_runs, tmp_path):
    written = write_report(build_comparison(collect_runs(three_runs)), tmp_path / "out" / "report.md")
    assert [p.name for p in written] == ["report.md", "report.csv", "report_stats.csv",
                                         "report_quality_vs_params.png", "report_metrics.png"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    md = written[0].read_text()
    assert md.index("| Model |") < md.index("## Charts") < md.index("![report_metrics](report_metrics.png)")
    assert "Warning" not in md and str(three_runs[0]) in md
    assert f"no paired statistics for unet: {three_runs[0] / 'per_image.csv'} not found" in md


def test_paired_statistics_hand_computed(paired_runs, tmp_path):
    comparison = build_comparison(collect_runs(paired_runs))
    assert comparison.reference == "unet"  # best baseline, although the searched net is better
    (ds,) = comparison.datasets
    searched = next(c for c in ds.versus_reference if c.model == "searched")
    d = searched.diffs["dice"]
    assert d.mean == pytest.approx(np.mean(GAIN)) and (d.pairing, d.design) == ("by seed", "crossed")
    # one difference per image, 7 non-zero; |gain| ranks: 0.01 -> 1, the two 0.02 -> 2.5 each, 0.03..0.06 -> 4..7;
    # only -0.02 is negative: W+ = 28 - 2.5. Sign patterns with W+ >= 25.5 have negative ranks summing
    # to <= 2.5: none, {1}, either 2.5 -> 4 of 2^7, two-sided p = 2 * 4 / 128
    assert d.test.n == 7 and d.test.statistic == pytest.approx(25.5)
    assert d.p == pytest.approx(2 * 4 / 128)
    att = next(c for c in ds.versus_reference if c.model == "attunet").diffs["dice"]
    assert att.mean == pytest.approx(-0.1) and att.ci_low == pytest.approx(-0.1) and att.verdict == "lower"
    written = write_report(comparison, tmp_path / "r" / "report.md")
    assert "report_test-split_per_image.png" in [p.name for p in written]
    rows = list(csv.DictReader(written[2].read_text().splitlines()))
    row = next(r for r in rows if r["model"] == "searched" and r["metric"] == "dice")
    assert float(row["mean_diff"]) == pytest.approx(np.mean(GAIN)) and row["verdict"] in ("better", "within noise")
    assert row["pairing"] == "by seed" and row["n_images"] == "8" and row["n_seeds"] == "2"
    md = written[0].read_text()
    assert "Reference: **unet** (the best hand-designed baseline by mean Dice)" in md
    assert "**attunet** vs unet: worse in Dice (Δ -0.1000" in md
    assert "### Paired differences vs unet" in md and "## How to read the statistics" in md


def test_reference_override_and_errors(paired_runs):
    comparison = build_comparison(collect_runs(paired_runs), reference="attunet")
    assert comparison.reference == "attunet"
    assert {c.model for c in comparison.datasets[0].versus_reference} == {"unet", "searched"}
    with pytest.raises(UserError, match="--reference nope: no such model on the test split .models: unet, attunet, searched"):
        build_comparison(collect_runs(paired_runs), reference="nope")


def test_different_test_sets_are_refused(tmp_path):
    a = make_run(tmp_path, "a", "unet", 1, per_image={"x": 0.8, "y": 0.7})
    b = make_run(tmp_path, "b", "attunet", 1, per_image={"x": 0.8, "z": 0.7})
    with pytest.raises(UserError) as e:
        build_comparison(collect_runs([a, b]))
    msg = str(e.value)
    assert "\n" not in msg and str(b / "per_image.csv") in msg and str(a / "per_image.csv") in msg
    assert "different images (2 ids differ, e.g. y)" in msg and "same test images on both sides" in msg


def test_seeds_differ_pairs_shared_seeds_when_splits_differ(tmp_path):
    runs = [make_run(tmp_path, "u1", "unet", 1, per_image={"a": 0.5, "b": 0.6}),
            make_run(tmp_path, "u2", "unet", 2, per_image={"c": 0.5, "d": 0.6}),
            make_run(tmp_path, "g1", "x", 1, genotype="g/s.yaml", per_image={"a": 0.7, "b": 0.6})]
    (contrast,) = build_comparison(collect_runs(runs)).datasets[0].versus_reference
    assert contrast.note.startswith("paired on the seeds both have (1)")
    assert contrast.diffs["dice"].mean == pytest.approx(0.1) and contrast.diffs["dice"].n_seeds == 1
    # same images for every seed: per-image means over seeds, no shared seed needed
    runs = [make_run(tmp_path, "v1", "unet", 1, per_image={"a": 0.5, "b": 0.6}),
            make_run(tmp_path, "v2", "unet", 2, per_image={"a": 0.7, "b": 0.6}),
            make_run(tmp_path, "h3", "x", 3, genotype="g/t.yaml", per_image={"a": 0.8, "b": 0.8})]
    (contrast,) = build_comparison(collect_runs(runs)).datasets[0].versus_reference
    assert contrast.diffs["dice"].pairing == "seed means" and contrast.diffs["dice"].mean == pytest.approx(0.2)


def test_runs_without_test_metrics_are_not_counted(tmp_path):
    good = make_run(tmp_path, "good", "unet", 1, per_image={"a": 0.5, "b": 0.6})
    empty = make_run(tmp_path, "empty", "attunet", 1)
    summary = json.loads((empty / "summary.json").read_text())
    del summary["test"]
    (empty / "summary.json").write_text(json.dumps(summary))
    nan = make_run(tmp_path, "nan", "r2unet", 1, dice=float("nan"))
    comparison = build_comparison(collect_runs([good, empty, nan]))
    ds = comparison.datasets[0]
    assert [r.label for r in ds.table.rows] == ["unet"]
    assert ds.notes == [f"not counted: {empty} (no test metrics (a zero-size test split?))",
                        f"not counted: {nan} (test dice is nan)"]
    with pytest.raises(UserError, match=r"compare: no run has test metrics to compare .*empty: no test metrics"):
        build_comparison(collect_runs([empty]))


def test_evaluation_folders_are_datasets(paired_runs, tmp_path):
    for run in paired_runs:  # an external set: the same 3 images for every run and seed
        shift = 0.1 if "g" in run.name else (-0.2 if "att" in run.name else 0.0)
        add_evaluation(run, "ph2", {"e1": 0.6 + shift, "e2": 0.7 + shift, "e3": 0.5 + shift})
    comparison = build_comparison(collect_runs(paired_runs))
    assert [d.dataset for d in comparison.datasets] == [TEST_SPLIT, "ph2"]
    ext = comparison.datasets[1]
    assert [c.key for c in ext.table.columns][-1] == "specificity"  # metrics only, no costs
    d = next(c for c in ext.versus_reference if c.model == "searched").diffs["dice"]
    assert d.mean == pytest.approx(0.1) and d.n_images == 3 and d.ids == ("e1", "e2", "e3")
    md = write_report(comparison, tmp_path / "rep" / "r.md")[0].read_text()
    assert "## Dataset `ph2` (`/data/ext`, 3 images)" in md and "r_ph2_per_image.png" in md
    only = collect_runs(paired_runs, datasets=[])
    assert all(set(r.scores) == {TEST_SPLIT} for r in only)


def test_a_run_given_twice_is_refused(paired_runs):
    folder = add_evaluation(paired_runs[0], "ph2", {"e1": 0.6})
    for twice in ([paired_runs[0], paired_runs[0]], [paired_runs[0], folder]):
        with pytest.raises(UserError, match=r"compare: .* are the same run; give each run folder once"):
            collect_runs([*paired_runs[1:], *twice])


def test_two_folders_of_one_name_are_not_one_dataset(paired_runs):
    for k, run in enumerate(paired_runs):
        add_evaluation(run, "test2", {"e1": 0.6, "e2": 0.7}, data="/data/a/test2" if k else "/data/b/test2")
    with pytest.raises(UserError, match=r"compare: .*evaluation-test2 scored /data/a/test2, .*evaluation-test2 "
                                        r"scored /data/b/test2, both named 'test2'"):
        build_comparison(collect_runs(paired_runs))


def test_a_re_scored_test_split_is_not_a_second_dataset(paired_runs):
    """`nas evaluate RUN` (no --data) writes evaluation-test/ for the run's own test split: the
    same images and scores as the run itself, so it must not appear as another dataset."""
    for run in paired_runs:
        add_evaluation(run, "test", {"e1": 0.5}, data=TEST_SPLIT)
    assert [d.dataset for d in build_comparison(collect_runs(paired_runs)).datasets] == [TEST_SPLIT]


def test_random_samples_pool_into_one_row_and_face_the_searched(paired_runs, tmp_path):
    runs = list(paired_runs)
    for seed in (1, 2):
        for sample, delta in ((5, -0.04), (6, -0.08)):  # per image: mean over samples = -0.06
            runs.append(make_run(tmp_path, f"r{sample}s{seed}", "x", seed, genotype=f"genotypes/rand{sample}.yaml",
                                 source={"random": True, "seed": sample},
                                 per_image={i: v + delta for i, v in zip(IDS, REF[seed])}))
    comparison = build_comparison(collect_runs(runs))
    ds = comparison.datasets[0]
    row = ds.table.row("random")
    assert row is not None and row.kind == "random" and row.samples == [5, 6] and len(row.runs) == 4
    (vs,) = ds.searched_vs_random
    assert (vs.model, vs.reference) == ("searched", "random")
    assert vs.diffs["dice"].mean == pytest.approx(np.mean(GAIN) + 0.06)
    assert vs.diffs["dice"].n_seeds == 2 and vs.diffs["dice"].pairing == "by seed"
    assert vs.diffs["dice"].n_samples == 2  # the interval resamples the two genotypes too
    md = write_report(comparison, tmp_path / "rr" / "report.md")[0].read_text()
    assert "| random | random | 4 (2 samples; seeds 1, 2) |" in md and "### Searched vs random" in md
    assert f"| {len(IDS)} × 2 × 2 genotypes |" in md
    stats = list(csv.DictReader((tmp_path / "rr" / "report_stats.csv").open()))
    assert {r["n_genotypes"] for r in stats if r["comparison"] == "searched vs random"} == {"2"}
    assert {r["n_genotypes"] for r in stats if r["comparison"] == "vs reference" and r["model"] != "random"} == {"1"}


def test_gallery_from_saved_predictions(paired_runs, tmp_path):
    import cv2

    for run in paired_runs:
        folder = add_evaluation(run, "ext", {"e1": 0.9, "e2": 0.4, "e3": 0.7})
        preds = folder / "predictions"
        preds.mkdir()
        lines = ["id,image_path,mask_path,pred_path"]
        for k, image_id in enumerate(("e1", "e2", "e3")):
            img = np.full((20, 30, 3), 60 * k, np.uint8)
            mask = np.zeros((20, 30), np.uint8)
            mask[5:15, 5 + k:20] = 255
            cv2.imwrite(str(preds / f"{image_id}.jpg"), img)
            cv2.imwrite(str(preds / f"{image_id}_gt.png"), mask)
            cv2.imwrite(str(preds / f"{image_id}_pred.png"), np.roll(mask, 2, axis=1))
            lines.append(f"{image_id},{preds / f'{image_id}.jpg'},{preds / f'{image_id}_gt.png'},"
                         f"{preds / f'{image_id}_pred.png'}")
        (preds / "index.csv").write_text("\n".join(lines) + "\n")
    written = write_report(build_comparison(collect_runs(paired_runs)), tmp_path / "g" / "report.md")
    names = [p.name for p in written]
    assert {"report_ext_gallery_unet.png", "report_ext_gallery_attunet.png", "report_ext_gallery_searched.png"} <= set(names)
    md = written[0].read_text()
    assert "### Best and worst cases" in md and "![searched](report_ext_gallery_searched.png)" in md


def test_chart_panels(paired_runs, monkeypatch):
    from nas.plots import compare as charts

    captured = []
    monkeypatch.setattr(charts, "save_figure", lambda fig, path: captured.append(panels_of(fig)) or path)
    comparison = build_comparison(collect_runs(paired_runs))
    table = comparison.datasets[0].table
    charts.scatter_chart(table, Path("x.png"))
    charts.bar_chart(table, Path("y.png"))
    charts.per_image_chart(comparison.datasets[0].versus_reference, Path("z.png"))
    assert captured == [["dice", "jaccard"], ["dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity"],
                        ["attunet", "searched"]]


def test_report_warns_on_different_data(tmp_path):
    runs = [make_run(tmp_path, "a", "unet"), make_run(tmp_path, "b", "attunet", data={**DATA, "image_size": 128})]
    md = write_report(build_comparison(collect_runs(runs)), tmp_path / "r.md")[0].read_text()
    assert "Warning" in md and "image_size: 64, 128" in md


def test_labels_and_kinds(tmp_path):
    assert model_label({"model": "unet"}) == "unet"
    assert model_label({"model": "genotype", "genotype": "genotypes/searched_a.yaml"}) == "searched_a"
    assert model_label({"model": "x", "genotype": "runs/search-7/genotype.yaml"}) == "search-7"
    runs = [make_run(tmp_path, "g", "x", genotype="g/mine.yaml"), make_run(tmp_path, "u", "unet"),
            make_run(tmp_path, "r", "x", genotype="elsewhere/genotype-random3.yaml", source={"random": True, "seed": 3})]
    results = collect_runs(runs)
    assert [(r.label, r.kind, r.sample) for r in results] == [("mine", "searched", None), ("unet", "baseline", None),
                                                               ("random", "random", 3)]
    assert [r.label for r in collect_runs(runs, ["first", None, "rnd"])] == ["first", "unet", "rnd"]


def test_missing_values_are_dashes_and_not_best(tmp_path):
    runs = [make_run(tmp_path, "a", "unet", macs=None, latency_ms_batch1=None), make_run(tmp_path, "b", "attunet")]
    table = compare_table(collect_runs(runs))
    cols = {c.key: c for c in table.columns}
    assert table.cell(table.rows[0], cols["macs"]) == "–" and table.best["macs"] == {"attunet"}


def test_bad_per_image_is_named(tmp_path):
    a = make_run(tmp_path, "a", "unet", 1, per_image={"x": 0.8, "y": 0.7})
    b = make_run(tmp_path, "b", "attunet", 1, per_image={"x": 0.8, "y": 0.7})
    (b / "per_image.csv").write_text((b / "per_image.csv").read_text().replace("0.7", "oops", 1))
    with pytest.raises(UserError, match=r"b/per_image\.csv: line 3: dice is not a number: 'oops'"):
        build_comparison(collect_runs([a, b]))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match=r"summary\.json: not found"):
        collect_runs([tmp_path])
    search = make_run(tmp_path, "s", "supernet:x", kind="search")
    with pytest.raises(UserError, match="search run"):
        collect_runs([search])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        collect_runs([bad])
    with pytest.raises(UserError, match="no run folders"):
        collect_runs([])


def test_cli_compare(paired_runs, tmp_path, capsys):
    out = tmp_path / "cli" / "cmp.md"
    assert main(["compare", *map(str, paired_runs), "-o", str(out), "--reference", "attunet"]) == 0
    printed = capsys.readouterr().out
    assert "unet" in printed and "paired differences" in printed and str(out) in printed
    assert "searched vs attunet: better in Dice (Δ +0.1" in printed
    assert out.is_file() and out.with_suffix(".csv").is_file() and (out.parent / "cmp_stats.csv").is_file()
    assert main(["compare"]) == 2
    assert "give run folders" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "summary.json: not found" in capsys.readouterr().err


def test_no_import_cycle_between_charts_and_report():
    code = ("import sys, nas.plots.compare; assert 'nas.report' not in sys.modules; "
            "import nas.comparison; assert 'nas.report' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_words_say_why_a_small_p_against_few_random_genotypes_is_still_noise():
    from nas.comparison import Contrast
    from nas.report import contrast_words
    from nas.stats import paired_difference

    ids = [f"i{k}" for k in range(12)]
    searched = {1: {i: 0.8 + 0.01 * k for k, i in enumerate(ids)}}
    # two random genotypes: one broken, one better than the searched net on every image
    rand = {1: {i: [0.2 + 0.01 * k, 0.9 + 0.01 * k] for k, i in enumerate(ids)}}
    d = paired_difference(searched, rand, shared_samples=True)
    assert d.p < 0.05 and d.ci_low < 0 < d.ci_high and d.within_noise and d.n_samples == 2
    words = contrast_words(Contrast("searched", "random", {"dice": d}))
    assert "every difference is within noise" in words
    assert "resamples the 2 random genotypes, includes 0" in words and "retrain more random samples" in words
    one = paired_difference(searched, {1: {i: float(np.mean(v)) for i, v in rand[1].items()}})
    assert not one.within_noise and "random genotypes" not in contrast_words(Contrast("s", "r", {"dice": one}))
