"""`nas compare`: grouping by model, mean ± std, best marks, report files, clear errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from nas.cli import main
from nas.errors import UserError
from nas.plots import panels_of
from nas.report import collect_runs, compare_table, model_label, table_csv, table_markdown, write_report

DATA = {"root": None, "layout": "synthetic", "image_size": 64, "split": [0.7, 0.15, 0.15], "limit": None}


def make_run(root: Path, name: str, model: str = "unet", seed: int = 1, dice: float = 0.8, params: int = 1_000_000,
             genotype: str | None = None, kind: str = "retrain", data: dict | None = None, **extra) -> Path:
    """A finished run folder: summary.json in the documented format, nothing else."""
    run = root / name
    run.mkdir(parents=True)
    summary = {"kind": kind, "model": model, "genotype": genotype, "params": params, "macs": 2 * params,
               "train_time_s": 100.0 + seed, "epochs": 2, "best_epoch": 2, "best_val_dice": dice,
               "test": {"dice": dice, "jaccard": dice - 0.1, "jaccard_t": dice - 0.2, "accuracy": 0.9,
                        "sensitivity": 0.8, "specificity": 0.95, "precision": 0.7, "loss": 0.3},
               "test_pooled_dice": dice, "latency_ms_batch1": 5.0, "latency_ms_batched": 1.0, "images_per_s": 1000.0,
               "data": data or DATA, "seed": seed, **extra}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def three_runs(tmp_path):
    return [make_run(tmp_path, "a1", "unet", 1, dice=0.80, params=2_000_000),
            make_run(tmp_path, "a2", "unet", 2, dice=0.90, params=2_000_000),
            make_run(tmp_path, "b1", "attunet", 1, dice=0.70, params=1_000_000)]


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
    assert "| unet | 2 (seeds 1, 2) | **0.8500 ± 0.0707** |" in md
    assert "| attunet | 1 (seeds 1) | 0.7000 |" in md and "**1.000**" in md
    assert "Dice ↑" in md and "Params (M) ↓" in md


def test_csv_has_raw_mean_and_std(three_runs):
    rows = list(csv.DictReader(table_csv(compare_table(collect_runs(three_runs))).splitlines()))
    assert [r["model"] for r in rows] == ["unet", "attunet"]
    assert float(rows[0]["dice_mean"]) == pytest.approx(0.85)
    assert float(rows[0]["dice_std"]) == pytest.approx(0.0707, abs=1e-4)
    assert rows[1]["dice_std"] == "" and float(rows[1]["params_mean"]) == 1_000_000
    assert rows[0]["seeds"] == "1 2" and rows[0]["runs"] == "2"


def test_write_report_files(three_runs, tmp_path):
    written = write_report(collect_runs(three_runs), tmp_path / "out" / "report.md")
    assert [p.name for p in written] == ["report.md", "report.csv", "report_quality_vs_params.png",
                                         "report_metrics.png"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    md = written[0].read_text()
    assert md.index("| Model |") < md.index("## Charts") < md.index("![report_metrics](report_metrics.png)")
    assert "Warning" not in md and str(three_runs[0]) in md


def test_chart_panels(three_runs, monkeypatch):
    from nas.plots import compare as charts

    captured = []
    monkeypatch.setattr(charts, "save_figure", lambda fig, path: captured.append(panels_of(fig)) or path)
    table = compare_table(collect_runs(three_runs))
    charts.scatter_chart(table, Path("x.png"))
    charts.bar_chart(table, Path("y.png"))
    assert captured == [["dice", "jaccard"], ["dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity"]]


def test_report_warns_on_different_data(tmp_path):
    runs = [make_run(tmp_path, "a", "unet"), make_run(tmp_path, "b", "attunet", data={**DATA, "image_size": 128})]
    md = write_report(collect_runs(runs), tmp_path / "r.md")[0].read_text()
    assert "Warning" in md and "image_size: 64, 128" in md


def test_labels_for_searched_nets_and_overrides(tmp_path):
    assert model_label({"model": "unet"}) == "unet"
    assert model_label({"model": "genotype", "genotype": "genotypes/searched_a.yaml"}) == "searched_a"
    assert model_label({"model": "x", "genotype": "runs/search-7/genotype.yaml"}) == "search-7"
    runs = [make_run(tmp_path, "g", "x", genotype="g/mine.yaml"), make_run(tmp_path, "u", "unet")]
    assert [r.label for r in collect_runs(runs)] == ["mine", "unet"]
    assert [r.label for r in collect_runs(runs, ["first", None])] == ["first", "unet"]


def test_missing_values_are_dashes_and_not_best(tmp_path):
    runs = [make_run(tmp_path, "a", "unet", macs=None, latency_ms_batch1=None), make_run(tmp_path, "b", "attunet")]
    table = compare_table(collect_runs(runs))
    cols = {c.key: c for c in table.columns}
    assert table.cell(table.rows[0], cols["macs"]) == "–" and table.best["macs"] == {"attunet"}


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


def test_cli_compare(three_runs, tmp_path, capsys):
    out = tmp_path / "cli" / "cmp.md"
    assert main(["compare", *map(str, three_runs), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unet" in printed and "0.8500 ± 0.0707" in printed and str(out) in printed
    assert out.is_file() and out.with_suffix(".csv").is_file()
    assert main(["compare"]) == 2
    assert "give run folders" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "summary.json: not found" in capsys.readouterr().err
