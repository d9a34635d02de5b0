"""`nas plot {alphas,curves,genotype,predictions}`: redraw figures from run-folder files.

Only files are read (never a model or a checkpoint), so the plots work on a copied run, on a
partial one, and on a search that is still running.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.plots.common import FORMATS


def _common(p: argparse.ArgumentParser, default_out: str = "RUN_DIR/plots") -> None:
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="png", help="image format (default png)")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help=f"folder for the figures (default {default_out})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw figures from a run folder (alphas, curves, genotype, predictions)",
                       description="Figures from run-folder files only; works on partial and running runs.")
    kinds = p.add_subparsers(dest="plot_kind", metavar="WHAT", required=True)

    a = kinds.add_parser("alphas", help="architecture weights per cell, overview heatmap, parameter-free share",
                         description="One figure per skip cell (SSB, CSB and node panels; colour = op, line style "
                                     "= input, λ on a secondary axis), an overview heatmap of the final node "
                                     "weights and the parameter-free share per cell over time.")
    a.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `nas search`")
    a.add_argument("--cell", dest="cells", action="append", default=None, metavar="NAME",
                   help="only this cell, e.g. skip_3_2 (repeatable; default: all cells)")
    which = a.add_mutually_exclusive_group()
    which.add_argument("--weights", dest="kind", action="store_const", const="weights", default="weights",
                       help="plot weights after the node-level softmax / block gating (default)")
    which.add_argument("--raw", dest="kind", action="store_const", const="raw",
                       help="plot raw α instead (per-cell figures only)")
    _common(a)
    a.set_defaults(func=run_alphas)

    c = kinds.add_parser("curves", help="loss, Dice, Jaccard, accuracy, learning rates and λ vs epoch",
                         description="Training curves from RUN_DIR/metrics.csv (search or retrain runs).")
    c.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `nas search`/`nas retrain`")
    _common(c)
    c.set_defaults(func=run_curves)

    g = kinds.add_parser("genotype", help="kept cells as graphs and the U-Net with its kept skips",
                         description="Draws a genotype.yaml: each kept cell as a small graph, and the network "
                                     "with encoder levels left, decoder levels right and kept skips annotated.")
    g.add_argument("genotype", metavar="FILE", type=Path, help="genotype.yaml written by `nas discretize`")
    _common(g, default_out="a plots/ folder next to FILE")
    g.set_defaults(func=run_genotype)

    r = kinds.add_parser("predictions", help="best and worst test images by Dice",
                         description="Image / ground truth / prediction overlays, read from RUN_DIR/per_image.csv "
                                     "and index.csv (columns id,image_path,mask_path,pred_path) in the "
                                     "predictions folder.")
    r.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `nas retrain`/`nas evaluate`")
    r.add_argument("-n", type=int, default=4, metavar="N", help="number of best and of worst images (default 4)")
    r.add_argument("--predictions", metavar="DIR", type=Path, default=None,
                   help="folder with index.csv and the masks (`nas evaluate --save-predictions DIR`; "
                        "default RUN_DIR/predictions)")
    _common(r)
    r.set_defaults(func=run_predictions)


def _report(paths: list[Path]) -> int:
    for path in paths:
        print(path)
    return 0


def run_alphas(args: argparse.Namespace) -> int:
    from nas.plots import plot_alphas

    return _report(plot_alphas(args.run_dir, cells=args.cells, kind=args.kind, fmt=args.fmt, out_dir=args.out))


def run_curves(args: argparse.Namespace) -> int:
    from nas.plots import plot_curves

    return _report(plot_curves(args.run_dir, out_dir=args.out, fmt=args.fmt))


def run_genotype(args: argparse.Namespace) -> int:
    from nas.plots import plot_genotype

    return _report(plot_genotype(args.genotype, args.out, fmt=args.fmt))


def run_predictions(args: argparse.Namespace) -> int:
    from nas.plots import plot_predictions

    return _report(plot_predictions(args.run_dir, n=args.n, out_dir=args.out, fmt=args.fmt,
                                    predictions_dir=args.predictions))
