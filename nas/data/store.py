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
from typing import Callable, Iterator, Optional

import numpy as np

from nas.data.cache import DiskCache, MemoryCache
from nas.data.preprocess import load_original, preprocess_image, preprocess_mask
from nas.data.records import Problem, Record
from nas.data.validate import PairInfo, lesion_fraction, read_checked_pair

Arrays = tuple[np.ndarray, np.ndarray]  # (image uint8 (S, S, 3) RGB, mask uint8 (S, S) in {0, 1})


class PairStore:
    """Preprocessed pairs of `records` (all good, `orig_size` known) by index."""

    def __init__(self, records: list[Record], size: int, memory: Optional[MemoryCache] = None,
                 slots: Optional[list[int]] = None, disk: Optional[DiskCache] = None) -> None:
        self.records = records
        self.size = size
        self.memory = memory
        self.slots = slots if slots is not None else list(range(len(records)))
        self.disk = disk

    def __len__(self) -> int:
        return len(self.records)

    def get(self, k: int) -> Arrays:
        if self.memory is not None:
            hit = self.memory.get(self.slots[k])
            if hit is not None:
                return hit
        rec = self.records[k]
        if self.disk is not None:
            cached = self.disk.load(rec)
            if cached is not None:
                return cached[0], cached[1]
        rgb, mask = load_original(rec)
        arrays = preprocess_image(rgb, self.size), preprocess_mask(mask, self.size)
        if self.memory is not None:
            self.memory.put(self.slots[k], *arrays)
        elif self.disk is not None:
            self.disk.save(rec, *arrays, PairInfo(rgb.shape[:2], lesion_fraction(mask)))
        return arrays

    def share_memory(self) -> None:
        if self.memory is not None:
            self.memory.share_memory()


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
            threads: Optional[int] = None,
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
        if disk is not None:
            hit = disk.load(rec)
            if hit is not None:
                return (hit[0], hit[1]), hit[2], []
        if rec.synthetic is not None:
            pair, problems = load_original(rec), []
        else:
            pair, problems = read_checked_pair(rec)
        if pair is None:
            return None, None, problems
        rgb, mask = pair
        info = PairInfo((int(rgb.shape[0]), int(rgb.shape[1])), lesion_fraction(mask))
        arrays = preprocess_image(rgb, size), preprocess_mask(mask, size)
        if disk is not None:
            disk.save(rec, *arrays, info)
        return arrays, info, []

    good: list[Record] = []
    infos: list[PairInfo] = []
    slots: list[int] = []
    problems: list[Problem] = []
    with ThreadPoolExecutor(max_workers=threads or default_threads()) as pool:
        for slot, (rec, (arrays, info, bad)) in enumerate(zip(records, pool.map(work, records))):
            if progress is not None:
                progress(slot + 1, len(records))
            if bad or info is None:
                problems.extend(bad)
                continue
            if memory is not None and arrays is not None:
                memory.put(slot, *arrays)
            good.append(dataclasses.replace(rec, orig_size=info.orig_size))
            infos.append(info)
            slots.append(slot)
    return Prepared(PairStore(good, size, memory, slots, disk), infos, problems)
