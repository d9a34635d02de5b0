"""Where `nas evaluate` and `nas predict` may write, checked before they write anything.

Predictions carry the dataset's own names (`ISIC_0000000_segmentation.png` is also the name of
the ground-truth mask), so a predictions folder inside a dataset would overwrite the ground truth.
Two rules: never write into a dataset folder (or any folder inside one), and never replace a
file that these commands did not write. A folder's `index.csv` (written first, before any image)
lists the files the commands wrote there; only those may be replaced by a later run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

from nas.errors import UserError
from nas.runs import atomic_write_text

TEST_SPLIT_DATA = "test split"  # the `data` of an evaluation of a run's own test split

INDEX_NAME = "index.csv"
# id, the input image, its ground truth (empty for `nas predict`), the mask written; then optional files
INDEX_COLUMNS = ("id", "image_path", "mask_path", "pred_path", "probability_path", "overlay_path")
OWNED_COLUMNS = ("pred_path", "probability_path", "overlay_path")  # plus inputs/ of synthetic data
INPUTS_FOLDER = "inputs"


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def is_inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies below it (symlinks resolved)."""
    p, f = _resolved(path), _resolved(folder)
    return p == f or f in p.parents


def check_outside_datasets(folder: Path, datasets: Iterable[Optional[Path]], option: str,
                           what: str = "the dataset folder") -> None:
    """UserError if `folder` is one of `datasets` (dataset or input folders) or lies inside one."""
    for root in datasets:
        if root is not None and is_inside(folder, root):
            raise UserError(f"{option} {folder}: inside {what} {root}; refusing to write into a dataset "
                            "(predictions carry the ground truth's names); choose a folder outside it")


def read_index(folder: Path) -> Optional[list[dict[str, str]]]:
    """The rows of `folder/index.csv` if it is one these commands wrote; None when absent.
    UserError when a file of that name exists but is not ours (it is never overwritten)."""
    path = folder / INDEX_NAME
    if not path.exists():
        return None
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        header = next(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        header, rows = [], []
    if tuple(header[:4]) != INDEX_COLUMNS[:4]:
        raise UserError(f"{path}: exists and was not written by nas evaluate/predict; refusing to overwrite it "
                        "(choose a new or empty folder)")
    return rows


def _owned_tails(rows: list[dict[str, str]]) -> set[tuple[str, ...]]:
    """Path tails (last 1 and 2 components) of every file an index lists, so that ownership does
    not depend on the working directory the index was written from."""
    tails: set[tuple[str, ...]] = set()
    for row in rows:
        written = [row.get(c) or "" for c in OWNED_COLUMNS]
        written += [t for t in (row.get("image_path") or "", row.get("mask_path") or "")
                    if Path(t).parent.name == INPUTS_FOLDER]  # generated inputs saved beside the masks
        for text in filter(None, written):
            parts = Path(text).parts
            tails.add(parts[-1:])
            tails.add(parts[-2:])
    return tails


def check_writable(folder: Path, planned: Sequence[Path], option: str) -> list[dict[str, str]]:
    """UserError naming the first planned file that exists and is not listed in `folder`'s
    index.csv; returns that index's rows (empty for a new folder)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder}: exists and is not a folder")
    rows = read_index(folder) or []
    owned = _owned_tails(rows)
    for path in planned:
        if not path.exists():
            continue
        if path.is_dir():
            raise UserError(f"{path}: a folder is in the way of a file {option} would write")
        rel = path.relative_to(folder).parts if is_inside(path, folder) else path.parts[-1:]
        if rel not in owned:
            raise UserError(f"{path}: already exists and was not written by nas evaluate/predict; refusing to "
                            f"overwrite it (choose a new or empty folder for {option})")
    return rows


def write_index(folder: Path, rows: Iterable[dict[str, str]], previous: Sequence[dict[str, str]] = ()) -> None:
    """Write `folder/index.csv`: `rows`, plus the `previous` rows of files not written again."""
    rows = list(rows)
    mine = {Path(r["pred_path"]).name for r in rows}
    kept = [r for r in previous if Path(r.get("pred_path") or "").name not in mine]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in [*kept, *rows]:
        writer.writerow({k: row.get(k) or "" for k in INDEX_COLUMNS})
    atomic_write_text(folder / INDEX_NAME, buf.getvalue())


def check_results_folder(folder: Path, datasets: Iterable[Optional[Path]], option: str,
                         scored: Optional[str] = None) -> None:
    """`nas evaluate --out`: outside every dataset, and either free of results or holding an earlier
    `nas evaluate` result (its summary.json says `kind: evaluate`) of the same data (`scored`:
    the folder or "test split"), which is replaced. Another dataset's results, e.g. of a folder of
    the same name elsewhere, are kept: `nas compare` would take the new ones for the old."""
    check_outside_datasets(folder, datasets, option)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder}: exists and is not a folder")
    summary = folder / "summary.json"
    taken = [folder / n for n in ("summary.json", "per_image.csv") if (folder / n).exists()]
    if not taken:
        return
    try:
        earlier = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
        kind, data = earlier.get("kind"), earlier.get("data")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        kind, data = None, None
    if kind != "evaluate":
        raise UserError(f"{taken[0]}: already exists and was not written by nas evaluate; refusing to overwrite it "
                        f"(choose another {option})")
    if scored is not None and isinstance(data, str) and not same_data(data, scored):
        raise UserError(f"{folder}: holds the evaluation of {data}, not of {scored}; choose another {option} "
                        f"(or delete that folder)")


def same_data(a: str, b: str) -> bool:
    """Whether two recorded `data` values (a folder, or the run's "test split") name the same
    data. A folder recorded relative to an unknown working directory cannot be told apart from
    another of the same name: it counts as the same."""
    if TEST_SPLIT_DATA in (a, b):
        return a == b
    if Path(a).is_absolute() and Path(b).is_absolute():
        return os.path.realpath(a) == os.path.realpath(b)
    return True
