"""`nas search`: run the DARTS search and write a run folder."""

from __future__ import annotations

import argparse

from nas.commands.common import add_config_args, config_for_run, say


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

    cfg, run_dir, resume = config_for_run(args, "search")
    out = search(cfg, run_dir, resume=resume)
    say(f"search finished: {out}")
    return 0
