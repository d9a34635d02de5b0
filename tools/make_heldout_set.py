"""Carve an external test set out of a dataset folder: the pairs that `data.limit=KEEP` leaves out.

`data.limit=KEEP` trains on the first KEEP ids in SHA-1 order (see nas/data/splits.py); this
script copies every other pair into a generic `images/` + `masks/` folder
(`images/<id><ext>`, `masks/<id>_segmentation<ext>`). A suite then trains on the original folder
with `data.limit=KEEP` and scores every run on the copy with `evaluate_on:`: no image is on both
sides, and the copy is in another layout, so the external-set code path is the one a real second
dataset (PH2, HAM10000) takes. Used by experiments/suite_isic2017_sample.yaml:

    python tools/make_heldout_set.py ../shared/data/isic2017-sample --keep 40 --out data/isic2017-sample-heldout

Files are copied byte for byte (atomically); an existing non-empty --out is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.data.layouts import scan_folder  # noqa: E402
from nas.data.splits import apply_limit  # noqa: E402
from nas.errors import UserError  # noqa: E402
from nas.outputs import check_outside_datasets  # noqa: E402
from nas.runs import atomic_write_bytes  # noqa: E402


def make_heldout(source: Path, keep: int, out: Path, layout: str = "auto") -> list[str]:
    """Copy the pairs of `source` outside `data.limit=keep` to `out`; returns their ids."""
    scan = scan_folder(source, layout)
    kept = {r.id for r in apply_limit(scan.records, keep)}
    held = [r for r in scan.records if r.id not in kept]
    if not held:
        raise UserError(f"{source}: --keep {keep} keeps all {len(scan.records)} pairs; nothing is left to hold out")
    check_outside_datasets(out, [source], "--out", "the source dataset")  # or a rescan would train on it
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; choose another --out or delete it")
    for rec in held:
        image, mask = Path(rec.image_path), Path(rec.mask_path)
        for src, dst in ((image, out / "images" / f"{rec.id}{image.suffix.lower()}"),
                         (mask, out / "masks" / f"{rec.id}_segmentation{mask.suffix.lower()}")):
            try:
                data = src.read_bytes()
            except OSError as exc:
                raise UserError(f"{src}: cannot be read ({exc.strerror or exc})") from None
            atomic_write_bytes(dst, data)
    return sorted(r.id for r in held)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="dataset folder (any layout nas reads)")
    p.add_argument("--keep", type=int, required=True, help="the data.limit the training suite uses")
    p.add_argument("--out", type=Path, required=True, help="where to write the held-out images/ + masks/")
    p.add_argument("--layout", default="auto", help="layout of SOURCE (default auto-detect)")
    args = p.parse_args(argv)
    try:
        if args.keep < 1:
            raise UserError(f"--keep: expected a positive int, got {args.keep}")
        ids = make_heldout(args.source, args.keep, args.out, args.layout)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(ids)} held-out pairs to {args.out} (images/ + masks/); train on {args.source} "
          f"with data.limit={args.keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
