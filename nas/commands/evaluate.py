"""`nas evaluate`: test a trained run on its test split or any dataset folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.commands.common import add_trained_run_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained run; write per-image metrics and predictions",
                       description="Scores a `nas retrain` run with the ISIC challenge metrics, on every whole "
                                   "image at its original size. Writes summary.json and per_image.csv to --out "
                                   "(default RUN_DIR/evaluation-<data>), and with --save-predictions 0/255 masks at "
                                   "each image's original size named as the dataset names them "
                                   "(ISIC_xxxxxxx_segmentation.png), which the official scorer reads as they are.")
    p.add_argument("--data", metavar="PATH", help="dataset folder to evaluate on (default: the run's test split)")
    p.add_argument("--layout", help="force the dataset layout of --data (default auto-detect)")
    p.add_argument("--save-predictions", metavar="DIR", type=Path,
                   help="write predicted masks here (a new folder, or one these commands wrote; never inside a dataset)")
    p.add_argument("--overlays", action="store_true",
                   help="with --save-predictions: also write contour overlays (prediction red, truth green)")
    p.add_argument("--out", metavar="DIR", type=Path, help="where to write summary.json and per_image.csv")
    add_trained_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.lock import folder_lock
    from nas.predict import evaluate_run

    with folder_lock(args.out or args.run_dir, create=args.out is not None):  # one writer per results folder
        s = evaluate_run(Path(args.run_dir), checkpoint=args.checkpoint, data_root=args.data, layout=args.layout,
                         save_predictions=args.save_predictions, overlays=args.overlays, tta=args.tta,
                         out_dir=args.out, device=args.device, overrides=args.overrides)
    t = s["test"]
    print(f"{s['images']} images  dice {t.get('dice', 0):.4f}  jaccard {t.get('jaccard', 0):.4f}  "
          f"thresholded jaccard {t.get('jaccard_t', 0):.4f}  accuracy {t.get('accuracy', 0):.4f}  "
          f"sensitivity {t.get('sensitivity', 0):.4f}  specificity {t.get('specificity', 0):.4f}")
    print(f"pooled (micro) dice {s['test_pooled_dice']:.4f}  latency {s['latency_ms_batch1']:.1f} ms/image "
          f"(batch 1), {s['latency_ms_batched']:.1f} ms/image batched, {s['images_per_s']:.1f} images/s")
    print(f"results: {s['out_dir']}" + (f"  predictions: {args.save_predictions}" if args.save_predictions else ""))
    return 0
