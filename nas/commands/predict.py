"""`nas predict`: masks for new images (no ground truth) at each image's original size."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.commands.common import add_trained_run_args
from nas.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment new images with a trained run (no ground truth needed)",
                       description="Writes, for each image, a 0/255 mask PNG at the image's original size: "
                                   "<ISIC id>_segmentation.png for names holding an ISIC id, else "
                                   "<stem>_segmentation.png, plus index.csv. Folders are read non-recursively "
                                   "(.jpg .jpeg .png .bmp .tif .tiff). Unreadable images are listed in one error "
                                   "line at the end (exit 1); all the others are written.")
    add_trained_run_args(p)
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files and/or folders of images")
    p.add_argument("--out", metavar="DIR", type=Path, required=True,
                   help="output folder (a new folder, or one `nas predict`/`nas evaluate` wrote; never a dataset folder)")
    p.add_argument("--probabilities", nargs="?", type=int, const=8, default=None, metavar="BITS",
                   help="also write probability maps to DIR/probabilities/<name>_probability.png, 8-bit "
                        "(value = round(255 p), the default) or 16-bit (--probabilities 16: round(65535 p))")
    p.add_argument("--overlays", action="store_true", help="also write DIR/overlays/<name>.jpg (prediction contour in red)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.lock import folder_lock
    from nas.predict import predict_images

    with folder_lock(args.out):  # one writer per prediction folder (its index.csv says who wrote what)
        s = predict_images(Path(args.run_dir), args.inputs, args.out, checkpoint=args.checkpoint,
                           probabilities=args.probabilities, overlays=args.overlays, tta=args.tta,
                           device=args.device, overrides=args.overrides)
    print(f"{s['written']} of {s['images']} images segmented with {s['model']}: {s['out']}")
    if s["failed"]:
        written = f" (the other {s['written']} were written)" if s["written"] else ""
        raise UserError(f"{len(s['failed'])} of {s['images']} images could not be read{written}: "
                        + "; ".join(s["failed"]), exit_code=1)
    return 0
