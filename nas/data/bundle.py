"""`build_data(cfg, purpose)`: the one entry point the training, search and evaluation code use.

Pipeline: list pairs (layout or synthetic) -> limit, or the ids of a saved split -> read, check,
preprocess and cache once -> report bad files (error or skip) -> split -> datasets. Only the
training sets (`train`, `w_half`, `a_half`) augment; `val` and `test` never do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nas.config import Config
from nas.data.augment import build_augmenter
from nas.data.dataset import SegmentationDataset
from nas.data.groups import assign_groups, groups_path
from nas.data.layouts import scan_folder
from nas.data.records import Problem, Record
from nas.data.splits import HALVES, SPLITS, apply_limit, check_splits, make_splits, search_halves
from nas.data.store import PairStore, prepare, progress_bar
from nas.data.synthetic import DEFAULT_SEED, synthetic_records
from nas.data.validate import all_empty_reason, handle_problems
from nas.errors import UserError

log = logging.getLogger("nas.data")
PURPOSES = ("search", "train", "evaluate")
# Split parts each purpose cannot do without: a retrain ("train") picks its best checkpoint on
# val and reports test; scoring a run ("evaluate") reads test; a search trains on both halves
# of train (at least 2 pairs, see `search_halves`) and only logs val when there is one.
NEEDED_PARTS = {"search": ("train",), "train": SPLITS, "evaluate": ("test",)}
USED_BY = {"search": "nas search", "train": "nas retrain", "evaluate": "nas evaluate"}


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


@dataclass
class Listing:
    """The pairs of the configured dataset (each with its `group` when `data.groups` gives one),
    the pairing problems, and the groups file they came from (None: one group per pair)."""

    layout: str
    records: list[Record]
    problems: list[Problem]
    groups_file: Optional[Path] = None


def list_records(cfg: Config) -> Listing:
    """The pairs of `data.root`, or the synthetic set when it is unset, grouped per `data.groups`."""
    d = cfg.data
    if d.root is None:
        if d.layout not in ("auto", "synthetic"):
            raise UserError(f"data.layout={d.layout} needs data.root (the dataset folder); "
                            "leave data.root unset only for the built-in synthetic data")
        path = groups_path(d.groups, None)
        records = synthetic_records(d.synthetic_n, d.image_size, DEFAULT_SEED)
        return Listing("synthetic", assign_groups(records, path), [], path)
    if d.layout == "synthetic":
        raise UserError(f"data.layout=synthetic generates its data; unset data.root ({d.root}) "
                        "or choose the layout of that folder")
    scan = scan_folder(d.root, d.layout)
    for note in scan.notes:
        log.warning("%s", note)
    path = groups_path(d.groups, scan.groups_file)
    return Listing(scan.layout, assign_groups(scan.records, path), scan.problems, path)


def load_store(cfg: Config, ids: Optional[set[str]] = None) -> tuple[Listing, PairStore, list[Problem]]:
    """(listing, store of the good pairs, problems left out): list, limit (or keep `ids`), read, check.

    Raises UserError on bad data under `data.on_bad: error`, or when no usable pair is left.
    """
    d = cfg.data
    listing = list_records(cfg)
    records, problems = listing.records, listing.problems
    records = [r for r in records if r.id in ids] if ids is not None else apply_limit(records, d.limit)
    with progress_bar(len(records)) as callback:
        prepared = prepare(records, d.image_size, d.cache, d.cache_dir, progress=callback)
    problems = problems + prepared.problems
    where = d.root if d.root is not None else "synthetic data"
    handle_problems(problems, d.on_bad, where)
    if not prepared.store.records:
        raise UserError(f"{where}: no usable image/mask pairs")
    return listing, prepared.store, problems


def build_data(cfg: Config, purpose: str, splits: Optional[dict[str, Any]] = None) -> DataBundle:
    """Datasets for `purpose` ("search": adds `w_half`/`a_half`; "train"/"evaluate": not).

    `splits` (a run's saved `splits.json`) reuses that exact split instead of making one.
    Raises UserError on bad data (`data.on_bad: error`) or a split that does not fit the data.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"build_data: purpose must be one of {PURPOSES}, got {purpose!r}")
    d, seed = cfg.data, cfg.run.seed
    wanted = None
    # a saved split read to evaluate needs only its test part read and checked (not the whole set)
    parts = ("test",) if purpose == "evaluate" and splits is not None else SPLITS
    if splits is not None:
        wanted = {i for k in parts for i in splits.get(k, [])} if isinstance(splits, dict) else set()
    listing, store, problems = load_store(cfg, wanted)
    layout = listing.layout
    index = {r.id: k for k, r in enumerate(store.records)}
    if splits is not None:
        check_splits(splits, set(index), "splits.json", parts)
    else:
        split_seed = seed if d.split_seed is None else d.split_seed
        splits = make_splits(store.records, d.split, split_seed, d.official_split, layout, listing.groups_file)
        grouped = f" ({splits['groups']['count']} groups)" if "groups" in splits else ""
        log.info("data: %s, %d pairs%s, split %s", layout, len(store.records), grouped, splits["source"])
    check_parts(splits, purpose, cfg, len(store.records))
    if purpose in ("search", "train"):
        reason = all_empty_reason([store.records[index[i]].lesion_fraction or 0.0 for i in splits["train"]])
        if reason:
            where = d.root if d.root is not None else "synthetic data"
            raise UserError(f"{where}: training split: {reason}; see `nas data check {where}`", exit_code=1)
    augment = build_augmenter(d.augment)

    def view(ids: list[str], train: bool) -> SegmentationDataset:
        return SegmentationDataset(store, [index[i] for i in ids], augment if train else None, seed, layout)

    def part(k: str) -> list[str]:
        return splits[k] if k in parts else []

    bundle = DataBundle(view(part("train"), True), view(part("val"), False), view(part("test"), False),
                        splits, layout, d.root, skipped=problems)
    if purpose == "search":
        if not all(isinstance(splits.get(h), list) for h in HALVES):
            groups = {r.id: r.group for r in store.records if r.group is not None}
            splits["w_half"], splits["a_half"] = search_halves(splits["train"], seed, groups)
        bundle.w_half = view(splits["w_half"], True)
        bundle.a_half = view(splits["a_half"], True)
    return bundle


def check_parts(splits: dict[str, Any], purpose: str, cfg: Config, n_pairs: int) -> None:
    """One line when a split part that `purpose` needs is empty, before any training starts
    (an empty test part used to end a retrain with `test dice nan` and exit 0)."""
    sizes = {k: len(splits.get(k) or []) for k in SPLITS}
    empty = [k for k in NEEDED_PARTS[purpose] if sizes[k] == 0]
    if not empty:
        return
    d = cfg.data
    parts = " and ".join(empty)
    counts = ", ".join(f"{k} {v}" for k, v in sizes.items())
    needs = ", ".join(NEEDED_PARTS[purpose])
    if n_pairs < len(NEEDED_PARTS[purpose]) + 1 or (d.limit is not None and d.limit < 8):
        hint = "use more pairs" + (f" (raise data.limit, now {d.limit})" if d.limit is not None else "")
    elif str(splits.get("source", "")).startswith("official"):
        hint = ("give the missing part a fraction > 0 in data.split (it is then carved from the "
                "official training set), or set data.official_split=false")
    else:
        hint = "give every needed part a fraction > 0, e.g. data.split=[0.7, 0.15, 0.15]"
    are = "parts of the {n} usable pairs are" if len(empty) > 1 else "part of the {n} usable pairs is"
    raise UserError(f"data.split {list(d.split)}: the {parts} {are.format(n=n_pairs)} empty "
                    f"({counts}; split {splits.get('source', 'saved')}); {USED_BY[purpose]} needs {needs} "
                    f"pairs: {hint}")


def build_eval_dataset(cfg: Config) -> SegmentationDataset:
    """Every usable pair of `data.root` (after `data.limit`), unsplit and never augmented: for
    scoring a trained model on another dataset."""
    listing, store, _ = load_store(cfg)
    return SegmentationDataset(store, range(len(store)), None, cfg.run.seed, listing.layout)
