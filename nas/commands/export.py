"""`nas export`: a trained run's network as a torch.export program (.pt2) that runs without skipnas."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.commands.common import add_trained_run_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained run's network as a torch.export program (.pt2)",
                       description="Writes a torch.export program that takes uint8 RGB images [B, 3, H, W] (H, W "
                                   "multiples of 16 when the size is dynamic) and returns the lesion probability "
                                   "[B, 1, H, W]. Load it with torch.export.load(FILE).module(); skipnas is not "
                                   "needed. The preprocessing numbers are stored in the file as skipnas.json.")
    add_trained_run_args(p, inference=False)
    p.add_argument("--out", metavar="FILE", type=Path, required=True, help="the program file to write, e.g. model.pt2")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.export import export_run

    s = export_run(Path(args.run_dir), args.out, checkpoint=args.checkpoint)
    if s["dynamic"]:
        size = f"dynamic image size (H, W multiples of {s['size_multiple']})"
    else:
        size = f"static image size {s['image_size']}x{s['image_size']} (dynamic size failed: {s['dynamic_reason']})"
    print(f"{s['out']}: {s['model']}, {size}, dynamic batch; input uint8 RGB [B, 3, H, W] 0..255, output "
          f"lesion probability [B, 1, H, W]; max difference to the network {s['max_difference']:.1e}")
    return 0
