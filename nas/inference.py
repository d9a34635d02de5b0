"""Whole-image inference: the network sees every pixel of an image and its probability comes back
at the image's own size.

Training keeps the thesis preprocessing (centre-crop to a square, resize to `data.image_size`).
Inference must not crop: a lesion may extend past the central square. The whole image, uncropped
and unpadded, is resized (INTER_AREA, as in training) to the network's training input,
`image_size` x `image_size`; the lesion probability is resized back (bilinear, pixel-centre
aligned) to the original (h, w) and thresholded there (`> 0.5`). Both resizes act on the full
frame, so they are each other's geometric inverse. A non-square image is squeezed along its longer
side (a 768x1024 image by 0.75 across); the network still gets exactly the input shape, and the
shorter side exactly the scale, it was trained on. Measured on the ISIC 2017 sample with the
official scorer, this scored better than keeping the aspect ratio (shorter side `image_size`,
longer side 176 px instead of 128) and than the old centre crop with background outside it
(two U-Nets, 64 and 128 px: mean Dice 0.658/0.706 vs 0.590/0.649 vs 0.647/0.685 over 52 images).
A square image of `image_size` (the synthetic data) goes through unchanged.

`iter_predictions` is the one path from "model + original images" to "original-size
probabilities" that `nas retrain` (test metrics), `nas evaluate` and `nas predict` share.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from nas.errors import UserError
from nas.losses import target_probability
from nas.metrics import MASK_THRESHOLD, THRESHOLD
from nas.runtime import Runtime

# (rgb uint8 (h, w, 3), mask uint8 (h, w) as stored or None); raises UserError on an unreadable file
Reader = Callable[[int], tuple[np.ndarray, Optional[np.ndarray]]]


def to_network_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """uint8 RGB (h, w, 3) -> float32 [3, size, size] in [0, 1]: the whole image resized with
    INTER_AREA, the interpolation the training preprocessing uses, and the training data's 1/255."""
    if rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.multiply(rgb.transpose(2, 0, 1), np.float32(1.0 / 255.0), dtype=np.float32))


def mask_at_input(mask: np.ndarray, size: int) -> torch.Tensor:
    """Ground truth at the network input size, float32 [1, size, size] in {0, 1} (`> 128`), for the
    loss only (nearest-exact, as the training masks are resized)."""
    if mask.shape[:2] != (size, size):
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    return torch.from_numpy((mask > MASK_THRESHOLD).astype(np.float32)[None])


def probability_at_original_size(logits: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
    """Lesion probability float32 [h, w] from one image's logits [C, H, W] (bilinear, half-pixel centres)."""
    prob = target_probability(logits[None])
    if tuple(prob.shape[-2:]) != tuple(orig_hw):
        prob = F.interpolate(prob, size=tuple(orig_hw), mode="bilinear", align_corners=False)
    return prob[0, 0]


def binary_mask(prob: torch.Tensor) -> np.ndarray:
    """uint8 (h, w) 0/255 mask from a probability map: lesion where prob > 0.5, the same threshold as
    the metrics, so the written PNG scores exactly as `per_image.csv` says."""
    return ((prob > THRESHOLD).to(torch.uint8) * 255).cpu().numpy()


@dataclass
class WholeImage:
    """One original image made ready for the network, or the reason it could not be read."""

    index: int
    orig_hw: tuple[int, int] = (0, 0)
    image: Optional[torch.Tensor] = None    # float32 [3, H, W] network input
    mask: Optional[np.ndarray] = None       # ground truth uint8 (h, w) as stored, if any
    target: Optional[torch.Tensor] = None   # ground truth at the input size [1, H, W], for the loss
    rgb: Optional[np.ndarray] = None        # the original RGB, only when asked for (overlays)
    error: Optional[str] = None


class WholeImageDataset(Dataset):
    """Items `WholeImage(i)` for i < n from `read(i)`; a read failure becomes `error`, not an exception,
    so a caller can go on with the other images."""

    def __init__(self, read: Reader, n: int, image_size: int, keep_rgb: bool = False,
                 with_target: bool = False) -> None:
        self.read, self.n, self.image_size = read, n, image_size
        self.keep_rgb, self.with_target = keep_rgb, with_target

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> WholeImage:
        try:
            rgb, mask = self.read(i)
        except UserError as exc:
            return WholeImage(i, error=str(exc))
        orig_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        target = mask_at_input(mask, self.image_size) if (self.with_target and mask is not None) else None
        return WholeImage(i, orig_hw, to_network_input(rgb, self.image_size), mask, target,
                          rgb if self.keep_rgb else None)


def read_record(records: Sequence, i: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A dataset record's original image and mask (synthetic records are regenerated)."""
    from nas.data import load_original

    return load_original(records[i])


def read_image_file(paths: Sequence[Path], i: int) -> tuple[np.ndarray, None]:
    """An image file with no ground truth; UserError naming the file when it cannot be read."""
    from nas.data.files import BadFile, read_rgb

    try:
        return read_rgb(paths[i]), None
    except BadFile as exc:
        raise UserError(f"{paths[i]}: {exc}") from None


def records_reader(records: Sequence) -> Reader:
    return partial(read_record, list(records))


def files_reader(paths: Sequence[Path]) -> Reader:
    return partial(read_image_file, [Path(p) for p in paths])


def _as_is(item: WholeImage) -> WholeImage:
    return item


def whole_image_loader(dataset: WholeImageDataset, workers: int = 0) -> DataLoader:
    """Items one by one, in order, decoded in `workers` background processes."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is)


def batches(items: Iterable[WholeImage], batch_size: int) -> Iterator[list[WholeImage]]:
    """Consecutive readable items, up to `batch_size`; an unreadable item comes alone. Order is kept."""
    pending: list[WholeImage] = []
    for item in items:
        if pending and (item.image is None or len(pending) >= batch_size):
            yield pending
            pending = []
        if item.image is None:
            yield [item]
        else:
            pending.append(item)
    if pending:
        yield pending


@torch.no_grad()
def iter_predictions(model: torch.nn.Module, items: Iterable[WholeImage], rt: Runtime,
                     batch_size: int = 8) -> Iterator[tuple[WholeImage, Optional[torch.Tensor], Optional[torch.Tensor]]]:
    """(item, logits [C, H, W], probability [h, w] at the original size) per item, in order; the
    tensors are None for an unreadable item. The model is put in eval mode."""
    was_training = model.training
    model.eval()
    try:
        for batch in batches(items, max(1, batch_size)):
            if batch[0].image is None:
                yield batch[0], None, None
                continue
            x = rt.to_device(torch.stack([it.image for it in batch]))
            with rt.autocast():
                logits = model(x)
            for it, lg in zip(batch, logits):
                yield it, lg, probability_at_original_size(lg, it.orig_hw)
    finally:
        model.train(was_training)


def predict_image(model: torch.nn.Module, rgb: np.ndarray, image_size: int,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Lesion probability float32 (h, w) of one uint8 RGB image at its own size (what `nas predict`
    computes per image, without files)."""
    rt = Runtime(torch.device(device))
    ds = WholeImageDataset(lambda i: (rgb, None), 1, image_size)
    (_, _, prob), = iter_predictions(model, [ds[0]], rt, 1)
    return prob.float().cpu().numpy()
