"""Data pipeline throughput: decoding vs cached epochs, with/without augmentation, 0 and 2 workers.

    .venv/bin/python tools/bench_data.py [--root DIR] [--size 128] [--epochs 3] [--workers 0 2]

Rows, all in images/s through the real `build_data` + `make_loader`:
- "prepare": the up-front pass of `build_data` (read, check, center-crop, resize, fill the cache),
  i.e. what the first epoch of a run costs; it runs in a thread pool.
- "decode every epoch": `data.cache=none`, so each item decodes its JPEG/PNG again; this is what
  every epoch would cost without a cache.
- "cached": `data.cache=memory`, every later epoch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from nas.config import load_config  # noqa: E402
from nas.data import build_data, make_loader  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "isic2017-sample"


def _config(root: Path, size: int, cache: str, augment: bool):
    return load_config(None, [f"data.root={root}", f"data.image_size={size}", f"data.cache={cache}",
                              f"data.augment.enabled={str(augment).lower()}", "data.split=[1.0, 0.0, 0.0]",
                              "data.on_bad=skip"])


def _epochs_per_s(dataset, workers: int, epochs: int, batch_size: int) -> float:
    loader = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=0, workers=workers)
    dataset.set_epoch(0)
    for _ in loader:  # warm-up epoch, not timed: first-touch allocations, lazy torch init
        pass
    n = 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        dataset.set_epoch(epoch)
        for x, _ in loader:
            n += x.shape[0]
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"dataset folder (default {DEFAULT_ROOT})")
    p.add_argument("--size", type=int, default=128, help="image side (default 128)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement (default 3)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try (default 0 2)")
    args = p.parse_args(argv)

    table = Table(title=f"data pipeline, {args.root.name}, {args.size}x{args.size}, images/s")
    for col in ("phase", "augment", "workers", "images/s"):
        table.add_column(col, justify="right" if col == "images/s" else "left")

    start = time.perf_counter()
    bundle = build_data(_config(args.root, args.size, "memory", False), "train")
    n = len(bundle.train)
    table.add_row("prepare (read+check+preprocess, cold)", "-", "threads", f"{n / (time.perf_counter() - start):.0f}")
    for cache, label in (("none", "decode every epoch"), ("memory", "cached")):
        for augment in (False, True):
            ds = build_data(_config(args.root, args.size, cache, augment), "train").train
            for workers in args.workers:
                rate = _epochs_per_s(ds, workers, args.epochs, args.batch_size)
                table.add_row(label, "on" if augment else "off", str(workers), f"{rate:.0f}")
    Console().print(table)
    Console().print(f"{n} pairs, {args.epochs} epochs per row, batch size {args.batch_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
