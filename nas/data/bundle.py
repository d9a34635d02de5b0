"""`build_data(cfg, purpose)`: the one entry point the training, search and evaluation code use.

Pipeline: list pairs (layout or synthetic) -> limit, or the ids of a saved split -> read, check,
preprocess and cache once -> report bad files (error or skip) -> split -> datasets. Only the
training sets (`train`, `w_half`, `a_half`) augment; `val` and `test` never do.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nas.config import Config
from nas.data.augment import build_augmenter
from nas.data.dataset import SegmentationDataset
from nas.data.layouts import scan_folder
from nas.data.records import Problem, Record
from nas.data.splits import HALVES, SPLITS, apply_limit, check_splits, make_splits, search_halves
from nas.data.store import Prepared, prepare
from nas.data.synthetic import DEFAULT_SEED, synthetic_records
from nas.data.validate import handle_problems
from nas.errors import UserError

log = logging.getLogger("nas.data")
PURPOSES = ("search", "train", "evaluate")


@dataclass
class DataBundle:
    """Datasets of one run. `splits` is what `splits.json` holds; `skipped` the files left out."""

    train: SegmentationDataset
    val: SegmentationDataset
    test: SegmentationDataset
    splits: dict[str, Any]
    layout: str
    root: Optional[str]
    w_half: Optional[SegmentationDataset] = None
    a_half: Optional[SegmentationDataset] = None
    skipped: list[Problem] = field(default_factory=list)


def list_records(cfg: Config) -> tuple[str, list[Record], list[Problem]]:
    """(layout name, pairs, pairing problems) for `data.root`, or the synthetic set when it is unset."""
    d = cfg.data
    if d.root is None:
        if d.layout not in ("auto", "synthetic"):
            raise UserError(f"data.layout={d.layout} needs data.root (the dataset folder); "
                            "leave data.root unset only for the built-in synthetic data")
        return "synthetic", synthetic_records(d.synthetic_n, d.image_size, DEFAULT_SEED), []
    if d.layout == "synthetic":
        raise UserError(f"data.layout=synthetic generates its data; unset data.root ({d.root}) "
                        "or choose the layout of that folder")
    scan = scan_folder(d.root, d.layout)
    for note in scan.notes:
        log.warning("%s", note)
    return scan.layout, scan.records, scan.problems


def _progress(total: int):
    """A rich progress bar for long preparation passes on a terminal, else None."""
    if total < 500 or not sys.stderr.isatty():
        return None, None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task("reading and checking pairs", total=total)
    return bar, (lambda done, _total: bar.update(task, completed=done))


def _prepare(cfg: Config, records: list[Record]) -> Prepared:
    bar, callback = _progress(len(records))
    if bar is not None:
        bar.start()
    try:
        return prepare(records, cfg.data.image_size, cfg.data.cache, cfg.data.cache_dir, progress=callback)
    finally:
        if bar is not None:
            bar.stop()


def build_data(cfg: Config, purpose: str, splits: Optional[dict[str, Any]] = None) -> DataBundle:
    """Datasets for `purpose` ("search": adds `w_half`/`a_half`; "train"/"evaluate": not).

    `splits` (a run's saved `splits.json`) reuses that exact split instead of making one.
    Raises UserError on bad data (`data.on_bad: error`) or a split that does not fit the data.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"build_data: purpose must be one of {PURPOSES}, got {purpose!r}")
    d, seed = cfg.data, cfg.run.seed
    layout, records, problems = list_records(cfg)
    if splits is not None:
        wanted = {i for k in SPLITS for i in splits.get(k, [])} if isinstance(splits, dict) else set()
        records = [r for r in records if r.id in wanted]
    else:
        records = apply_limit(records, d.limit)
    prepared = _prepare(cfg, records)
    problems = problems + prepared.problems
    where = d.root if d.root is not None else "synthetic data"
    handle_problems(problems, d.on_bad, where)
    store = prepared.store
    index = {r.id: k for k, r in enumerate(store.records)}
    if splits is not None:
        check_splits(splits, set(index), "splits.json")
    else:
        if not store.records:
            raise UserError(f"{where}: no usable image/mask pairs")
        splits = make_splits(store.records, d.split, seed, d.official_split, layout)
        log.info("data: %s, %d pairs, split %s", layout, len(store.records), splits["source"])
    augment = build_augmenter(d.augment)

    def view(ids: list[str], train: bool) -> SegmentationDataset:
        return SegmentationDataset(store, [index[i] for i in ids], augment if train else None, seed)

    bundle = DataBundle(view(splits["train"], True), view(splits["val"], False), view(splits["test"], False),
                        splits, layout, d.root, skipped=problems)
    if purpose == "search":
        if not all(isinstance(splits.get(h), list) for h in HALVES):
            splits["w_half"], splits["a_half"] = search_halves(splits["train"], seed)
        bundle.w_half = view(splits["w_half"], True)
        bundle.a_half = view(splits["a_half"], True)
    return bundle
