"""Options shared by the commands that take an experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from nas.config import Config, load_config
from nas.errors import UserError
from nas.runs import is_rank_zero


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


def add_trained_run_args(parser: argparse.ArgumentParser, inference: bool = True) -> None:
    """RUN_DIR and --checkpoint of the commands that use a trained run (evaluate, predict, export);
    with `inference`, also --tta, --device and --set for the run's data.*/run.* keys."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `nas retrain`")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a path to a .pt file (default best)")
    if not inference:
        return
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average over 4 flips")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a data.*, run.* or train.eval_batch_size key of the run's config, "
                             "e.g. --set data.on_bad=skip (repeatable)")


def add_oneshot_args(parser: argparse.ArgumentParser, when: str = "") -> None:
    """Options of scoring genotypes in a trained supernet (nas.oneshot), shared by `nas rank` and
    `nas discretize --policy perturbation`; `when` prefixes their help (e.g. "with --policy X: ")."""
    parser.add_argument("--bn-batches", type=int, default=8, metavar="N",
                        help=f"{when}training batches to re-estimate BatchNorm on (default 8)")
    parser.add_argument("--val-images", type=int, default=None, metavar="N",
                        help=f"{when}score on the first N validation images (default all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"{when}a data.*, run.* or train.eval_batch_size key of the run's config, e.g. "
                             f"--set run.threads=1 (repeatable)")


def check_resume_args(args: argparse.Namespace) -> None:
    """--resume continues a run with its saved config; a new config or folder cannot apply."""
    if args.resume and (args.config or args.out):
        raise UserError("--resume continues a run with its own saved config.yaml; --config/--out cannot be "
                        "combined with it (use --set for changes such as --set train.epochs=40)")


def say(text: str) -> None:
    """Print on rank 0 only, so a torchrun job reports once."""
    if is_rank_zero():
        print(text)


def overrides_from_args(args: argparse.Namespace, *extra: str) -> list[str]:
    """`--set` overrides, then `extra` (command-specific), then `--device` as `run.device=...`."""
    overrides = [*args.overrides, *extra]
    if getattr(args, "device", None):
        overrides.append(f"run.device={args.device}")
    return overrides


def config_from_args(args: argparse.Namespace, *extra: str) -> Config:
    return load_config(args.config, overrides_from_args(args, *extra))


def config_for_run(args: argparse.Namespace, kind: str, extra: Sequence[str] = ()) -> tuple[Config, Path, bool]:
    """(config, run folder, resume) of a `kind` command: with --resume the run's saved config plus
    the overrides; else --config plus the overrides, written to --out or runs/<kind>-<timestamp>."""
    check_resume_args(args)
    if args.resume:
        from nas.session import resume_config

        run_dir = Path(args.resume)
        return resume_config(run_dir, overrides_from_args(args, *extra)), run_dir, True
    cfg = config_from_args(args, *extra)
    return cfg, Path(args.out) if args.out else default_run_dir(kind), False


def default_run_dir(kind: str) -> Path:
    import time

    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
