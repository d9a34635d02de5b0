"""`nas evaluate` and `nas predict`: a trained run on whole images, masks at each image's original size.

Both go through `nas.inference` (the whole image at the training scale, the probability back at
the original size, threshold 0.5), so a mask PNG scores with the ISIC challenge's scorer exactly
as `per_image.csv` says. Masks are 8-bit single-channel PNGs holding 0 and 255, named the
dataset's way (`ISIC_0000000_segmentation.png` for ISIC-style layouts), which is what the
official scorer reads. Where they may be written is checked first (`nas.outputs`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import cv2
import numpy as np
import torch

from nas.config import Config, config_from_dict, load_config, parse_override
from nas.errors import UserError
from nas.evaluation import evaluate_whole_images, measure_latency
from nas.inference import WholeImageDataset, binary_mask, files_reader, iter_predictions, whole_image_loader
from nas.loop import checkpoint_path, load_checkpoint
from nas.outputs import (INPUTS_FOLDER, TEST_SPLIT_DATA, check_outside_datasets, check_results_folder,
                         check_writable, write_index)
from nas.runs import atomic_write_bytes, write_json
from nas.runtime import setup_runtime
from nas.session import read_run_config
from nas.train import build_from_spec, retrain_loss, write_per_image

ISIC_LAYOUTS = {"isic2016", "isic2017", "isic2018", "ham10000", "synthetic"}
ISIC_ID = re.compile(r"ISIC_[0-9]{7}")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = "_segmentation.png"
# Files that ship beside the images in dataset folders and are not images to segment (ISIC 2017's
# `ISIC_0000000_superpixels.png`), skipped when a folder is given.
NOT_INPUTS = ("_superpixels",)
PROBABILITY_BITS = (8, 16)
# `--set` keys that make sense for a trained model: where the data is and how it is read, where
# and how the model runs. The model itself comes from the checkpoint.
SETTABLE = ("data.", "run.", "train.eval_batch_size")


def prediction_name(record_id: str, layout: str) -> str:
    return f"{record_id}{MASK_SUFFIX}" if layout in ISIC_LAYOUTS else f"{record_id}.png"


def file_key(path: Path) -> str:
    """The name a prediction of an image file is filed under: its ISIC id if the name holds one
    (`ISIC_0000000_downsampled.jpg` -> `ISIC_0000000`), else the file's stem."""
    m = ISIC_ID.search(path.stem)
    return m.group(0) if m else path.stem


def encode_png(arr: np.ndarray) -> bytes:
    """A single-channel PNG of a 2-D uint8 (8-bit) or uint16 (16-bit) array."""
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png: expected a 2-D uint8/uint16 array, got {arr.dtype} {arr.shape}")
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover - cv2 always encodes these
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_png_rgb(rgb: np.ndarray) -> bytes:
    """An RGB uint8 (h, w, 3) image as a PNG (the generated inputs of synthetic data)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def probability_png(prob: torch.Tensor, bits: int) -> bytes:
    """The probability map as a greyscale PNG: value = round(p * 255) (8-bit) or round(p * 65535) (16-bit)."""
    top = 255 if bits == 8 else 65535
    arr = np.rint(prob.float().clamp(0, 1).cpu().numpy() * top).astype(np.uint8 if bits == 8 else np.uint16)
    return encode_png(arr)


def overlay(rgb: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray]) -> np.ndarray:
    """Image with the ground-truth contour in green and the prediction contour in red (BGR out)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thick = max(1, round(max(rgb.shape[:2]) / 200))
    if gt is not None:
        cs, _ = cv2.findContours((gt > 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(bgr, cs, -1, (0, 255, 0), thick)
    cs, _ = cv2.findContours((pred > 128).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(bgr, cs, -1, (0, 0, 255), thick)
    return bgr


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class TTAModel(torch.nn.Module):
    """Test-time augmentation: mean logits over identity, horizontal, vertical and both flips."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for dims in ((), (3,), (2,), (2, 3)):
            xi = torch.flip(x, dims) if dims else x
            yi = self.model(xi)
            out = out + (torch.flip(yi, dims) if dims else yi)
        return out / 4


def load_trained_model(run_dir: Path, which: str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The network of a `nas retrain` run from `best` (falls back to `last`), `last`, or a .pt path."""
    path = Path(which) if which not in ("best", "last") else checkpoint_path(run_dir, which)
    if which == "best" and not path.is_file():
        path = checkpoint_path(run_dir, "last")
    ckpt = load_checkpoint(path, device)
    if "model_spec" not in ckpt:
        raise UserError(f"{path}: not a retrain checkpoint (no model_spec); evaluate runs of `nas retrain`")
    model = build_from_spec(ckpt["model_spec"]).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


def run_config(run_dir: Path, overrides: Sequence[str] = (), command: str = "evaluate",
               data_root: Optional[str] = None, layout: Optional[str] = None) -> tuple[Config, Optional[str]]:
    """(the run's saved config, with `--data`/`--layout` and then the `--set` overrides applied;
    the data root the run was trained on). Only data.*, run.* and train.eval_batch_size may be set."""
    for text in overrides:
        key = parse_override(text)[0]
        if not any(key == s or (s.endswith(".") and key.startswith(s)) for s in SETTABLE):
            raise UserError(f"--set {text}: nas {command} takes data.*, run.* and train.eval_batch_size keys only "
                            "(the model and its training settings come from the run)")
    tree = read_run_config(run_dir)
    if not isinstance(tree, dict) or not isinstance(tree.get("data"), dict):
        raise UserError(f"{run_dir / 'config.yaml'}: not a run config (no data section)")
    trained_on = tree["data"].get("root")
    if data_root is not None:
        tree["data"] = {**tree["data"], "root": str(data_root), "layout": layout or "auto", "limit": None}
    source = str(run_dir / "config.yaml")
    cfg = load_config(None, list(overrides), base=tree) if overrides else config_from_dict(tree, source)
    cfg.run.distributed = "false"
    return cfg, trained_on


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr (shown on a terminal only); yields `advance()`."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def _roots(*paths: Optional[str | Path]) -> list[Path]:
    return [Path(p) for p in paths if p]


def evaluate_run(run_dir: Path, checkpoint: str = "best", data_root: Optional[str] = None,
                 layout: Optional[str] = None, save_predictions: Optional[Path] = None,
                 overlays: bool = False, tta: bool = False, out_dir: Optional[Path] = None,
                 device: Optional[str] = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate `run_dir`'s model on its test split, or on every pair of `data_root`, at each
    image's original size; `overrides` are `--set` texts (data.*, run.*, train.eval_batch_size)."""
    from nas.data import build_data, build_eval_dataset

    run_dir = Path(run_dir)
    cfg, trained_on = run_config(run_dir, overrides, "evaluate", data_root, layout)
    if device:
        cfg.run.device = device
    name = Path(data_root).name if data_root is not None else "test"
    out_dir = Path(out_dir) if out_dir else run_dir / f"evaluation-{name}"
    datasets = _roots(cfg.data.root, trained_on)
    scored = str(Path(data_root).resolve()) if data_root is not None else TEST_SPLIT_DATA
    check_results_folder(out_dir, datasets, "--out", scored)
    if save_predictions is not None:
        save_predictions = Path(save_predictions)
        check_outside_datasets(save_predictions, datasets, "--save-predictions")
    rt = setup_runtime(cfg.run)
    model, ckpt = load_trained_model(run_dir, checkpoint, rt.device)
    if data_root is not None:
        dataset = build_eval_dataset(cfg)
    else:
        dataset = build_data(cfg, "evaluate", splits=ckpt.get("splits")).test
    if len(dataset) == 0:
        raise UserError(f"{data_root or run_dir}: no images to evaluate")
    records = dataset.records
    layout_name = getattr(dataset, "layout", cfg.data.layout)

    rows: dict[str, dict[str, str]] = {}
    if save_predictions is not None:
        for rec in records:
            generated = rec.image_path is None  # synthetic: keep the inputs beside the predictions
            inputs = save_predictions / INPUTS_FOLDER
            rows[rec.id] = {
                "id": rec.id,
                "image_path": str(inputs / f"{rec.id}.png" if generated else rec.image_path),
                "mask_path": str(inputs / f"{rec.id}_mask.png" if generated else (rec.mask_path or "")),
                "pred_path": str(save_predictions / prediction_name(rec.id, layout_name)),
                "overlay_path": str(save_predictions / "overlays" / f"{rec.id}.jpg") if overlays else ""}
        planned = [Path(r[k]) for r in rows.values() for k in ("pred_path", "overlay_path") if r[k]]
        planned += [Path(r[k]) for rec, r in zip(records, rows.values()) if rec.image_path is None
                    for k in ("image_path", "mask_path")]
        previous = check_writable(save_predictions, planned, "--save-predictions")
        write_index(save_predictions, rows.values(), previous)  # the files' owner is recorded first

    def write(item: Any, prob: torch.Tensor) -> None:
        rec = records[item.index]
        row = rows[rec.id]
        mask = binary_mask(prob)
        atomic_write_bytes(row["pred_path"], encode_png(mask))
        if rec.image_path is None:
            atomic_write_bytes(row["image_path"], encode_png_rgb(item.rgb))
            atomic_write_bytes(row["mask_path"], encode_png(item.mask))
        if overlays:
            atomic_write_bytes(row["overlay_path"], _jpeg(overlay(item.rgb, mask, item.mask)))

    net = TTAModel(model) if tta else model
    keep_rgb = save_predictions is not None and (overlays or any(r.image_path is None for r in records))
    with progress_bar(len(records), f"evaluating {name}") as advance:
        def on_image(item: Any, prob: torch.Tensor) -> None:
            if save_predictions is not None:
                write(item, prob)
            advance()

        result = evaluate_whole_images(net, records, cfg.data.image_size, rt, retrain_loss(cfg),
                                       batch_size=cfg.train.eval_batch_size, workers=cfg.run.workers,
                                       keep_rgb=keep_rgb, on_image=on_image)
    write_per_image(out_dir / "per_image.csv", [r.id for r in records], result)
    summary = {"kind": "evaluate", "model": ckpt["model_spec"]["label"], "run": str(run_dir),
               "checkpoint": checkpoint, "data": scored, "images": len(records),
               "tta": tta,
               "test": {k: v for k, v in result.summary.items() if k != "pooled_dice"},
               "test_pooled_dice": result.summary.get("pooled_dice"),
               **measure_latency(net, cfg.data.image_size, rt)}
    write_json(out_dir / "summary.json", summary)
    if save_predictions is not None:
        from nas.plots import plot_predictions

        plot_predictions(out_dir, predictions_dir=save_predictions, out_dir=out_dir / "plots")
    summary["out_dir"] = str(out_dir)
    return summary


def collect_images(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(image files, folders given): every file named, and the image files (by suffix, not
    recursive, hidden files and :data:`NOT_INPUTS` skipped) of every folder named, once each, in
    the order given."""
    files: list[Path] = []
    folders: list[Path] = []
    seen: set[Path] = set()
    for text in inputs:
        p = Path(text)
        if p.is_dir():
            folders.append(p)
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.stem.lower().endswith(NOT_INPUTS))
            if not found:
                raise UserError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        else:
            found = [p]  # a missing or unreadable file is reported at the end, with the others written
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    if not files:
        raise UserError("no input images given")
    return files, folders


def predict_images(run_dir: Path, inputs: Sequence[str | Path], out: Path, checkpoint: str = "best",
                   probabilities: Optional[int] = None, overlays: bool = False, tta: bool = False,
                   device: Optional[str] = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Masks (and optionally probability maps, overlays) for images without ground truth, at each
    image's original size. Unreadable images are skipped and listed in the result's `failed`
    (`path: reason`); every other image is written."""
    run_dir, out = Path(run_dir), Path(out)
    if probabilities is not None and probabilities not in PROBABILITY_BITS:
        raise UserError(f"--probabilities {probabilities}: expected 8 or 16 (bits per pixel)")
    cfg, trained_on = run_config(run_dir, overrides, "predict")
    if device:
        cfg.run.device = device
    files, folders = collect_images(inputs)
    check_outside_datasets(out, _roots(trained_on), "--out", "the run's dataset folder")
    check_outside_datasets(out, folders, "--out", "the input folder")
    for f in files:
        if out.resolve() == f.parent.resolve():
            raise UserError(f"--out {out}: the folder of the input image {f}; choose another folder for the predictions")
    rows: list[dict[str, str]] = []
    owner: dict[str, Path] = {}
    for f in files:
        key = file_key(f)
        if key in owner:
            raise UserError(f"{f}: its prediction would have the same name as that of {owner[key]} "
                            f"({key}{MASK_SUFFIX}); predict them into separate folders")
        owner[key] = f
        rows.append({"id": key, "image_path": str(f), "mask_path": "",
                     "pred_path": str(out / f"{key}{MASK_SUFFIX}"),
                     "probability_path": str(out / "probabilities" / f"{key}_probability.png") if probabilities else "",
                     "overlay_path": str(out / "overlays" / f"{key}.jpg") if overlays else ""})
    planned = [Path(r[k]) for r in rows for k in ("pred_path", "probability_path", "overlay_path") if r[k]]
    previous = check_writable(out, planned, "--out")
    rt = setup_runtime(cfg.run)
    model, ckpt = load_trained_model(run_dir, checkpoint, rt.device)
    net = TTAModel(model) if tta else model
    write_index(out, rows, previous)  # the files' owner is recorded before any of them is written

    dataset = WholeImageDataset(files_reader(files), len(files), cfg.data.image_size, keep_rgb=overlays)
    failed: list[str] = []
    with progress_bar(len(files), "predicting") as advance:
        for item, _, prob in iter_predictions(net, whole_image_loader(dataset, cfg.run.workers), rt,
                                              cfg.train.eval_batch_size):
            row = rows[item.index]
            if item.error is not None:
                failed.append(item.error)
                row["pred_path"] = ""
            else:
                mask = binary_mask(prob)
                atomic_write_bytes(row["pred_path"], encode_png(mask))
                if probabilities:
                    atomic_write_bytes(row["probability_path"], probability_png(prob, probabilities))
                if overlays:
                    atomic_write_bytes(row["overlay_path"], _jpeg(overlay(item.rgb, mask, None)))
            advance()
    write_index(out, [r for r in rows if r["pred_path"]], previous)
    return {"images": len(files), "written": len(files) - len(failed), "failed": failed, "out": str(out),
            "model": ckpt["model_spec"]["label"], "image_size": cfg.data.image_size}
