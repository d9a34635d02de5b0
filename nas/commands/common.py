"""Options shared by the commands that take an experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from nas.config import Config, load_config


def add_config_args(parser: argparse.ArgumentParser, default_config: Optional[str] = None) -> None:
    parser.add_argument("--config", metavar="FILE", default=default_config,
                        help="experiment YAML (see experiments/); defaults apply when omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set data.image_size=128 (repeatable)")
    parser.add_argument("--out", metavar="RUN_DIR", default=None,
                        help="run folder to create (default: runs/<command>-<timestamp>)")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 ... (shortcut for --set run.device=...; default auto)")


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if getattr(args, "device", None):
        overrides.append(f"run.device={args.device}")
    return load_config(args.config, overrides)


def default_run_dir(kind: str) -> Path:
    import time

    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
