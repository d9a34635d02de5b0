"""Caches of preprocessed uint8 pairs, so that no epoch after the first decodes a JPEG again.

- `MemoryCache`: one preallocated uint8 tensor for all images and one for all masks. Pages are
  only touched when filled. Filled in the main process before any DataLoader worker starts, so
  forked workers read it copy-on-write; under spawn/forkserver `share_memory()` moves it to shared
  memory once, instead of pickling it into every worker every epoch.
- `DiskCache`: one `.npz` per pair under `data.cache_dir` (default `~/.cache/skipnas`), keyed by
  both files' path, mtime and size, the image size and the preprocessing version, so an edited
  file or a new size is never served stale. It also remembers the original size and lesion
  fraction, so a warm disk cache skips decoding entirely, even for validation (`prepare` reads
  only those two; the arrays are read when `PairStore.get` serves them).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from nas.data.records import Record
from nas.data.validate import PairInfo
from nas.runs import atomic_write_bytes

log = logging.getLogger("nas.data")

PREPROCESS_VERSION = "center-crop/area/nearest-exact>128/v2"  # change when reading or preprocess.py changes output
# v2: 16-bit masks read by value range (files.mask_to_8bit); v1 entries of such masks were empty


class MemoryCache:
    """Every slot of a good pair is filled by `prepare` before any `get`."""

    def __init__(self, n: int, size: int) -> None:
        self.images = torch.empty((n, size, size, 3), dtype=torch.uint8)
        self.masks = torch.empty((n, size, size), dtype=torch.uint8)

    def get(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[slot].numpy(), self.masks[slot].numpy()

    def put(self, slot: int, image: np.ndarray, mask: np.ndarray) -> None:
        # Copy through NumPy views: a torch copy_ per pair went through the intra-op thread pool
        # and cost ~10 ms on a busy 2-core machine, more than decoding the JPEG.
        self.images[slot].numpy()[...] = image
        self.masks[slot].numpy()[...] = mask

    def share_memory(self) -> None:
        for t in (self.images, self.masks):
            t.share_memory_()


def default_cache_dir() -> Path:
    return Path("~/.cache/skipnas").expanduser()


class DiskCache:
    def __init__(self, root: Optional[str | Path], size: int) -> None:
        self.dir = (Path(root).expanduser() if root else default_cache_dir()) / f"pairs-{size}"
        self.size = size
        self.writable = True

    def path(self, record: Record) -> Optional[Path]:
        """The entry of `record` (whether or not it exists yet); None when its files cannot be stat'ed."""
        parts = [PREPROCESS_VERSION, str(self.size)]
        try:
            for p in (record.image_path, record.mask_path):
                st = os.stat(p)
                parts += [str(Path(p).resolve()), str(st.st_mtime_ns), str(st.st_size)]
        except OSError:  # missing or unreadable file: nothing to key on (reading it reports why)
            return None
        return self.dir / (hashlib.sha1("|".join(parts).encode()).hexdigest() + ".npz")

    def info(self, path: Path) -> Optional[PairInfo]:
        """The entry's PairInfo without reading its arrays (npz members load lazily), or None."""
        try:
            with np.load(path) as z:
                h, w = z["orig_size"]
                return PairInfo((int(h), int(w)), float(z["lesion_fraction"]))
        except (OSError, KeyError, ValueError):  # missing, unreadable or stale-format entry: recompute
            return None

    def load(self, path: Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """The entry's (image, mask), or None."""
        try:
            with np.load(path) as z:
                return z["image"], z["mask"]
        except (OSError, KeyError, ValueError):  # missing, unreadable or stale-format entry: recompute
            return None

    def save(self, path: Path, image: np.ndarray, mask: np.ndarray, info: PairInfo) -> None:
        if not self.writable:
            return
        buf = io.BytesIO()
        np.savez(buf, image=image, mask=mask, orig_size=np.array(info.orig_size),
                 lesion_fraction=np.array(info.lesion_fraction))
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            self.writable = False
            log.warning("data.cache=disk: cannot write to %s (%s); continuing without the disk cache",
                        self.dir, exc.strerror or exc)
