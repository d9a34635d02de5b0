"""The torch side: a Dataset view over a PairStore, and a seeded DataLoader factory.

Train, val, test and the search halves are views (index lists) over one store, so each pair is
decoded and cached once however many splits use it. An item is a pure function of
(store, index, seed, epoch): `set_epoch` is called in the main process before each epoch's
iterator is created, and workers are not persistent, so they always see the current epoch.
"""

from __future__ import annotations

import multiprocessing
import random
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from nas.data.augment import Augmenter
from nas.data.records import Record
from nas.data.seeding import make_rng
from nas.data.store import PairStore

# OpenCV's own thread pool does not survive fork(): a DataLoader worker forked after the parent
# ran any parallel cv2 call (resize, warpAffine) can wait forever for pool threads that do not
# exist in the child (seen here as a flaky hang with workers=2). Turning cv2's intra-op threading
# off in this process (as mmcv/mmengine do) makes forking safe; the data code parallelises across
# images instead (thread pool in `store.prepare`, DataLoader workers).
cv2.setNumThreads(0)


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (S, S, 3) RGB + uint8 (S, S) -> float32 [3, S, S] in [0, 1] and float32 [1, S, S] in {0, 1}.

    Converted with NumPy, not torch: per-item tensors are small, and torch's intra-op thread pool
    made each of these element-wise ops take milliseconds on a busy 2-core machine.
    """
    x = np.multiply(image.transpose(2, 0, 1), np.float32(1.0 / 255.0), dtype=np.float32)
    y = (mask > 0).astype(np.float32)[None]
    return torch.from_numpy(x), torch.from_numpy(y)


class SegmentationDataset(Dataset):
    """Items `(image [3,H,W], mask [1,H,W])`; `records[i]` describes item i (id, paths, orig_size).

    `layout` names where the pairs came from (e.g. "isic2017", "synthetic"), so a consumer can
    name its output files the dataset's way.
    """

    def __init__(self, store: PairStore, indices: Sequence[int], augment: Optional[Augmenter] = None,
                 seed: int = 0, layout: str = "unknown") -> None:
        self.store = store
        self.layout = layout
        self.indices = list(indices)
        self.records: list[Record] = [store.records[k] for k in self.indices]  # a store's records never change
        self.ids: list[str] = [r.id for r in self.records]
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation of item i becomes a function of (seed, epoch, i) only."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.store.get(self.indices[i])
        if self.augment is not None:
            rng = make_rng(self.seed, self.epoch, i)
            image, mask = self.augment(image, mask, rng)
        return to_tensors(image, mask)

    def share_memory(self) -> None:
        self.store.share_memory()


def collate(batch: list) -> Any:
    """Stack items of equal-shape CPU tensors with NumPy (a plain memcpy); anything else: torch's default.

    torch.stack of a 16x3x128x128 batch took ~40 ms under intra-op thread contention on a busy
    2-core machine, more than decoding the images; np.stack takes about 1 ms.
    """
    first = batch[0]
    if isinstance(first, (tuple, list)) and all(isinstance(t, torch.Tensor) and not t.is_cuda for t in first):
        return [torch.from_numpy(np.stack([item[k].numpy() for item in batch])) for k in range(len(first))]
    return default_collate(batch)


def _worker_init(worker_id: int) -> None:
    """One torch thread per worker (the workers are the parallelism); seeded global RNGs just in case."""
    torch.set_num_threads(1)
    seed = torch.initial_seed() % (1 << 32)
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int,
                drop_last: bool = False, sampler: Optional[Sampler] = None) -> DataLoader:
    """A DataLoader whose order depends only on `seed` (and the sampler's epoch), for every loop.

    Pass either `shuffle` or a `sampler`, not both. With workers under a non-fork start method
    the dataset's cache is moved to shared memory once instead of being copied into each worker.
    """
    if shuffle and sampler is not None:
        raise ValueError("make_loader: pass shuffle=True or a sampler, not both")
    start = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    if workers > 0 and start != "fork":
        share = getattr(dataset, "share_memory", None)
        if share is not None:
            share()
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                      sampler=sampler, num_workers=workers, drop_last=drop_last, generator=generator,
                      collate_fn=collate,
                      worker_init_fn=_worker_init if workers > 0 else None,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False)
