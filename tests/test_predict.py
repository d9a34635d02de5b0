"""Whole-image inference, scoring at the original size, `nas evaluate`/`nas predict` outputs and
where they may be written, and `nas export` reloaded without skipnas."""

import csv
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import TINY
from nas.cli import main
from nas.config import load_config
from nas.data import generate_pair
from nas.data.dataset import to_tensors
from nas.export import size_multiple
from nas.inference import predict_image, to_network_input
from nas.predict import load_trained_model
from nas.train import retrain

# odd, non-square sizes (h, w): the whole image must be seen and scored at exactly this size
SIZES = [(45, 71), (70, 50), (33, 57), (61, 39), (48, 80), (57, 45), (41, 63), (66, 38), (39, 39), (52, 74),
         (47, 61), (69, 43)]


def _scorer(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The ISIC scorer's per-image definitions from the confusion matrix (see test_metrics)."""
    tp, fp = int((pred & truth).sum()), int((pred & ~truth).sum())
    fn, tn = int((~pred & truth).sum()), int((~pred & ~truth).sum())
    j = 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
    return {"accuracy": (tp + tn) / (tp + tn + fp + fn), "sensitivity": 1.0 if tp + fn == 0 else tp / (tp + fn),
            "specificity": 1.0 if tn + fp == 0 else tn / (tn + fp), "jaccard": j, "jaccard_t": j if j >= 0.65 else 0.0,
            "dice": 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
            "precision": 1.0 if tp + fp == 0 else tp / (tp + fp)}


def _png_format(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from the PNG header: (8, 0) is 8-bit single-channel greyscale."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data[24], data[25]


def _folder_dataset(root: Path) -> Path:
    """A generic images/ + masks/ dataset of odd-sized, non-square pairs cut from synthetic lesions;
    pair 0 has an empty mask, pair 1 a mask that is lesion everywhere."""
    for i, (h, w) in enumerate(SIZES):
        rgb, mask = generate_pair(11, i, 96)
        rgb, mask = rgb[5:5 + h, 90 - w:90], mask[5:5 + h, 90 - w:90].copy()
        if i == 0:
            mask[:] = 0
        elif i == 1:
            mask[:] = 255
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"case{i:02d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"case{i:02d}.png"), mask)
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """(dataset folder, retrain run trained on it): unet width 4, 6 short epochs at 32 px, with a Dice
    loss so that its test masks are partial (neither empty nor everything), which the checks need."""
    base = tmp_path_factory.mktemp("folder_run")
    data = _folder_dataset(base / "data")
    cfg = load_config(None, TINY + ["model.name=unet", "model.width=4", "retrain.optimizer=adamw", "retrain.lr=0.01",
                                    "retrain.loss=dice", "train.epochs=6", "train.batch_size=2",
                                    f"data.root={data}", "data.split=[0.5, 0.17, 0.33]"])
    retrain(cfg, base / "run")
    return data, base / "run"


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_network_input_is_the_whole_image_at_the_training_input_size():
    rgb = np.zeros((45, 71, 3), np.uint8)
    rgb[:, 60:] = 255  # a white band at the right edge, outside the central 45x45 square
    x = to_network_input(rgb, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert float(x[:, :, -1].min()) == 1.0 and float(x[:, :, 0].max()) == 0.0  # the edges are kept, not cropped
    # an image already at the training size goes in exactly as a training image does
    same = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    training_input, _ = to_tensors(same, np.zeros((32, 32), np.uint8))
    assert torch.equal(to_network_input(same, 32), training_input)


class RedIsLesion(torch.nn.Module):
    """A fixed 1x1 convolution: logit = 20 * (red - green); lesion where an image is red."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([20.0, -20.0, 0.0]).view(1, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x)


def test_inference_sees_the_whole_image_and_answers_at_its_size():
    """A lesion at the far left of a wide image (outside the central square that training crops)
    comes back where it is, at the image's own size."""
    rgb = np.full((96, 192, 3), (150, 220, 200), np.uint8)
    rgb[20:70, 8:48] = (220, 40, 40)  # red block entirely left of the central 96x96 square (x 48..144)
    prob = predict_image(RedIsLesion(), rgb, image_size=48)  # runs at 48x48
    assert prob.shape == (96, 192)
    pred = prob > 0.5
    truth = np.zeros((96, 192), bool)
    truth[20:70, 8:48] = True
    assert _scorer(pred, truth)["dice"] > 0.97
    assert size_multiple(RedIsLesion()) == 16


def test_test_metrics_are_the_scorers_on_the_written_masks(folder_run, tmp_path):
    """retrain's per_image.csv and `nas evaluate`'s equal the scorer's definitions applied to the
    written PNGs and the original ground-truth files, at every image's original size."""
    data, run = folder_run
    preds = tmp_path / "preds"
    assert main(["evaluate", str(run), "--save-predictions", str(preds), "--out", str(tmp_path / "ev")]) == 0
    retrain_rows, eval_rows = _rows(run / "per_image.csv"), _rows(tmp_path / "ev" / "per_image.csv")
    assert set(retrain_rows) == set(eval_rows) and len(eval_rows) == 4
    assert list(next(iter(eval_rows.values())))[:8] == ["id", "dice", "jaccard", "jaccard_t", "accuracy",
                                                        "sensitivity", "specificity", "precision"]
    for image_id, row in eval_rows.items():
        pred_path = preds / f"{image_id}.png"
        assert _png_format(pred_path) == (8, 0)
        pred = cv2.imread(str(pred_path), cv2.IMREAD_UNCHANGED)
        truth = cv2.imread(str(data / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.shape == truth.shape == SIZES[int(image_id[4:])]
        assert set(np.unique(pred).tolist()) == {0, 255}  # a partial mask: the checks below have teeth
        expected = _scorer(pred > 128, truth > 128)
        for k, v in expected.items():
            assert float(row[k]) == pytest.approx(v, abs=1e-6), (image_id, k)
            assert float(retrain_rows[image_id][k]) == pytest.approx(v, abs=1e-6), (image_id, k)
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["test"]["dice"] == pytest.approx(np.mean([float(r["dice"]) for r in eval_rows.values()]), abs=1e-6)


def test_evaluate_scores_every_pair_of_another_folder_including_empty_and_full_masks(folder_run, tmp_path):
    data, run = folder_run
    preds = tmp_path / "p"
    assert main(["evaluate", str(run), "--data", str(data), "--save-predictions", str(preds), "--overlays",
                 "--out", str(tmp_path / "ev")]) == 0
    rows = _rows(tmp_path / "ev" / "per_image.csv")
    assert len(rows) == len(SIZES)
    for image_id in ("case00", "case01"):  # empty truth / all-lesion truth
        pred = cv2.imread(str(preds / f"{image_id}.png"), cv2.IMREAD_UNCHANGED) > 128
        truth = cv2.imread(str(data / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED) > 128
        for k, v in _scorer(pred, truth).items():
            assert float(rows[image_id][k]) == pytest.approx(v, abs=1e-6), (image_id, k)
    overlay = cv2.imread(str(preds / "overlays" / "case03.jpg"))
    assert overlay.shape[:2] == SIZES[3]
    index = _rows(preds / "index.csv")
    assert Path(index["case05"]["pred_path"]).name == "case05.png"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_refuses_to_write_into_a_dataset_or_over_foreign_files(folder_run, tmp_path, capsys):
    data, run = folder_run
    before = _tree(data)
    for target in (data / "masks", data, data / "new"):
        assert main(["evaluate", str(run), "--data", str(data), "--save-predictions", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "inside the dataset folder" in err, err
    # the run's own dataset counts too, also when another folder is evaluated
    assert main(["evaluate", str(run), "--save-predictions", str(data / "masks")]) == 2
    assert main(["evaluate", str(run), "--out", str(data / "scores")]) == 2
    assert capsys.readouterr().err.count("inside the dataset folder") == 2
    assert _tree(data) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "case03.png").write_bytes(b"my own file")
    assert main(["evaluate", str(run), "--data", str(data), "--save-predictions", str(foreign),
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip()
    assert "case03.png: already exists and was not written by nas" in err and "\n" not in err
    assert sorted(p.name for p in foreign.iterdir()) == ["case03.png"] and not (tmp_path / "ev").exists()
    # a folder these commands wrote may be written again
    again = tmp_path / "again"
    for _ in range(2):
        assert main(["evaluate", str(run), "--save-predictions", str(again), "--out", str(tmp_path / "ev2")]) == 0


def test_evaluate_keeps_the_results_of_another_folder_of_the_same_name(folder_run, tmp_path, capsys):
    """Default results folder RUN/evaluation-<folder name>: a second dataset that happens to have
    the same folder name must not replace the first one's scores (nas compare would pair them)."""
    import shutil

    data, run = folder_run
    other = tmp_path / "elsewhere" / data.name
    shutil.copytree(data, other)
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    first = run / f"evaluation-{data.name}"
    before = _tree(first)
    assert json.loads((first / "summary.json").read_text())["data"] == str(data.resolve())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"holds the evaluation of {data.resolve()}, not of {other.resolve()}" in err and "\n" not in err
    assert _tree(first) == before
    assert main(["evaluate", str(run), "--data", str(data)]) == 0  # the same data: replaced


def test_evaluate_of_a_run_reads_only_its_test_images(folder_run, tmp_path, monkeypatch):
    import nas.data.bundle as bundle

    data, run = folder_run
    test_ids = json.loads((run / "splits.json").read_text())["test"]
    read: list[str] = []
    real = bundle.prepare

    def counting(records, *args, **kwargs):
        read.extend(r.id for r in records)
        return real(records, *args, **kwargs)

    monkeypatch.setattr(bundle, "prepare", counting)
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev")]) == 0
    assert sorted(read) == sorted(test_ids) and sorted(_rows(tmp_path / "ev" / "per_image.csv")) == sorted(test_ids)


def test_evaluate_set_applies_data_keys_only(folder_run, tmp_path, capsys):
    data, run = folder_run
    bad = tmp_path / "bad"
    bad.mkdir()
    for sub in ("images", "masks"):
        (bad / sub).mkdir()
        for name in ("case02.png", "case04.png"):
            (bad / sub / name).write_bytes((data / sub / name).read_bytes())
    (bad / "images" / "case09.png").write_bytes((data / "images" / "case09.png").read_bytes()[:200])  # truncated
    (bad / "masks" / "case09.png").write_bytes((data / "masks" / "case09.png").read_bytes())
    assert main(["evaluate", str(run), "--data", str(bad), "--out", str(tmp_path / "e1")]) == 1
    assert "data.on_bad=skip" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--data", str(bad), "--out", str(tmp_path / "e2"),
                 "--set", "data.on_bad=skip"]) == 0
    assert sorted(_rows(tmp_path / "e2" / "per_image.csv")) == ["case02", "case04"]
    assert main(["evaluate", str(run), "--set", "model.width=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set model.width=8:") and "\n" not in err


def test_predict_writes_each_readable_image_at_its_size_and_names_the_unreadable(folder_run, tmp_path, capsys):
    data, run = folder_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    wide = cv2.imread(str(data / "images" / "case04.png"))          # 48x80
    cv2.imwrite(str(inputs / "ISIC_0001234_downsampled.jpg"), wide)
    cv2.imwrite(str(inputs / "photo.png"), cv2.imread(str(data / "images" / "case02.png")))  # 33x57
    (inputs / "cut.jpg").write_bytes((inputs / "ISIC_0001234_downsampled.jpg").read_bytes()[:300])
    (inputs / "readme.txt").write_text("not an image")                # not an image suffix: not read
    cv2.imwrite(str(inputs / "ISIC_0001234_superpixels.png"), wide)   # ISIC 2017 ships these beside the images
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), cv2.imread(str(data / "images" / "case07.png")))  # 66x38
    out = tmp_path / "out"
    code = main(["predict", str(run), str(inputs), str(single), str(tmp_path / "missing.jpg"), "--out", str(out),
                 "--probabilities", "16", "--overlays", "--checkpoint", "last"])
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err.strip()
    assert "\n" not in err and "2 of 5 images could not be read" in err
    assert f"{inputs / 'cut.jpg'}: truncated JPEG" in err and f"{tmp_path / 'missing.jpg'}: file not found" in err
    expected = {"ISIC_0001234": SIZES[4], "photo": SIZES[2], "single": SIZES[7]}
    model, _ = load_trained_model(run, "last", torch.device("cpu"))
    sources = {"ISIC_0001234": inputs / "ISIC_0001234_downsampled.jpg", "photo": inputs / "photo.png",
               "single": single}
    for key, shape in expected.items():
        mask_path = out / f"{key}_segmentation.png"
        assert _png_format(mask_path) == (8, 0)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == shape and set(np.unique(mask).tolist()) <= {0, 255}
        rgb = cv2.cvtColor(cv2.imread(str(sources[key])), cv2.COLOR_BGR2RGB)
        prob = predict_image(model, rgb, image_size=32)
        np.testing.assert_array_equal(mask, np.where(prob > 0.5, 255, 0))
        prob_path = out / "probabilities" / f"{key}_probability.png"
        assert _png_format(prob_path) == (16, 0)
        stored = cv2.imread(str(prob_path), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint16 and np.abs(stored / 65535.0 - prob).max() <= 0.5 / 65535 + 1e-6
        assert cv2.imread(str(out / "overlays" / f"{key}.jpg")).shape[:2] == shape
    assert sorted(_rows(out / "index.csv")) == sorted(expected)
    # again into the same folder: allowed (these files were written by nas predict), 8-bit maps
    assert main(["predict", str(run), str(single), "--out", str(out), "--probabilities"]) == 0
    assert _png_format(out / "probabilities" / "single_probability.png") == (8, 0)
    assert sorted(_rows(out / "index.csv")) == sorted(expected)
    # never into an input folder, never over a file it did not write
    assert main(["predict", str(run), str(inputs), "--out", str(inputs / "masks")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "single_segmentation.png").write_bytes(b"x")
    assert main(["predict", str(run), str(single), "--out", str(tmp_path / "other")]) == 2
    assert (tmp_path / "other" / "single_segmentation.png").read_bytes() == b"x"


RELOAD = r"""
import importlib.util, json, sys
import torch
assert importlib.util.find_spec("nas") is None, "skipnas must not be importable here"
extra = {"skipnas.json": ""}
program = torch.export.load(sys.argv[1], extra_files=extra)
meta = json.loads(extra["skipnas.json"])
inputs = torch.load(sys.argv[2])
outputs = [program.module()(x) for x in inputs]
torch.save({"outputs": outputs, "meta": meta}, sys.argv[3])
"""


def test_export_reloads_without_skipnas_and_matches_the_run(folder_run, tmp_path):
    _, run = folder_run
    program = tmp_path / "model.pt2"
    assert main(["export", str(run), "--out", str(program)]) == 0
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g),
              torch.randint(0, 256, (1, 3, 48, 80), dtype=torch.uint8, generator=g)]  # a second size
    torch.save(inputs, tmp_path / "inputs.pt")
    (tmp_path / "reload.py").write_text(RELOAD)
    # -I: no PYTHONPATH, no working directory on sys.path; -S: no site hooks (the editable install's
    # finder), only the interpreter's site-packages for torch
    site = sysconfig.get_paths()["purelib"]
    code = f"import sys; sys.path.append({site!r}); sys.argv = sys.argv[1:]; exec(open(sys.argv[0]).read())"
    subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path / "reload.py"), str(program),
                    str(tmp_path / "inputs.pt"), str(tmp_path / "outputs.pt")], check=True, cwd=tmp_path, timeout=120)
    result = torch.load(tmp_path / "outputs.pt")
    assert result["meta"]["dynamic"] is True and result["meta"]["image_size"] == 32
    model, _ = load_trained_model(run, "best", torch.device("cpu"))
    for x, y in zip(inputs, result["outputs"]):
        with torch.no_grad():
            expected = torch.sigmoid(model(x.float() / 255.0))
        assert y.shape == expected.shape
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)
    # an existing file that nas export did not write is not replaced
    (tmp_path / "notes.pt2").write_text("mine")
    assert main(["export", str(run), "--out", str(tmp_path / "notes.pt2")]) == 2


class FixedWidthHead(torch.nn.Module):
    """A network tied to its input width (a linear layer across the columns): no dynamic size."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mix = torch.nn.Linear(width, width)

    def forward(self, x):
        return self.mix(x[:, :1])


def test_export_falls_back_to_a_static_size_and_says_why():
    from nas.export import export_model

    torch.manual_seed(0)
    net = FixedWidthHead(32).eval()
    program, facts = export_model(net, 32)
    assert facts["dynamic"] is False and facts["dynamic_reason"].startswith("step 64:")
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)  # the batch stays dynamic
    with torch.no_grad():
        expected = torch.sigmoid(net(x.float() / 255))
    torch.testing.assert_close(program.module()(x), expected, atol=1e-6, rtol=0)
