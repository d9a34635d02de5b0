"""The two value types that flow between the data modules: one image/mask pair and one problem.

Kept in their own module so that layouts, validation, caching, splitting and the datasets can
exchange them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Record:
    """One image/mask pair.

    `orig_size` is the (h, w) of the ORIGINAL image file; the evaluator needs it to write
    predictions back at full resolution. It is (0, 0) until the pair has been read and checked.
    `subset` is the dataset's official split ("train", "val", "test") when its layout has one.
    `synthetic` is (seed, index, size) for generated pairs, which have no files.
    `lesion_fraction` is the share of mask pixels > 128, known (like `orig_size`) once read.
    `group` is the lesion (or other unit) the pair belongs to, from a groups file: a seeded split
    keeps every group whole (`nas.data.groups`); None = the pair is a group of its own.
    """

    id: str
    image_path: Optional[Path]
    mask_path: Optional[Path]
    orig_size: tuple[int, int] = (0, 0)
    subset: Optional[str] = None
    synthetic: Optional[tuple[int, int, int]] = None
    lesion_fraction: Optional[float] = None
    group: Optional[str] = None


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file, worded so that the user can fix it."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
