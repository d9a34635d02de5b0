"""Check one image/mask pair, and turn the problems of a whole dataset into one decision.

A pair is usable when both files decode completely, have the same size, and the mask is a
binary-ish 0/255 mask (JPEG-compressed or anti-aliased masks with a thin band of grey edge pixels
pass; a photo saved as a mask, or a 0/1 mask that would binarise to nothing at >128, does not).
With `data.on_bad: error` every problem is listed and the run stops before any training; with
`skip` the bad pairs are left out with a warning that counts them. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from nas.data.files import BadFile, read_mask, read_rgb
from nas.data.records import Problem, Record
from nas.errors import UserError

log = logging.getLogger("nas.data")

GREY_LOW, GREY_HIGH = 20, 235        # "strictly between" these is neither background nor lesion
MAX_GREY_FRACTION = 0.05             # more grey pixels than this: not a binary mask
MAX_LISTED_IN_WARNING = 20


@dataclass(frozen=True)
class PairInfo:
    """What reading a good pair taught us: original (h, w) and the lesion's share of the pixels."""

    orig_size: tuple[int, int]
    lesion_fraction: float


class DataError(UserError):
    """Bad data under `data.on_bad: error`; `problems` holds every one of them."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message, exit_code=1)
        self.problems = problems


def mask_problem(mask: np.ndarray) -> Optional[str]:
    """Why `mask` (uint8 grey) is not a usable binary mask, or None."""
    grey = cv2.countNonZero(cv2.inRange(mask, GREY_LOW + 1, GREY_HIGH - 1))
    if grey > MAX_GREY_FRACTION * mask.size:
        return (f"not a binary mask: {100.0 * grey / mask.size:.1f}% of pixels are grey "
                f"(between {GREY_LOW} and {GREY_HIGH}); expected 0 = background, 255 = lesion")
    if int(mask.max()) == 1:
        return "mask values are 0/1; expected 0/255 (masks are binarised at >128, so this would be empty)"
    return None


def check_pair(rgb: np.ndarray, mask: np.ndarray, record: Record) -> list[Problem]:
    """Size and mask-content checks of a decoded pair (the files themselves already decoded)."""
    problems = []
    if rgb.shape[:2] != mask.shape[:2]:
        (ih, iw), (mh, mw) = rgb.shape[:2], mask.shape[:2]
        problems.append(Problem(record.mask_path, f"mask is {mw}x{mh} but its image {record.image_path.name} "
                                                  f"is {iw}x{ih} (width x height); they must match"))
    reason = mask_problem(mask)
    if reason:
        problems.append(Problem(record.mask_path, reason))
    return problems


def read_checked_pair(record: Record) -> tuple[Optional[tuple[np.ndarray, np.ndarray]], list[Problem]]:
    """((rgb, mask), []) for a good pair, (None, problems) otherwise; every bad file is named."""
    problems: list[Problem] = []
    decoded = []
    for path, read in ((record.image_path, read_rgb), (record.mask_path, read_mask)):
        try:
            decoded.append(read(path))
        except BadFile as exc:
            problems.append(Problem(path, str(exc)))
    if problems:
        return None, problems
    rgb, mask = decoded
    problems = check_pair(rgb, mask, record)
    return (None, problems) if problems else ((rgb, mask), [])


def lesion_fraction(mask: np.ndarray) -> float:
    return cv2.countNonZero(cv2.threshold(mask, 128, 255, cv2.THRESH_BINARY)[1]) / mask.size


def all_empty_reason(fractions: list[float]) -> Optional[str]:
    """Why a set whose every mask is empty cannot be trained on, or None.

    Each such mask passes the per-file checks (an empty mask is legal: a lesion-free image), but
    a whole set of them means the masks were read wrongly or hold their lesion below the
    threshold: training would learn to predict nothing.
    """
    if not fractions or any(f > 0 for f in fractions):
        return None
    return (f"every one of the {len(fractions)} masks is empty (no pixel > 128): masks must be "
            "0 = background, 255 (or 65535 in 16 bits) = lesion")


def handle_problems(problems: list[Problem], on_bad: str, where: str | Path) -> None:
    """Raise DataError (on_bad=error, after printing the full list) or warn with a count (skip)."""
    if not problems:
        return
    n = len(problems)
    files = "file" if n == 1 else "files"
    if on_bad == "skip":
        listed = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED_IN_WARNING])
        more = f"\n  ... and {n - MAX_LISTED_IN_WARNING} more" if n > MAX_LISTED_IN_WARNING else ""
        log.warning("data.on_bad=skip: left out %d %s with problems under %s:\n%s%s", n, files, where, listed, more)
        return
    print(f"{n} data {files} with problems under {where}:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    raise DataError(f"{where}: {n} bad data {files} (first: {problems[0]}); fix them, or set "
                    f"data.on_bad=skip to leave them out (`nas data check {where}` lists them)", problems)
