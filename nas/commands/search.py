"""`nas search`: run the DARTS search and write a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.commands.common import add_config_args, check_resume_args, config_from_args, default_run_dir, say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search the skip cells of a full-scale U-Net with DARTS",
                       description="Bilevel DARTS search (node-level softmax, SSB/CSB blocks, beta-decay). "
                                   "With no options: a short search on built-in synthetic data. "
                                   "Writes config.yaml, search_space.yaml, splits.json, metrics.csv, "
                                   "alphas.csv, checkpoints/, summary.json and plots/ into the run folder.")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.search import search
    from nas.session import resume_config

    check_resume_args(args)
    if args.resume:
        run_dir = Path(args.resume)
        cfg = resume_config(run_dir, list(args.overrides) + ([f"run.device={args.device}"] if args.device else []))
        out = search(cfg, run_dir, resume=True)
    else:
        cfg = config_from_args(args)
        out = search(cfg, Path(args.out) if args.out else default_run_dir("search"), resume=False)
    say(f"search finished: {out}")
    return 0
