"""Helpers for the data tests: tiny image/mask files in each dataset's published layout.

(No tests here; the other `test_data_*` modules import these helpers.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from nas.config import load_config

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2017-sample"
H, W = 30, 40  # non-square on purpose


def tiny_pair(index: int, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a dark ellipse and its 0/255 mask; differs per index."""
    rng = np.random.default_rng(index)
    img = np.full((h, w, 3), (200, 160, 140), np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2 + index % 3, h // 2), (w // 4, h // 4), 0, 0, 360, 255, -1)
    img[mask > 0] = (90, 50, 30)
    return img, mask


def write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr), path
    return path


def write_pairs(image_dir: Path, mask_dir: Path, ids: list[str], image_name: str = "{id}.jpg",
                mask_name: str = "{id}_segmentation.png", start: int = 0) -> None:
    for k, id_ in enumerate(ids):
        img, mask = tiny_pair(start + k)
        write(image_dir / image_name.format(id=id_), img)
        write(mask_dir / mask_name.format(id=id_), mask)


def isic_ids(start: int, n: int) -> list[str]:
    return [f"ISIC_{i:07d}" for i in range(start, start + n)]


def make_layout(root: Path, layout: str, n: int = 3) -> Path:
    """Write `n` pairs per split in `layout`'s published names under root; return the folder to load."""
    if layout == "isic2017":
        write_pairs(root / "ISIC-2017_Training_Data", root / "ISIC-2017_Training_Part1_GroundTruth", isic_ids(0, n))
        write_pairs(root / "ISIC-2017_Validation_Data", root / "ISIC-2017_Validation_Part1_GroundTruth",
                    isic_ids(100, n))
        write_pairs(root / "ISIC-2017_Test_v2_Data", root / "ISIC-2017_Test_v2_Part1_GroundTruth", isic_ids(200, n))
        write(root / "ISIC-2017_Training_Data" / "ISIC_0000000_superpixels.png", tiny_pair(0)[0])  # ignored
    elif layout == "isic2016":
        write_pairs(root / "ISBI2016_ISIC_Part1_Training_Data", root / "ISBI2016_ISIC_Part1_Training_GroundTruth",
                    isic_ids(0, n), mask_name="{id}_Segmentation.png")
        write_pairs(root / "ISBI2016_ISIC_Part1_Test_Data", root / "ISBI2016_ISIC_Part1_Test_GroundTruth",
                    isic_ids(200, n), mask_name="{id}_Segmentation.png")
    elif layout == "isic2018":
        write_pairs(root / "ISIC2018_Task1-2_Training_Input", root / "ISIC2018_Task1_Training_GroundTruth",
                    isic_ids(0, n))
        write_pairs(root / "ISIC2018_Task1-2_Validation_Input", root / "ISIC2018_Task1_Validation_GroundTruth",
                    isic_ids(100, n))
    elif layout == "ham10000":
        ids = isic_ids(24306, 2 * n)
        masks = root / "HAM10000_segmentations_lesion_tschandl"
        write_pairs(root / "HAM10000_images_part_1", masks, ids[:n])
        write_pairs(root / "HAM10000_images_part_2", masks, ids[n:], start=n)
    elif layout == "ph2":
        base = root / "PH2 Dataset images"
        for k in range(n):
            case = base / f"IMD{k + 2:03d}"
            img, mask = tiny_pair(k)
            write(case / f"{case.name}_Dermoscopic_Image" / f"{case.name}.bmp", img)
            write(case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp", mask)
    elif layout == "folder":
        names = [f"img{k}" for k in range(n)]
        for k, name in enumerate(names):
            img, mask = tiny_pair(k)
            write(root / "images" / f"{name}.png", img)
            suffix = ("", "_mask", "_segmentation")[k % 3]
            write(root / "masks" / f"{name}{suffix}.png", mask)
    else:  # pragma: no cover
        raise ValueError(layout)
    return root


def cfg_for(root: Optional[Path], *overrides: str):
    sets = [f"data.root={root}"] if root is not None else []
    return load_config(None, sets + ["data.image_size=16", "run.seed=3", *overrides])
