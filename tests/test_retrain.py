"""`nas retrain` and `nas evaluate` end to end: run folder, resume equality, genotype nets,
predictions at original size."""

import csv
import json
from pathlib import Path

import cv2
import pytest
import torch

from nas.cli import main
from nas.config import load_config
from nas.loop import Trainer
from nas.predict import evaluate_run
from nas.train import retrain

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic2017-sample"


def _unet(tiny_overrides, *extra):
    return load_config(None, tiny_overrides + ["model.name=unet", "model.width=4", "retrain.optimizer=adamw",
                                               "retrain.lr=0.003", *extra])


def test_retrain_writes_run_folder(tmp_path, tiny_overrides):
    summary = retrain(_unet(tiny_overrides, "train.epochs=1"), tmp_path / "r")
    run = tmp_path / "r"
    for name in ("config.yaml", "splits.json", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt",
                 "per_image.csv", "summary.json"):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["kind"] == "retrain" and on_disk["model"] == "unet" and on_disk["epochs"] == 1
    assert on_disk["params"] == sum(p.numel() for p in __import__("nas.models", fromlist=["x"])
                                    .build_model("unet", width=4).parameters())
    assert on_disk["macs"] > 0 and on_disk["latency_ms_batch1"] > 0
    assert set(summary["test"]) >= {"dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity"}
    with (run / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == on_disk["data"]["sizes"]["test"]
    assert abs(sum(float(r["dice"]) for r in rows) / len(rows) - summary["test"]["dice"]) < 1e-5


def test_retrain_kill_and_resume_ends_identical(tmp_path, tiny_overrides, monkeypatch, interrupt_at_step,
                                               log_rows):
    cfg = _unet(tiny_overrides)
    retrain(cfg, tmp_path / "straight")
    original = interrupt_at_step(7)  # epoch 2 of 6-step epochs
    with pytest.raises(Exception, match="interrupted at epoch 2"):
        retrain(cfg, tmp_path / "resumed")
    monkeypatch.setattr(Trainer, "fit", original)
    assert main(["retrain", "--resume", str(tmp_path / "resumed")]) == 0
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # every row, the interrupted epoch's train row included, as in the uninterrupted run
    assert log_rows(tmp_path / "resumed") == log_rows(tmp_path / "straight")


def test_genotype_pipeline_search_discretize_retrain(tmp_path, tiny_overrides):
    args = ["search", "--out", str(tmp_path / "s")]
    for o in tiny_overrides + ["train.epochs=1"]:
        args += ["--set", o]
    assert main(args) == 0
    assert main(["discretize", str(tmp_path / "s")]) == 0
    genotype = tmp_path / "s" / "genotype.yaml"
    assert genotype.is_file()
    args = ["retrain", "--genotype", str(genotype), "--out", str(tmp_path / "g")]
    for o in tiny_overrides + ["train.epochs=1"]:
        args += ["--set", o]
    assert main(args) == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["genotype"] == str(genotype) and summary["params"] > 0


def test_evaluate_scores_with_the_retrain_loss(tmp_path, tiny_overrides):
    """`nas evaluate` reports the loss retrain trained with: `retrain.loss` and `train.bce_pos_weight`."""
    cfg = _unet(tiny_overrides, "train.epochs=1", "train.loss=dice", "retrain.loss=bce", "train.bce_pos_weight=5")
    summary = retrain(cfg, tmp_path / "r")
    evaluated = evaluate_run(tmp_path / "r", out_dir=tmp_path / "ev")
    assert evaluated["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)


def test_retrain_config_errors_are_one_line(tmp_path, capsys, tiny_overrides):
    assert main(["retrain", "--out", str(tmp_path / "x")]) == 2
    assert "model.name" in capsys.readouterr().err
    assert main(["retrain", "--model", "no_such_net", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_net" in err and "\n" not in err


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared/data sample not present")
def test_evaluate_writes_masks_at_original_size(tmp_path, tiny_overrides):
    args = ["retrain", "--model", "unet", "--out", str(tmp_path / "r")]
    for o in tiny_overrides + ["train.epochs=1", "model.width=4", f"data.root={SAMPLE}", "data.limit=12"]:
        args += ["--set", o]
    assert main(args) == 0
    preds = tmp_path / "preds"
    assert main(["evaluate", str(tmp_path / "r"), "--data", str(SAMPLE), "--save-predictions", str(preds),
                 "--overlays", "--out", str(tmp_path / "ev")]) == 0
    with (preds / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 52
    for row in rows[:6]:
        pred = cv2.imread(row["pred_path"], cv2.IMREAD_UNCHANGED)
        image = cv2.imread(row["image_path"], cv2.IMREAD_UNCHANGED)
        assert Path(row["pred_path"]).name == f"{row['id']}_segmentation.png"
        assert pred.shape == image.shape[:2] and image.shape[0] != image.shape[1]
        assert set(pred.flatten().tolist()) <= {0, 255}
    assert (preds / "overlays" / f"{rows[0]['id']}.jpg").is_file()
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["images"] == 52 and 0 <= summary["test"]["dice"] <= 1
