"""The teacher task: a dataset whose masks a known genotype's network drew (the search's positive control).

A search that cannot find a planted answer cannot be trusted to find an unknown one. The teacher
task plants one inside the full-scale search space itself: a :class:`GenotypeNet` built from a
known genotype (the *teacher*) with seeded random weights labels every image; a search on those
pairs should recover the teacher's cells. How it is built (docs/method.md, "The teacher task"):

1. Inputs: synthetic lesions (:mod:`nas.data.synthetic`, the default) or real images
   (``images=DIR``), each resized to ``size`` × ``size``: the resolution the search trains at,
   so the student sees exactly the pixels the teacher labelled (images are written as PNG, no
   JPEG loss between what the teacher saw and what the search reads).
2. Teacher: ``GenotypeNet(teacher, width_multiplier=1)`` with weights drawn from ``seed``; its
   BatchNorm statistics are computed on the inputs themselves (a cumulative average over every
   image in train mode), so every path carries a unit-scale signal and no layer saturates.
3. Masks: the teacher's target logit above its ``1 − fraction`` quantile over all pixels of
   all images (one global threshold, so a mask is a function of its own image alone).

What makes the answer identifiable is the teacher genotype (``experiments/teacher_genotype.yaml``):
most cells ``absent`` (their skips carry nothing the masks need), cells whose nodes use only
parameter-free ops (a fixed function no trained convolution reproduces exactly), and cells that
need a large receptive field (dilated and 7-wide separable ops).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import torch
from torch import nn

from nas.data.files import read_rgb, write_image
from nas.data.layouts import IMAGE_EXTS
from nas.data.synthetic import generate_pair
from nas.errors import UserError
from nas.genotype import Genotype, load_genotype, save_genotype

TEACHER_FILE = "teacher.yaml"
#: The synthetic generator's stream for teacher inputs (differs from the built-in dataset's seed).
INPUT_SEED_OFFSET = 7919
BATCH = 16


@dataclass
class TeacherSet:
    """What :func:`write_teacher_dataset` wrote: counts and the labelling threshold."""

    n: int
    size: int
    lesion_fraction: float
    threshold: float
    folder: Path


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                   and not p.stem.endswith(("_segmentation", "_superpixels", "_mask")))
    if not files:
        raise UserError(f"--images {folder}: no image files ({', '.join(IMAGE_EXTS)}) in it")
    return files


def teacher_inputs(n: int, size: int, seed: int, images: Optional[Path] = None) -> list[np.ndarray]:
    """``n`` RGB uint8 inputs of ``size`` × ``size``: synthetic lesions of ``seed``, or the first ``n``
    files of ``images`` (sorted by path) resized to the square."""
    if images is None:
        return [generate_pair(seed + INPUT_SEED_OFFSET, i, size)[0] for i in range(n)]
    files = _image_files(Path(images))
    if len(files) < n:
        raise UserError(f"--images {images}: {len(files)} images, fewer than --n {n}")
    out = []
    for path in files[:n]:
        try:
            rgb = read_rgb(path)
        except Exception as exc:  # one line naming the file, whatever the decoder said
            raise UserError(f"{path}: cannot read the image ({exc})") from None
        out.append(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA))
    return out


def build_teacher(genotype: Genotype, seed: int) -> nn.Module:
    """The teacher network: the genotype's net at width multiplier 1, weights drawn from ``seed``."""
    from nas.models.genotype_net import GenotypeNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GenotypeNet(genotype, width_multiplier=1.0)


def _batches(x: torch.Tensor) -> list[torch.Tensor]:
    return [x[i:i + BATCH] for i in range(0, len(x), BATCH)]


@torch.no_grad()
def teacher_logits(net: nn.Module, images: list[np.ndarray], progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Target logits ``[N, H, W]`` after BatchNorm statistics are set on these very images."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over every batch
    net.train()
    for b in _batches(x):
        net(b)
        if progress:
            progress(len(b))
    net.eval()
    out = []
    for b in _batches(x):
        out.append(net(b)[:, 0])
        if progress:
            progress(len(b))
    return torch.cat(out)


def write_teacher_dataset(teacher: str | Path, out: str | Path, n: int, size: int, seed: int = 0,
                          images: Optional[str | Path] = None, fraction: float = 0.3,
                          progress: Optional[Callable[[int], None]] = None) -> TeacherSet:
    """Write ``out/images/teacher_NNNNN.png`` + ``out/masks/teacher_NNNNN.png`` (a generic
    ``folder`` dataset) labelled by the teacher genotype's network, and copy the genotype to
    ``out/teacher.yaml``. ``progress`` is called with image counts (2 passes + writing = 3 n)."""
    if size % 16:
        raise UserError(f"--size {size}: must be a multiple of 16 (the U-Net halves it 4 times)")
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--fraction {fraction}: expected a number in (0, 1)")
    genotype = load_genotype(Path(teacher))
    inputs = teacher_inputs(n, size, seed, Path(images) if images is not None else None)
    logits = teacher_logits(build_teacher(genotype, seed), inputs, progress)
    flat = logits.flatten()
    sample = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[:1_000_000]]
    threshold = float(torch.quantile(sample.double(), 1.0 - fraction))
    masks = (logits > threshold).numpy().astype(np.uint8) * 255
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i, (rgb, mask) in enumerate(zip(inputs, masks)):
        write_image(out / "images" / f"teacher_{i:05d}.png", rgb)
        write_image(out / "masks" / f"teacher_{i:05d}.png", mask)
        if progress:
            progress(1)
    save_genotype(genotype, out / TEACHER_FILE)
    return TeacherSet(n=n, size=size, lesion_fraction=float((masks > 0).mean()), threshold=threshold, folder=out)


__all__ = ["TEACHER_FILE", "TeacherSet", "build_teacher", "teacher_inputs", "teacher_logits",
           "write_teacher_dataset"]
