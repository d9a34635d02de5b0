"""`nas evaluate`: score a trained run on any dataset and write predictions at original size.

Masks are written with the dataset's own naming (`ISIC_xxxxxxx_segmentation.png` for ISIC-style
layouts) and at each image's original size, so the official challenge scorer reads them unchanged.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import torch

from nas.config import config_from_dict
from nas.errors import UserError
from nas.evaluation import evaluate_loader, measure_latency
from nas.loop import checkpoint_path, load_checkpoint
from nas.runs import atomic_write_bytes, atomic_write_text, write_json
from nas.runtime import setup_runtime
from nas.session import read_run_config
from nas.train import build_from_spec, retrain_loss, write_per_image

ISIC_LAYOUTS = {"isic2016", "isic2017", "isic2018", "ham10000", "synthetic"}


def prediction_name(record_id: str, layout: str) -> str:
    return f"{record_id}_segmentation.png" if layout in ISIC_LAYOUTS else f"{record_id}.png"


def to_original_size(prob: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
    """Undo the centre-crop + resize: a {0,255} uint8 mask of the original (h, w).

    The probability map is resized (bilinear) to the crop's side before thresholding, so the
    boundary is as smooth as the network's output allows; outside the crop is background.
    """
    from nas.data import uncrop

    big = uncrop(prob.astype(np.float32), orig_hw)
    return np.where(big > 0.5, 255, 0).astype(np.uint8)


def _encode_png(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", mask)
    if not ok:  # pragma: no cover - cv2 always encodes uint8 PNGs
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


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


def _write_inputs(dataset: Any, i: int, record_id: str, folder: Path) -> tuple[Path, Path]:
    """Save a generated (file-less) pair as PNGs so predictions can be looked at later."""
    image, mask = dataset[i]
    rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    paths = (folder / "inputs" / f"{record_id}.png", folder / "inputs" / f"{record_id}_mask.png")
    atomic_write_bytes(paths[0], _encode_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))
    atomic_write_bytes(paths[1], _encode_png((mask[0].numpy() * 255).astype(np.uint8)))
    return paths


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


def evaluate_run(run_dir: Path, checkpoint: str = "best", data_root: Optional[str] = None,
                 layout: Optional[str] = None, save_predictions: Optional[Path] = None,
                 overlays: bool = False, tta: bool = False, out_dir: Optional[Path] = None,
                 device: Optional[str] = None) -> dict[str, Any]:
    """Evaluate `run_dir`'s model on its test split, or on every pair of `data_root`."""
    from nas.data import build_data, build_eval_dataset, load_original, make_loader

    run_dir = Path(run_dir)
    cfg = config_from_dict(read_run_config(run_dir), str(run_dir / "config.yaml"))
    cfg.run.distributed = "false"
    if device:
        cfg.run.device = device
    rt = setup_runtime(cfg.run)
    model, ckpt = load_trained_model(run_dir, checkpoint, rt.device)
    if data_root is not None:
        cfg.data.root = data_root
        cfg.data.layout = layout or "auto"
        cfg.data.limit = None
        dataset = build_eval_dataset(cfg)
        name = Path(data_root).name
    else:
        dataset = build_data(cfg, "train", splits=ckpt.get("splits")).test
        name = "test"
    if len(dataset) == 0:
        raise UserError(f"{data_root or run_dir}: no images to evaluate")
    layout_name = getattr(dataset, "layout", cfg.data.layout)
    net = TTAModel(model) if tta else model
    loader = make_loader(dataset, batch_size=cfg.train.eval_batch_size, shuffle=False, seed=cfg.run.seed,
                         workers=cfg.run.workers)
    index_rows: list[list[str]] = []

    def on_batch(prob: torch.Tensor, offset: int) -> None:
        if save_predictions is None:
            return
        for i, p in enumerate(prob[:, 0].float().cpu().numpy()):
            rec = dataset.records[offset + i]
            mask = to_original_size(p, tuple(rec.orig_size))
            pred_path = save_predictions / prediction_name(rec.id, layout_name)
            atomic_write_bytes(pred_path, _encode_png(mask))
            image_path, mask_path = rec.image_path, rec.mask_path
            if image_path is None:  # synthetic data: keep the inputs beside the predictions
                image_path, mask_path = _write_inputs(dataset, offset + i, rec.id, save_predictions)
            index_rows.append([rec.id, str(image_path), str(mask_path or ""), str(pred_path)])
            if overlays and rec.image_path is not None:
                rgb, gt = load_original(rec)
                ok, buf = cv2.imencode(".jpg", overlay(rgb, mask, gt))
                atomic_write_bytes(save_predictions / "overlays" / f"{rec.id}.jpg", buf.tobytes())

    result = evaluate_loader(net, loader, rt, retrain_loss(cfg), on_batch=on_batch)
    out_dir = Path(out_dir) if out_dir else run_dir / f"evaluation-{name}"
    write_per_image(out_dir / "per_image.csv", dataset.ids, result)
    if save_predictions is not None:
        buf = io.StringIO()
        csv.writer(buf).writerows([["id", "image_path", "mask_path", "pred_path"], *index_rows])
        atomic_write_text(save_predictions / "index.csv", buf.getvalue())
    summary = {"kind": "evaluate", "model": ckpt["model_spec"]["label"], "run": str(run_dir),
               "checkpoint": checkpoint, "data": data_root or "test split", "images": len(dataset),
               "tta": tta, "test": {k: v for k, v in result.summary.items() if k != "pooled_dice"},
               "test_pooled_dice": result.summary.get("pooled_dice"),
               **measure_latency(net, cfg.data.image_size, rt)}
    write_json(out_dir / "summary.json", summary)
    if save_predictions is not None:
        from nas.plots import plot_predictions

        plot_predictions(out_dir, predictions_dir=save_predictions, out_dir=out_dir / "plots")
    summary["out_dir"] = str(out_dir)
    return summary
