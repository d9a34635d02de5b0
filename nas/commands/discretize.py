"""`nas discretize RUN_DIR`: keep the strongest ops of a search and write `genotype.yaml`."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import yaml

from nas.config import DiscretizeConfig

_DEFAULTS = dataclasses.asdict(DiscretizeConfig())  # policy, k, threshold


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("discretize", help="turn a search run's α into genotype.yaml",
                       description="Reads α from RUN_DIR/checkpoints/last.pt (or alphas.csv for --from-epoch) "
                                   "and the run's search_space.yaml, keeps per node the strongest (input, op) "
                                   "pairs and per SSB/CSB the nodes at or above the block mean, prunes nodes "
                                   "that reach no output, prints what was kept and writes RUN_DIR/genotype.yaml. "
                                   "Defaults come from the run's config (discretize.*), else thesis, k=3.")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run folder written by `nas search`")
    p.add_argument("--policy", choices=["thesis", "darts", "threshold"], default=None,
                   help="thesis: top-k (input, op) pairs per node (node-level softmax); darts: top-2 "
                        "edges per node, best op each; threshold: fewest pairs over a share of the mass")
    p.add_argument("--k", type=int, default=None, help="pairs kept per node by the thesis policy (default 3)")
    p.add_argument("--threshold", type=float, default=None,
                   help="share of a node's non-zero mass kept by the threshold policy (default 0.9)")
    p.add_argument("--from-epoch", type=int, default=None, metavar="E",
                   help="use α at the end of epoch E (from alphas.csv) instead of the last checkpoint")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="where to write the genotype (default RUN_DIR/genotype.yaml)")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Command line, else the run's config.yaml `discretize:` section, else the defaults."""
    saved: dict[str, Any] = {}
    config = args.run_dir / "config.yaml"
    if config.is_file():
        try:
            saved = (yaml.safe_load(config.read_text()) or {}).get("discretize") or {}
        except (yaml.YAMLError, AttributeError):
            saved = {}
    given = {"policy": args.policy, "k": args.k, "threshold": args.threshold}
    return {key: given[key] if given[key] is not None else saved.get(key, default)
            for key, default in _DEFAULTS.items()}


def run(args: argparse.Namespace) -> int:
    from nas.discretize import DiscretizeWarning, discretize_run
    from nas.errors import UserError
    from nas.genotype import save_genotype

    if not args.run_dir.is_dir():
        raise UserError(f"{args.run_dir}: run folder not found")
    s = _settings(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscretizeWarning)  # the table shows the notes instead
        genotype = discretize_run(args.run_dir, s["policy"], s["k"], s["threshold"], epoch=args.from_epoch)
    out = args.output or args.run_dir / "genotype.yaml"
    save_genotype(genotype, out)
    print_genotype(genotype)
    print(f"wrote {out}")
    return 0


def print_genotype(genotype: Any) -> None:
    """One table of what was kept: a section per cell, its edges, then its SSB/CSB nodes."""
    from rich.console import Console
    from rich.table import Table

    src = genotype.source
    detail = ", ".join(f"{k} {v}" for k, v in src.items() if k != "run")
    table = Table(title=f"genotype of {src.get('run', genotype.search_space)} ({detail})")
    for column in ("cell", "node", "from", "op", "weight"):
        table.add_column(column, justify="right" if column in ("node", "from", "weight") else "left")
    console = Console()
    for name, cell in genotype.cells.items():
        rows = [(str(e.to), str(e.from_), e.op, f"{e.weight:.4f}") for e in cell.edges]
        for block, label in ((cell.ssb, "SSB"), (cell.csb, "CSB")):
            kept = "  ".join(f"n{n} {w:.3f}" for n, w in zip(block.nodes, block.weights)) or "(none)"
            rows.append((label, "", f"{block.gating}: {kept}", ""))
        for note in cell.notes:
            rows.append(("note", "", f"[yellow]{note}[/]", ""))
        for i, row in enumerate(rows):
            table.add_row(name if i == 0 else "", *row, end_section=i == len(rows) - 1)
    console.print(table)
