"""Where preprocessed pairs come from: one checked, preprocessing pass up front, then the cache.

`prepare` reads every pair once, in a thread pool (OpenCV releases the GIL while decoding), checks
it (`validate`), preprocesses it and fills the cache. Doing this before training means bad data
stops a run in seconds rather than in the middle of epoch 1, and the memory cache is complete
before DataLoader workers fork. `PairStore.get(k)` then serves uint8 arrays; with `cache: none`
it decodes again on every access.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from nas.data.cache import DiskCache, MemoryCache
from nas.data.preprocess import load_original, preprocess_image, preprocess_mask
from nas.data.records import Problem, Record
from nas.data.validate import PairInfo, lesion_fraction, read_checked_pair

Arrays = tuple[np.ndarray, np.ndarray]  # (image uint8 (S, S, 3) RGB, mask uint8 (S, S) in {0, 1})


class PairStore:
    """Preprocessed pairs of `records` (all good, `orig_size` known) by index.

    `slots[k]` is record k's slot in `memory`, which `prepare` has filled for every good pair.
    """

    def __init__(self, records: list[Record], size: int, slots: list[int], memory: Optional[MemoryCache] = None,
                 disk: Optional[DiskCache] = None) -> None:
        self.records = records
        self.size = size
        self.slots = slots
        self.memory = memory
        self.disk = disk

    def __len__(self) -> int:
        return len(self.records)

    def get(self, k: int) -> Arrays:
        if self.memory is not None:
            return self.memory.get(self.slots[k])
        rec = self.records[k]
        path = self.disk.path(rec) if self.disk is not None else None
        if path is not None:
            cached = self.disk.load(path)
            if cached is not None:
                return cached
        rgb, mask = load_original(rec)
        return _preprocess(rgb, mask, self.size, self.disk, path)[0]

    def share_memory(self) -> None:
        if self.memory is not None:
            self.memory.share_memory()


def _preprocess(rgb: np.ndarray, mask: np.ndarray, size: int, disk: Optional[DiskCache],
                path: Optional[Path]) -> tuple[Arrays, PairInfo]:
    """Preprocess a decoded pair and learn its PairInfo; saved as the disk entry `path` if given."""
    info = PairInfo((int(rgb.shape[0]), int(rgb.shape[1])), lesion_fraction(mask))
    arrays = preprocess_image(rgb, size), preprocess_mask(mask, size)
    if disk is not None and path is not None:
        disk.save(path, *arrays, info)
    return arrays, info


@dataclass
class Prepared:
    """The good pairs (`store.records`), what was learned about each (`infos`) and the bad files."""

    store: PairStore
    infos: list[PairInfo]
    problems: list[Problem]


@contextmanager
def progress_bar(total: int) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A transient rich progress bar for long preparation passes on a terminal; else no callback."""
    if total < 500 or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading and checking pairs", total=total)
        yield lambda done, _total: bar.update(task, completed=done)


def default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def prepare(records: list[Record], size: int, cache: str = "memory", cache_dir: Optional[str] = None,
            progress: Optional[Callable[[int, int], None]] = None) -> Prepared:
    """Read, check, preprocess and cache every record. Never raises on bad data: returns it.

    `cache` is "memory", "disk" or "none" (check and preprocess only, as `nas data check` does);
    synthetic records have no files to key a disk cache on, so they use memory instead.
    """
    if cache == "disk" and any(r.synthetic is not None for r in records):
        cache = "memory"
    disk = DiskCache(cache_dir, size) if cache == "disk" else None
    memory = MemoryCache(len(records), size) if cache == "memory" else None

    def work(rec: Record) -> tuple[Optional[Arrays], Optional[PairInfo], list[Problem]]:
        """(arrays, info, []) for a good pair (arrays None on a disk-cache hit), (None, None, problems) else."""
        path = disk.path(rec) if disk is not None else None
        if path is not None:
            info = disk.info(path)  # the arrays stay on disk until PairStore.get needs them
            if info is not None:
                return None, info, []
        if rec.synthetic is not None:
            pair, problems = load_original(rec), []
        else:
            pair, problems = read_checked_pair(rec)
        if pair is None:
            return None, None, problems
        arrays, info = _preprocess(*pair, size, disk, path)
        return arrays, info, []

    good: list[Record] = []
    infos: list[PairInfo] = []
    slots: list[int] = []
    problems: list[Problem] = []
    with ThreadPoolExecutor(max_workers=default_threads()) as pool:
        for slot, (rec, (arrays, info, bad)) in enumerate(zip(records, pool.map(work, records))):
            if progress is not None:
                progress(slot + 1, len(records))
            if info is None:  # read_checked_pair gives no pair only with problems
                problems.extend(bad)
                continue
            if memory is not None:  # then there is no disk cache, so `work` returned the arrays
                memory.put(slot, *arrays)
            good.append(dataclasses.replace(rec, orig_size=info.orig_size, lesion_fraction=info.lesion_fraction))
            infos.append(info)
            slots.append(slot)
    return Prepared(PairStore(good, size, slots, memory, disk), infos, problems)
