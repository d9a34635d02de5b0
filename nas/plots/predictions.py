"""Best and worst test predictions by Dice: image, ground truth overlay, prediction overlay.

Reads only the run folder: `per_image.csv` (scores) and `predictions/index.csv`
(`id,image_path,mask_path,pred_path`, written by the evaluator with the prediction PNGs), so
the figure can be redrawn on a copied run. Relative paths are resolved against the run folder
first, then the working directory. A synthetic dataset has no image files; those panels say so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from nas.errors import UserError
from nas.plots.common import check_format, new_figure, panel_axes, plots_dir, read_csv_rows, save_figure, to_float

COLUMNS = ("image", "ground truth", "prediction")


def _resolve(run_dir: Path, text: str, index: Path) -> Optional[Path]:
    if not text:
        return None
    p = Path(text)
    for candidate in ([p] if p.is_absolute() else [run_dir / p, p]):
        if candidate.is_file():
            return candidate
    raise UserError(f"{index}: file {text} not found (looked in {run_dir} and the working directory)")


def _load(path: Optional[Path], size: Optional[tuple[int, int]], mask: bool):
    from PIL import Image

    if path is None:
        return None
    with Image.open(path) as img:
        img = img.convert("L" if mask else "RGB")
        if size is not None and img.size != size:  # predictions are at the image's size; resize, never crop
            img = img.resize(size, Image.NEAREST if mask else Image.BILINEAR)
        arr = np.asarray(img)
    return arr > 128 if mask else arr


def select_cases(scores: list[tuple[str, float]], n: int) -> list[tuple[str, str, float]]:
    """(tag, id, dice): the n best then the n worst, no image twice when there are few."""
    ranked = sorted(scores, key=lambda s: (-s[1], s[0]))
    best = ranked[:n]
    worst = [s for s in sorted(scores, key=lambda s: (s[1], s[0])) if s not in best][:n]
    return [("best", i, d) for i, d in best] + [("worst", i, d) for i, d in worst]


def _overlay(ax, base, mask, color: tuple[float, float, float], contour=None) -> None:
    shape = mask.shape if mask is not None else (contour.shape if contour is not None else None)
    if base is not None:
        ax.imshow(base)
    elif shape is not None:
        ax.imshow(np.zeros((*shape, 3)))
    if mask is not None:
        rgba = np.zeros((*mask.shape, 4))
        rgba[mask] = (*color, 0.45)
        ax.imshow(rgba)
    if contour is not None and contour.any() and not contour.all():
        ax.contour(contour.astype(float), levels=[0.5], colors=["lime"], linewidths=0.8)


def build_predictions_figure(run_dir: Path, cases: list[tuple[str, str, float]],
                             paths: dict[str, dict[str, Optional[Path]]], title: Optional[str] = None) -> Figure:
    names = [f"{tag}:{image_id}:{col}" for tag, image_id, _ in cases for col in COLUMNS]
    fig = new_figure(3 * 2.4, 2.3 * max(len(cases), 1) + 0.4)
    axes = panel_axes(fig, names, max_cols=3)
    for row, (tag, image_id, dice) in enumerate(cases):
        p = paths[image_id]
        pred = _load(p["pred"], None, mask=True)
        size = (pred.shape[1], pred.shape[0]) if pred is not None else None
        image = _load(p["image"], size, mask=False)
        gt = _load(p["mask"], size, mask=True)
        ax_img, ax_gt, ax_pred = axes[3 * row: 3 * row + 3]
        if image is not None:
            ax_img.imshow(image)
        else:
            ax_img.text(0.5, 0.5, "image not available\n(synthetic data)", ha="center", va="center",
                        transform=ax_img.transAxes, fontsize=7)
        _overlay(ax_gt, image, gt, (0.1, 0.8, 0.1))
        _overlay(ax_pred, image, pred, (0.9, 0.1, 0.1), contour=gt)
        ax_img.set_title(f"{tag}: {image_id}", fontsize=8)
        ax_gt.set_title("ground truth", fontsize=8)
        ax_pred.set_title(f"prediction (Dice {dice:.3f})", fontsize=8)
        for ax in (ax_img, ax_gt, ax_pred):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title or f'Test predictions, best and worst by Dice: {run_dir.name}'} "
                 f"(green contour = ground truth)", fontsize=9)
    return fig


def predictions_figure(run_dir: str | Path, n: int = 4, predictions_dir: Optional[str | Path] = None,
                       title: Optional[str] = None) -> Figure:
    """The figure of `plot_predictions` (n best and n worst by Dice), not yet saved; the
    comparison report draws its gallery with it."""
    if n < 1:
        raise UserError(f"plot predictions: n must be a positive int, got {n}")
    run_dir = Path(run_dir)
    scores_rows = read_csv_rows(run_dir / "per_image.csv",
                                "per-image test metrics written by `nas retrain`/`nas evaluate`", ("id", "dice"))
    index = Path(predictions_dir or run_dir / "predictions") / "index.csv"
    index_rows = read_csv_rows(index, "prediction list written by the evaluator",
                               ("id", "image_path", "mask_path", "pred_path"))
    by_id = {r["id"]: r for r in index_rows}
    scores = [(r["id"], to_float(r["dice"])) for r in scores_rows
              if r["id"] in by_id and not math.isnan(to_float(r["dice"]))]
    if not scores:
        raise UserError(f"{index}: none of the images in {run_dir / 'per_image.csv'} has a prediction listed")
    cases = select_cases(scores, n)
    paths = {image_id: {"image": _resolve(run_dir, by_id[image_id]["image_path"], index),
                        "mask": _resolve(run_dir, by_id[image_id]["mask_path"], index),
                        "pred": _resolve(run_dir, by_id[image_id]["pred_path"], index)}
             for _, image_id, _ in cases}
    return build_predictions_figure(run_dir, cases, paths, title)


def plot_predictions(run_dir: str | Path, n: int = 4, out_dir: Optional[str | Path] = None,
                     fmt: str = "png", predictions_dir: Optional[str | Path] = None) -> list[Path]:
    """Write `predictions.<fmt>` with the n best and n worst test images by Dice.

    `run_dir` holds `per_image.csv` (a retrain run, or a `nas evaluate --out` folder);
    `predictions_dir` (default `run_dir/predictions`) holds `index.csv` and the masks, i.e. what
    `nas evaluate --save-predictions DIR` wrote.
    """
    check_format(fmt)
    fig = predictions_figure(run_dir, n, predictions_dir)
    return [save_figure(fig, plots_dir(run_dir, out_dir) / f"predictions.{fmt}")]
